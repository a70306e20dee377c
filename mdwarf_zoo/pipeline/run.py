"""The reference pipeline of Mas-Buitrago et al. 2024 (MB24), stages 2-4, in one call.

1. **Transfer** (:func:`mdwarf_zoo.transfer`): each autoencoder, trained on synthetic spectra,
   is fine-tuned on the observed spectra with its first layers frozen.
2. **Latents** (:func:`latents`): synthetic spectra go through the *original* encoder, observed
   spectra through the *fine-tuned* one (MB24's choice; ``observed_encoder="original"`` gives the
   other choice, i.e. no transfer for the observed side).
3. **Regressors** (:func:`mdwarf_zoo.pipeline.train_regressors`).
4. **Ensemble** (:func:`mdwarf_zoo.pipeline.estimate.estimate`): best-K selection, optional
   latent alignment, every kept regressor's predictions, KDE mode and errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from astropy.table import Table

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline.alignment import ALIGNMENTS
from mdwarf_zoo.pipeline.estimate import Alignment, check_choice, estimate
from mdwarf_zoo.pipeline.regressors import LatentRegressor, train_regressors
from mdwarf_zoo.pipeline.scaling import LabelScaler, check_labels
from mdwarf_zoo.training.transfer import FreezeSpec, prepare_spectra, transfer

__all__ = ["PipelineResult", "latents", "run_pipeline"]

logger = logging.getLogger(__name__)

_OBSERVED_ENCODERS = ("fine_tuned", "original")


def latents(
    original: keras.Model,
    synthetic_flux: np.ndarray,
    observed_flux: np.ndarray,
    *,
    fine_tuned: keras.Model | None = None,
    observed_encoder: str = "fine_tuned",
    synthetic_encoder: str = "original",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic and observed latents, MB24-style by default.

    Args:
        original: the autoencoder trained on synthetic spectra.
        synthetic_flux: (n_syn, pixels) synthetic spectra.
        observed_flux: (n_obs, pixels) observed spectra.
        fine_tuned: the copy returned by :func:`mdwarf_zoo.transfer` (needed when either
            encoder is ``"fine_tuned"``).
        observed_encoder: ``"fine_tuned"`` (MB24) or ``"original"`` (no transfer).
        synthetic_encoder: ``"original"`` (MB24) or ``"fine_tuned"`` (both domains through the
            fine-tuned encoder, so regressors see one latent space).
        batch_size: prediction batch size.

    Returns:
        ``(synthetic_latents, observed_latents)``.

    Raises:
        ValueError: for an unknown encoder choice or a missing ``fine_tuned`` model.
    """
    for name, choice in (
        ("observed_encoder", observed_encoder),
        ("synthetic_encoder", synthetic_encoder),
    ):
        if choice not in _OBSERVED_ENCODERS:
            raise ValueError(f"latents: {name} must be one of {_OBSERVED_ENCODERS}, got {choice!r}")
        if choice == "fine_tuned" and fine_tuned is None:
            raise ValueError(
                f"latents: {name}='fine_tuned' needs fine_tuned= (the model returned by "
                "mdwarf_zoo.transfer); pass observed_encoder='original' for no transfer"
            )
    models = {"original": original, "fine_tuned": fine_tuned}
    return (
        encode(models[synthetic_encoder], synthetic_flux, batch_size=batch_size),
        encode(models[observed_encoder], observed_flux, batch_size=batch_size),
    )


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produces.

    Attributes:
        table: one row per observed star: KDE-mode values and lower/upper errors with units.
        predictions: per parameter, (n_kept, n_stars) predictions (physical units) of the
            regressors the ensemble kept.
        regressors: all trained latent regressors.
        fine_tuned: per autoencoder name, the fine-tuned copy (empty without transfer).
        synthetic_latents, observed_latents: per autoencoder name.
        scaler: the label standardisation.
        identifiers: one name per observed star.
    """

    table: Table
    predictions: dict[str, np.ndarray]
    regressors: list[LatentRegressor]
    fine_tuned: dict[str, keras.Model]
    synthetic_latents: dict[str, np.ndarray]
    observed_latents: dict[str, np.ndarray]
    scaler: LabelScaler
    identifiers: list[str]


def run_pipeline(
    autoencoders: keras.Model | Sequence[keras.Model] | Mapping[str, keras.Model],
    synthetic_flux: np.ndarray,
    synthetic_labels: np.ndarray,
    observed: Any,
    *,
    freeze: FreezeSpec | None = None,
    observed_encoder: str = "fine_tuned",
    synthetic_encoder: str = "original",
    transfer_options: Mapping[str, Any] | None = None,
    parameters: Sequence[str] = PARAMETERS,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    keep: int | None = 80,
    identifiers: Sequence[str] | None = None,
    error_model: str = "spread",
    latent_alignment: str | None = None,
    alignment_neighbours: int = 20,
    alignment_resamples: int = 30,
    gap: Mapping[str, float] | None = None,
    **regressor_options: Any,
) -> PipelineResult:
    """Fine-tune, encode, train the latent regressors and build the ensemble table (MB24).

    Args:
        autoencoders: one autoencoder, a list, or a mapping name -> autoencoder (MB24: 26),
            all trained on ``synthetic_flux``.
        synthetic_flux: (n, pixels) synthetic spectra (preprocessed like the observed ones).
        synthetic_labels: (n, len(parameters)) their labels, physical units.
        observed: the observed spectra: an array, an HDF5 observed set, or a list of
            ``Spectrum`` (see :func:`mdwarf_zoo.transfer`).
        freeze: layers to freeze in the transfer; default each model's ``default_freeze``
            (MB24's rule: 5 for the dense autoencoder).
        observed_encoder, synthetic_encoder: see :func:`latents` (``"original"`` observed
            encoder: no transfer at all).
        transfer_options: keyword arguments of :func:`mdwarf_zoo.transfer`;
            ``anchor_spectra`` defaults to ``synthetic_flux`` (the anchors of
            ``mode="anchored"``, and every mode's ``table.meta["latent_drift"]``, in sigma).
        parameters: label columns (default Teff, log g, [M/H], v sin i).
        seeds: regressor seeds per autoencoder and parameter (MB24: 5).
        keep: best K regressors per parameter by validation MSE (MB24: 80); ``None`` keeps all.
        identifiers: star names; default from the observed input (set identifiers, ``OBJECT``
            headers) or ``spectrum_<i>``.
        error_model: ``"spread"`` (MB24), ``"spread+validation"`` (the regressors'
            validation rms added in quadrature) or ``"spread+validation+gap"`` (and a
            domain-gap scale); see :mod:`mdwarf_zoo.pipeline.ensemble`.
        latent_alignment: ``None`` (MB24), ``"coral"`` or ``"coral_neighbours"``
            (:mod:`mdwarf_zoo.pipeline.alignment`); ``result.observed_latents`` holds the
            aligned latents.
        alignment_neighbours: ``neighbours`` of ``"coral_neighbours"``.
        alignment_resamples: bootstrap draws of :func:`alignment_uncertainty` (0: none).
        gap: the domain-gap scales of ``"spread+validation+gap"`` (parameter -> physical
            units; default :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR`).
        **regressor_options: keyword arguments of :func:`train_regressors`.

    Returns:
        A :class:`PipelineResult`; ``result.table`` is the estimate table.

    Raises:
        ValueError: as :func:`mdwarf_zoo.transfer` and :func:`train_regressors`.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.pipeline import run_pipeline
        >>> from mdwarf_zoo.pipeline.ensemble import write_table
        >>> ae = mdwarf_zoo.from_pretrained("dense_ae_1024")  # doctest: +SKIP
        >>> result = run_pipeline(ae, syn_flux, syn_labels, "observed.h5")  # doctest: +SKIP
        >>> write_table(result.table, "estimates.ecsv")  # doctest: +SKIP
    """
    named = _named(autoencoders)
    _check_choices(observed_encoder, latent_alignment)
    observed_flux, observed_ids, synthetic_flux, labels = _inputs(
        next(iter(named.values())), observed, synthetic_flux, synthetic_labels, parameters
    )
    scaler = LabelScaler.fit(labels, tuple(parameters))
    fine_tuned, syn_latents, obs_latents, regressors = _stages_2_and_3(
        named, synthetic_flux, labels, observed_flux, scaler, freeze, transfer_options,
        observed_encoder, synthetic_encoder,
        dict(parameters=parameters, seeds=seeds, **regressor_options),
    )
    alignment = latent_alignment and Alignment(
        latent_alignment, syn_latents, labels, alignment_neighbours, int(alignment_resamples)
    )
    names = list(identifiers) if identifiers is not None else observed_ids
    result = estimate(regressors, obs_latents, names, keep=keep, error_model=error_model,
                      alignment=alignment, parameters=parameters, gap=gap)
    table = result.table
    table.meta.update(observed_encoder=observed_encoder, synthetic_encoder=synthetic_encoder,
                      autoencoders=list(named))
    if fine_tuned:
        table.meta["transfer_mode"] = dict(transfer_options or {}).get("mode", "mb24")
        table.meta["latent_drift"] = {n: m.transfer_info["latent_drift"]
                                      for n, m in fine_tuned.items()}
    return PipelineResult(table, result.predictions, regressors, fine_tuned, syn_latents,
                          result.observed_latents, scaler, names)


def _named(autoencoders: Any) -> dict[str, keras.Model]:
    """``run_pipeline``'s autoencoders by name (a repeated model name gets its index)."""
    if isinstance(autoencoders, keras.Model):
        named = {autoencoders.name: autoencoders}
    elif isinstance(autoencoders, Mapping):
        named = dict(autoencoders)
    else:
        named = {}
        for i, model in enumerate(autoencoders):
            named[model.name if model.name not in named else f"{model.name}_{i}"] = model
    if not named:
        raise ValueError("run_pipeline: no autoencoders")
    return named


def _fine_tune(
    name: str,
    model: keras.Model,
    observed_flux: np.ndarray,
    synthetic_flux: np.ndarray,
    freeze: FreezeSpec | None,
    transfer_options: Mapping[str, Any] | None,
) -> keras.Model:
    """Stage 1 of ``run_pipeline`` for one autoencoder: :func:`mdwarf_zoo.transfer`."""
    rule = freeze if freeze is not None else getattr(model, "default_freeze", None)
    if rule is None:
        raise ValueError(f"run_pipeline: autoencoder {name!r} has no default_freeze; pass freeze=")
    options = dict(transfer_options or {})
    # The synthetic spectra anchor mode="anchored" and measure every mode's latent drift.
    options.setdefault("anchor_spectra", synthetic_flux)
    return transfer(model, observed_flux, freeze=rule, **options)


def _inputs(
    model: keras.Model,
    observed: Any,
    synthetic_flux: Any,
    synthetic_labels: Any,
    parameters: Sequence[str],
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """``run_pipeline``'s spectra as the model's input arrays, the observed identifiers and
    the checked synthetic labels."""
    observed_flux, observed_ids = prepare_spectra(observed, model, what="run_pipeline: observed")
    synthetic_flux, _ = prepare_spectra(synthetic_flux, model, what="run_pipeline: synthetic_flux")
    labels = check_labels(
        synthetic_labels, len(tuple(parameters)), "run_pipeline: synthetic_labels"
    )
    if labels.shape[0] != synthetic_flux.shape[0]:
        raise ValueError(
            f"run_pipeline: {synthetic_flux.shape[0]} synthetic spectra but {labels.shape[0]} "
            "label rows"
        )
    return observed_flux, observed_ids, synthetic_flux, labels


def _check_choices(observed_encoder: str, latent_alignment: str | None) -> None:
    check_choice("run_pipeline", "observed_encoder", observed_encoder, _OBSERVED_ENCODERS)
    if latent_alignment is not None:
        check_choice("run_pipeline", "latent_alignment", latent_alignment, ALIGNMENTS, "None or ")


def _stages_2_and_3(
    named,
    synthetic_flux,
    labels,
    observed_flux,
    scaler,
    freeze,
    transfer_options,
    observed_encoder,
    synthetic_encoder,
    regressor_options,
):
    """Per autoencoder: the transfer (with ``observed_encoder="fine_tuned"``), the latents and
    the regressors; ``(fine_tuned, synthetic_latents, observed_latents, regressors)``."""
    fine_tuned, syn_latents, obs_latents = {}, {}, {}
    regressors: list[LatentRegressor] = []
    for name, model in named.items():
        if observed_encoder == "fine_tuned":
            fine_tuned[name] = _fine_tune(
                name, model, observed_flux, synthetic_flux, freeze, transfer_options
            )
        syn_latents[name], obs_latents[name] = latents(
            model,
            synthetic_flux,
            observed_flux,
            fine_tuned=fine_tuned.get(name),
            observed_encoder=observed_encoder,
            synthetic_encoder=synthetic_encoder,
        )
        regressors += train_regressors(
            syn_latents[name], labels, autoencoder=name, scaler=scaler, **regressor_options
        )
    return fine_tuned, syn_latents, obs_latents, regressors
