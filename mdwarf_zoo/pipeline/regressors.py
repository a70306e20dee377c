"""Stage 3: the latent regressors (MB24: one latent CNN per parameter and seed per autoencoder),
trained on the synthetic latents against the standardised labels, and their predictions.

For each parameter and each seed, one regressor (``latent_cnn``) learns the standardised label
(:class:`~mdwarf_zoo.pipeline.scaling.LabelScaler`) from the synthetic latents, with a
train/validation split stratified on that label (MB24: 70/30). With
``standardize_latents=True`` (not in MB24) each latent dimension is first standardised with the
mean and standard deviation of the synthetic latents
(:class:`~mdwarf_zoo.pipeline.scaling.LatentScaler`), kept in the regressor and applied again to
the observed latents.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from mdwarf_zoo.fused import predict_fused, train_fused
from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.models.inference import call_in_batches
from mdwarf_zoo.pipeline.ensemble import PARAMETER_UNITS
from mdwarf_zoo.pipeline.scaling import LabelScaler, LatentScaler, check_labels
from mdwarf_zoo.registry import create_model

__all__ = [
    "LatentRegressor",
    "predict_ensemble",
    "stratified_split",
    "train_regressors",
]

logger = logging.getLogger(__name__)


def stratified_split(
    values: np.ndarray,
    validation_fraction: float = 0.3,
    *,
    n_bins: int = 20,
    max_classes: int = 50,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A train/validation split stratified on a continuous or gridded label (MB24: 70/30).

    Strata are the distinct values when there are at most ``max_classes`` of them (grid labels
    such as log g or v sin i), otherwise ``n_bins`` quantile bins. Each stratum gives
    ``round(validation_fraction * size)`` members, drawn at random, to validation; so both sets
    follow the label distribution.

    Args:
        values: (n,) the label.
        validation_fraction: in (0, 1).
        n_bins: quantile bins for a continuous label.
        max_classes: up to this many distinct values are used as strata directly.
        seed: seed of the draw.

    Returns:
        ``(train_indices, validation_indices)``, sorted, disjoint, together ``range(n)``.

    Raises:
        ValueError: for a bad fraction, non-finite values, or a split that leaves one side
            empty.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline import stratified_split
        >>> train, val = stratified_split(np.repeat([4.7, 5.0, 5.3], 10), 0.3)
        >>> len(train), len(val)
        (21, 9)
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not (isinstance(validation_fraction, numbers.Real) and 0 < validation_fraction < 1):
        raise ValueError(
            f"stratified_split: validation_fraction must be in (0, 1), got {validation_fraction!r}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("stratified_split: values must be finite")
    distinct = np.unique(values)
    if distinct.size <= max_classes:
        strata = np.searchsorted(distinct, values)
    else:
        edges = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
        strata = np.searchsorted(edges, values, side="right")
    rng = np.random.default_rng(seed)
    validation = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        n_val = int(round(validation_fraction * members.size))
        validation.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(validation)) if validation else np.array([], dtype=int)
    train = np.setdiff1d(np.arange(values.size), val)
    if val.size == 0 or train.size == 0:
        raise ValueError(
            f"stratified_split: {values.size} values split {train.size}/{val.size}; need more "
            "samples for a train and a validation set"
        )
    return train, val


@dataclass
class LatentRegressor:
    """One trained latent regressor: a parameter, the autoencoder whose latents it reads, a seed.

    Attributes:
        parameter: ``"teff"``, ``"logg"``, ``"mh"`` or ``"vsini"``.
        autoencoder: the name of the autoencoder (key into the latents mapping).
        seed: the regressor's seed (weights and shuffling).
        model: the Keras model (predicts the standardised label).
        scaler: the label scaling (all parameters; this one uses its column).
        validation_mse: MSE on the validation split, standardised units.
        validation_rms: root mean square error on the validation split, physical units.
        history: the Keras training history (``loss``, ``val_loss`` per epoch).
        latent_scaler: the standardisation applied to latents before ``model`` (``None``: the
            model reads raw latents, as in MB24).
    """

    parameter: str
    autoencoder: str
    seed: int
    model: keras.Model
    scaler: LabelScaler
    validation_mse: float
    validation_rms: float
    history: dict = field(default_factory=dict)
    latent_scaler: LatentScaler | None = None

    def predict(self, latent_vectors: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """Predictions in physical units (K, dex, dex, km/s), shape (n,), from raw latents
        (the regressor applies its own :attr:`latent_scaler`)."""
        x = np.asarray(latent_vectors, dtype=np.float32)
        if self.latent_scaler is not None:
            x = self.latent_scaler.transform(x)
        scaled = call_in_batches(self.model, x, batch_size)
        return self.scaler.inverse_transform(np.asarray(scaled)[:, 0], self.parameter)


def train_regressors(
    synthetic_latents: np.ndarray,
    labels: np.ndarray,
    *,
    autoencoder: str = "autoencoder",
    parameters: Sequence[str] = PARAMETERS,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    architecture: str = "latent_cnn",
    regressor_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    epochs: int = 200,
    batch_size: int = 128,
    validation_fraction: float = 0.3,
    patience: int | None = None,
    scaler: LabelScaler | None = None,
    standardize_latents: bool = False,
    progress: bool = True,
    fused: bool = False,
) -> list[LatentRegressor]:
    """Train one latent regressor per parameter and seed on synthetic latents (MB24 stage 3).

    Args:
        synthetic_latents: (n, latent_dim) latents of the synthetic spectra (original encoder).
        labels: (n, len(parameters)) physical labels in the order of ``parameters``.
        autoencoder: name recorded in each regressor (which latents it reads).
        parameters: the label columns (default Teff, log g, [M/H], v sin i).
        seeds: one regressor per seed and parameter (MB24: 5 per autoencoder); the seed sets
            the weights (``seed=`` of the model), the split and Keras' global seed for shuffling.
        architecture: a registered regressor taking ``latent_dim`` (``"latent_cnn"``, MB24;
            or ``"latent_mlp"``).
        regressor_kwargs: per parameter, constructor overrides (e.g. MB24 Teff:
            ``{"teff": {"nf1": 64, "nf2": 32, "nu": 64, "learning_rate": 0.01}}``).
        epochs: training epochs (MB24: 200).
        batch_size: batch size.
        validation_fraction: validation share of the stratified split (MB24: 0.3).
        patience: stop after this many epochs without a better validation loss and keep the
            best weights; ``None`` trains all epochs (MB24).
        scaler: the label standardisation; default fitted on ``labels``.
        standardize_latents: standardise each latent dimension with the mean and standard
            deviation of ``synthetic_latents`` (:class:`LatentScaler`, stored in every
            regressor and applied by :meth:`LatentRegressor.predict`). Not in MB24 (``False``).
        progress: show a tqdm bar over regressors (over epochs with ``fused``).
        fused: train all regressors as the branches of one model
            (:func:`mdwarf_zoo.fused.train_fused`: one traced step trains every regressor;
            several times faster for the small latent CNNs). Each regressor keeps its own
            model, split, seed and Adam, but visits its training rows in the order
            ``default_rng([seed, epoch]).permutation`` (that of the recipe runner) instead of
            ``Model.fit``'s shuffle, so the weights equal those of the runner's separate
            training, not those of ``fused=False``. Regressors whose ``regressor_kwargs`` give
            different layer shapes are fused in separate groups.

    Returns:
        The trained regressors (parameter-major, then seed).

    Examples:
        >>> import numpy as np, mdwarf_zoo
        >>> rng = np.random.default_rng(0)
        >>> z, labels = rng.normal(size=(60, 8)), rng.uniform(3000, 4000, (60, 1))
        >>> regressors = mdwarf_zoo.train_regressors(
        ...     z, labels, parameters=["teff"], seeds=[0, 1], epochs=1, fused=True,
        ...     regressor_kwargs={"teff": {"nf1": 4, "nf2": 4, "nu": 4}}, progress=False)
        >>> [(r.parameter, r.seed) for r in regressors]
        [('teff', 0), ('teff', 1)]

    Raises:
        ValueError: for mismatched shapes, non-finite values, an unknown parameter or
            architecture, or an empty ``seeds``.
    """
    parameters = tuple(parameters)
    unknown = [p for p in parameters if p not in PARAMETERS]
    if unknown:
        raise ValueError(f"train_regressors: unknown parameter(s) {unknown}; use {PARAMETERS}")
    labels = check_labels(labels, len(parameters), "train_regressors: labels")
    x = np.asarray(synthetic_latents, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(
            f"train_regressors: synthetic_latents must be ({labels.shape[0]}, latent_dim) to "
            f"match the labels, got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("train_regressors: synthetic_latents has non-finite values")
    if not seeds:
        raise ValueError("train_regressors: seeds is empty")
    scaler = scaler or LabelScaler.fit(labels, parameters)
    if scaler.names != parameters:
        raise ValueError(
            f"train_regressors: the scaler has columns {scaler.names}, the labels {parameters}"
        )
    scaled = scaler.transform(labels)
    latent_scaler = LatentScaler.fit(x) if standardize_latents else None
    if latent_scaler is not None:
        x = latent_scaler.transform(x)
    regressor_kwargs = dict(regressor_kwargs or {})
    jobs = [(column, p, int(s)) for column, p in enumerate(parameters) for s in seeds]
    if fused:
        return _train_fused_regressors(
            x, labels, scaled, jobs, autoencoder=autoencoder, architecture=architecture,
            regressor_kwargs=regressor_kwargs, epochs=epochs, batch_size=batch_size,
            validation_fraction=validation_fraction, patience=patience, scaler=scaler,
            latent_scaler=latent_scaler, progress=progress,
        )
    out = []
    for column, parameter, seed in tqdm(jobs, desc=f"regressors ({autoencoder})",
                                        disable=not progress):
        y = scaled[:, column].astype(np.float32)
        train, val = stratified_split(labels[:, column], validation_fraction, seed=seed)
        keras.utils.set_random_seed(seed)
        model = create_model(
            architecture,
            latent_dim=x.shape[1],
            seed=seed,
            **dict(regressor_kwargs.get(parameter, {})),
        )
        callbacks = []
        if patience is not None:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=int(patience), restore_best_weights=True
            ))
        history = model.fit(
            x[train], y[train], validation_data=(x[val], y[val]), epochs=int(epochs),
            batch_size=int(batch_size), shuffle=True, callbacks=callbacks, verbose=0,
        )
        predicted = np.asarray(model.predict(x[val], batch_size=1024, verbose=0))[:, 0]
        mse = float(np.mean((predicted - y[val]) ** 2))
        rms = float(np.sqrt(mse)) * float(scaler.std[column])
        logger.info("regressor %s/%s seed %d: validation MSE %.4g (rms %.4g %s)", autoencoder,
                    parameter, seed, mse, rms, PARAMETER_UNITS[parameter])
        out.append(LatentRegressor(parameter, autoencoder, seed, model, scaler, mse, rms,
                                   {k: list(map(float, v)) for k, v in history.history.items()},
                                   latent_scaler))
    return out


def _train_fused_regressors(
    x: np.ndarray,
    labels: np.ndarray,
    scaled: np.ndarray,
    jobs: list[tuple[int, str, int]],
    *,
    autoencoder: str,
    architecture: str,
    regressor_kwargs: dict[str, Mapping[str, Any]],
    epochs: int,
    batch_size: int,
    validation_fraction: float,
    patience: int | None,
    scaler: LabelScaler,
    latent_scaler: LatentScaler | None,
    progress: bool,
) -> list[LatentRegressor]:
    """:func:`train_regressors` with ``fused=True``: one fused model per architecture
    configuration (regressors whose ``regressor_kwargs`` give the same shapes)."""
    models, splits = [], []
    for column, parameter, seed in jobs:
        splits.append(stratified_split(labels[:, column], validation_fraction, seed=seed))
        models.append(create_model(architecture, latent_dim=x.shape[1], seed=seed,
                                   **dict(regressor_kwargs.get(parameter, {}))))
    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        shapes = [tuple(v.shape) for v in model.weights]
        groups.setdefault(repr(shapes), []).append(i)
    out: list[LatentRegressor | None] = [None] * len(jobs)
    for members in groups.values():
        results = train_fused(
            [models[i] for i in members], x,
            np.stack([scaled[:, jobs[i][0]] for i in members]).astype(np.float32),
            [splits[i][0] for i in members], [splits[i][1] for i in members],
            seeds=[jobs[i][2] for i in members], epochs=int(epochs),
            batch_size=int(batch_size), patience=patience,
            description=f"fused regressors ({autoencoder})", progress=progress,
        )
        for i, result in zip(members, results, strict=True):
            (column, parameter, seed), model = jobs[i], models[i]
            predicted = call_in_batches(model, x[splits[i][1]], 1024)[:, 0]
            mse = float(np.mean((predicted - scaled[splits[i][1], column]) ** 2))
            rms = float(np.sqrt(mse)) * float(scaler.std[column])
            logger.info("regressor %s/%s seed %d (fused): validation MSE %.4g (rms %.4g %s)",
                        autoencoder, parameter, seed, mse, rms, PARAMETER_UNITS[parameter])
            out[i] = LatentRegressor(parameter, autoencoder, seed, model, scaler, mse, rms,
                                     result.history, latent_scaler)
    return out


def predict_ensemble(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray] | np.ndarray,
    *,
    exact: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every regressor's predictions for every star, grouped by parameter.

    Args:
        regressors: from :func:`train_regressors` (one or several autoencoders).
        observed_latents: the observed latents of each autoencoder, keyed by the regressors'
            ``autoencoder`` name; a single array serves regressors of one autoencoder.
        exact: bit for bit each regressor's own ``predict`` (``predict_fused(exact=True)``);
            the default is equal to float32 rounding and faster.

    Returns:
        ``(predictions, validation_mse)``: per parameter a (n_regressors, n_stars) array in
        physical units, and the matching (n_regressors,) validation MSEs, ready for
        :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`.

    Raises:
        ValueError: when a regressor's autoencoder has no latents.
    """
    if not regressors:
        raise ValueError("predict_ensemble: no regressors")
    if not isinstance(observed_latents, Mapping):
        names = {r.autoencoder for r in regressors}
        if len(names) != 1:
            raise ValueError(
                f"predict_ensemble: regressors read the latents of {sorted(names)}; pass a "
                "mapping from autoencoder name to observed latents"
            )
        observed_latents = {names.pop(): observed_latents}
    for regressor in regressors:
        if regressor.autoencoder not in observed_latents:
            raise ValueError(
                f"predict_ensemble: no observed latents for autoencoder "
                f"{regressor.autoencoder!r}; have {sorted(observed_latents)}"
            )
    # Regressors reading the same latents are evaluated in one fused call
    # (mdwarf_zoo.fused.predict_fused: every layer one batched operation over all of them).
    groups: dict[tuple[str, int], list[int]] = {}
    for i, regressor in enumerate(regressors):
        groups.setdefault((regressor.autoencoder, id(regressor.latent_scaler)), []).append(i)
    values: list[np.ndarray] = [np.empty(0)] * len(regressors)
    for (name, _), members in groups.items():
        x = np.asarray(observed_latents[name], dtype=np.float32)
        if regressors[members[0]].latent_scaler is not None:
            x = regressors[members[0]].latent_scaler.transform(x)
        scaled = predict_fused([regressors[i].model for i in members], x, exact=exact)
        for row, i in zip(scaled, members, strict=True):
            values[i] = regressors[i].scaler.inverse_transform(row[:, 0], regressors[i].parameter)
    predictions: dict[str, list[np.ndarray]] = {}
    mse: dict[str, list[float]] = {}
    for regressor, value in zip(regressors, values, strict=True):
        predictions.setdefault(regressor.parameter, []).append(value)
        mse.setdefault(regressor.parameter, []).append(regressor.validation_mse)
    return (
        {p: np.stack(v) for p, v in predictions.items()},
        {p: np.asarray(v) for p, v in mse.items()},
    )


