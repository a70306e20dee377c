"""Stage 4 once: from trained latent regressors and the observed latents to the estimate table.

Every entry point ends here: :func:`mdwarf_zoo.pipeline.run_pipeline`, the recipe runner's
ensemble stage and :meth:`mdwarf_zoo.pipeline.PretrainedPipeline.predict`. The steps:

1. the best ``keep`` regressors per parameter by validation MSE (MB24: 80), in their order;
2. with a latent alignment, its bootstrap spread per star (:func:`alignment_uncertainty`), then
   the observed latents aligned onto the synthetic reference (:func:`align_observed_latents`);
3. every kept regressor predicts every star, bit for bit its own ``predict``;
4. KDE mode and errors per star (:func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`) under the
   chosen error model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.alignment import (
    ALIGNMENTS,
    align_observed_latents,
    alignment_uncertainty,
)
from mdwarf_zoo.pipeline.ensemble import ensemble_table, select_best
from mdwarf_zoo.pipeline.regressors import LatentRegressor, predict_ensemble

__all__ = ["Alignment", "Estimate", "check_choice", "estimate", "select_regressors"]


@dataclass(frozen=True)
class Alignment:
    """A latent alignment and the synthetic reference it maps onto.

    Attributes:
        method: one of ``ALIGNMENTS`` (``"coral"``, ``"coral_neighbours"``).
        synthetic_latents: per autoencoder name, (n_syn, d) latents of the synthetic spectra
            through the encoder the regressors learnt from.
        synthetic_labels: (n_syn, len(parameters)) their labels, physical units.
        neighbours: neighbours per star of ``"coral_neighbours"``.
        resamples: bootstrap draws of the alignment's uncertainty (0: none).
        seed: seed of the draws.
    """

    method: str
    synthetic_latents: Mapping[str, np.ndarray]
    synthetic_labels: np.ndarray
    neighbours: int = 20
    resamples: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ALIGNMENTS:
            raise ValueError(
                f"latent alignment must be one of {', '.join(ALIGNMENTS)}, got {self.method!r}"
            )
        if (
            isinstance(self.resamples, bool)
            or not isinstance(self.resamples, int)
            or (self.resamples < 0 or self.resamples == 1)
        ):
            raise ValueError(
                f"alignment_resamples must be 0 (no bootstrap) or >= 2, got {self.resamples!r}"
            )

    def meta(self) -> dict[str, object]:
        """What the estimate table records about the alignment."""
        meta: dict[str, object] = {"latent_alignment": self.method}
        if self.method == "coral_neighbours":
            meta["alignment_neighbours"] = int(self.neighbours)
        meta["alignment_resamples"] = int(self.resamples)
        return meta


@dataclass
class Estimate:
    """What :func:`estimate` produces.

    Attributes:
        table: one row per star (see :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`).
        regressors: the kept regressors, in the order of the rows of ``predictions``.
        predictions: per parameter, (n_kept, n_stars) predictions in physical units.
        observed_latents: per autoencoder name, the latents the regressors read (aligned
            with an alignment).
    """

    table: Table
    regressors: list[LatentRegressor]
    predictions: dict[str, np.ndarray]
    observed_latents: dict[str, np.ndarray]


def check_choice(
    where: str, name: str, value: object, allowed: Sequence[object], also: str = ""
) -> None:
    """Refuse an option outside ``allowed``: ``"<where>: <name> must be <also>one of ..."``."""
    if value not in allowed:
        names = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{where}: {name} must be {also}one of {names}, got {value!r}")


def select_regressors(
    regressors: Sequence[LatentRegressor], keep: int | None
) -> list[LatentRegressor]:
    """The best ``keep`` regressors of each parameter by validation MSE, in their given order
    (``None``: all)."""
    if keep is None:
        return list(regressors)
    chosen: set[int] = set()
    for parameter in dict.fromkeys(r.parameter for r in regressors):
        rows = [i for i, r in enumerate(regressors) if r.parameter == parameter]
        mse = [regressors[i].validation_mse for i in rows]
        chosen.update(rows[j] for j in select_best(mse, keep))
    return [r for i, r in enumerate(regressors) if i in chosen]


def estimate(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    identifiers: Sequence[str] | None,
    *,
    keep: int | None = None,
    error_model: str = "spread",
    alignment: Alignment | None = None,
    parameters: Sequence[str] = PARAMETERS,
    gap: Mapping[str, float] | None = None,
    gap_source: str = "given",
    error_scale: Mapping[str, float] | None = None,
    error_scale_source: str = "given",
) -> Estimate:
    """The ensemble estimate of every observed star (see the module docstring).

    Args:
        regressors: trained latent regressors of one or several autoencoders.
        observed_latents: per autoencoder name (the regressors' ``autoencoder``), the raw
            (n_stars, d) latents of the observed spectra.
        identifiers: one name per star.
        keep: best-K regressors per parameter (MB24: 80); ``None`` keeps all.
        error_model: see :mod:`mdwarf_zoo.pipeline.ensemble`.
        alignment: a latent alignment, or ``None`` (MB24).
        parameters: the label columns, in the order of the alignment's synthetic labels.
        gap, gap_source: the domain-gap scales of ``"spread+validation+gap"`` and where they
            come from (default :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR`); see
            :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`.
        error_scale, error_scale_source: the coverage factor of ``"spread+validation+gap"``
            per parameter and where it comes from (default 1); see ``ensemble_table``.

    Returns:
        An :class:`Estimate`.

    Raises:
        ValueError: for regressors without latents, a bad error model, gap or error scale, or
            as the alignment.
    """
    parameters = tuple(parameters)
    chosen = select_regressors(regressors, keep)
    latents = {name: np.asarray(z, dtype=np.float32) for name, z in observed_latents.items()}
    alignment_error = None
    if alignment is not None:
        reference = (chosen, latents, dict(alignment.synthetic_latents), alignment.synthetic_labels)
        options = {
            "method": alignment.method,
            "parameters": parameters,
            "neighbours": int(alignment.neighbours),
        }
        if alignment.resamples > 0:
            alignment_error = alignment_uncertainty(
                *reference, resamples=alignment.resamples, seed=alignment.seed, **options
            )
        latents = align_observed_latents(*reference, **options)
    predictions, _ = predict_ensemble(chosen, latents, exact=True)
    validation_rms: dict[str, list[float]] = {}
    for regressor in chosen:
        validation_rms.setdefault(regressor.parameter, []).append(regressor.validation_rms)
    table = ensemble_table(
        predictions,
        identifiers,
        keep=None,
        error_model=error_model,
        validation_rms=validation_rms,
        alignment_error=alignment_error,
        gap=gap,
        gap_source=gap_source,
        error_scale=error_scale,
        error_scale_source=error_scale_source,
    )
    table.meta.update(alignment.meta() if alignment else {"latent_alignment": "none"})
    return Estimate(table, chosen, predictions, latents)
