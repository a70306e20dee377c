"""The reference pipeline of Mas-Buitrago et al. 2024 (MB24), stages 2-4, as library functions.

1. **Transfer** (:func:`mdwarf_zoo.transfer`): each autoencoder, trained on synthetic spectra,
   is fine-tuned on the observed spectra with its first layers frozen.
2. **Latents** (:func:`latents`): synthetic spectra go through the *original* encoder, observed
   spectra through the *fine-tuned* one (MB24's choice; ``observed_encoder="original"`` gives the
   other choice, i.e. no transfer for the observed side).
3. **Regressors** (:func:`train_regressors`): for each parameter and each seed, one latent CNN
   (``latent_cnn``) trained on the synthetic latents against the standardised label
   (:class:`LabelScaler`), with a train/validation split stratified on that label (MB24: 70/30).
   With ``standardize_latents=True`` (not in MB24) each latent dimension is first standardised
   with the mean and standard deviation of the synthetic latents (:class:`LatentScaler`), kept
   in the regressor and applied again to the observed latents.
4. **Ensemble** (:func:`predict_ensemble` then :func:`mdwarf_zoo.ensemble.ensemble_table`): every
   regressor predicts every observed star (physical units); the best K by validation MSE
   (MB24: 80 of 5 seeds x 26 autoencoders = 130) give the KDE-mode value and the
   P16/P84 errors.

:func:`run_pipeline` chains the four steps for one or several autoencoders.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from mdwarf_zoo.ensemble import PARAMETER_UNITS, PARAMETERS, ensemble_table, select_best
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.transfer import FreezeSpec, prepare_spectra, transfer

__all__ = [
    "ALIGNMENTS",
    "LabelScaler",
    "LatentRegressor",
    "LatentScaler",
    "PipelineResult",
    "align_latents",
    "align_observed_latents",
    "alignment_uncertainty",
    "encode",
    "latents",
    "predict_ensemble",
    "run_pipeline",
    "stratified_split",
    "train_regressors",
]

logger = logging.getLogger(__name__)

_OBSERVED_ENCODERS = ("fine_tuned", "original")


@dataclass
class LabelScaler:
    """Per-parameter standardisation ``(label - mean) / std`` of the training labels.

    Args:
        names: parameter names, one per label column (default ``teff, logg, mh, vsini``).
        mean: per-column mean, physical units.
        std: per-column standard deviation (> 0), physical units.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline import LabelScaler
        >>> scaler = LabelScaler.fit(np.array([[3000, 5.0], [3400, 4.8]]), ["teff", "logg"])
        >>> scaler.transform(np.array([[3200, 4.9]])).tolist()
        [[0.0, 0.0]]
    """

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if not len(self.names) == self.mean.size == self.std.size:
            raise ValueError(
                f"LabelScaler: {len(self.names)} names, {self.mean.size} means and "
                f"{self.std.size} standard deviations"
            )
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))
                and np.all(self.std > 0)):
            raise ValueError(
                f"LabelScaler: means must be finite and standard deviations > 0, got "
                f"mean={self.mean.tolist()} std={self.std.tolist()}"
            )

    @classmethod
    def fit(cls, labels: np.ndarray, names: Sequence[str] = PARAMETERS) -> LabelScaler:
        """Mean and standard deviation of each column of ``labels`` (n, k).

        Raises:
            ValueError: for a wrong shape, non-finite labels or a constant column (naming it).
        """
        labels = _check_labels(labels, len(names), "LabelScaler.fit: labels")
        std = labels.std(axis=0)
        constant = [name for name, s in zip(names, std, strict=True) if s == 0]
        if constant:
            raise ValueError(
                f"LabelScaler.fit: label column(s) {constant} are constant; a regressor for a "
                "constant parameter cannot be trained"
            )
        return cls(tuple(names), labels.mean(axis=0), std)

    def _columns(self, column: str | None) -> tuple[np.ndarray, np.ndarray]:
        if column is None:
            return self.mean, self.std
        if column not in self.names:
            raise ValueError(f"LabelScaler: unknown column {column!r}; have {self.names}")
        i = self.names.index(column)
        return self.mean[i], self.std[i]

    def transform(self, labels: np.ndarray, column: str | None = None) -> np.ndarray:
        """Standardise all columns, or the one named ``column`` (then ``labels`` is 1-D)."""
        mean, std = self._columns(column)
        return (np.asarray(labels, dtype=np.float64) - mean) / std

    def inverse_transform(self, scaled: np.ndarray, column: str | None = None) -> np.ndarray:
        """Back to physical units; the inverse of :meth:`transform`."""
        mean, std = self._columns(column)
        return np.asarray(scaled, dtype=np.float64) * std + mean

    def to_dict(self) -> dict:
        """JSON-ready: names, means, standard deviations and units."""
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "units": [str(PARAMETER_UNITS.get(name, "")) for name in self.names],
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> LabelScaler:
        """Rebuild from :meth:`to_dict` output."""
        return cls(tuple(config["names"]), config["mean"], config["std"])


@dataclass
class LatentScaler:
    """Per-dimension standardisation ``(latent - mean) / std`` of latent vectors.

    Fitted on the synthetic latents that train the regressors and stored with each regressor,
    so observed latents are moved by the same amounts. A ReLU bottleneck leaves some dimensions
    constant (dead units) and others spanning wide ranges; a constant dimension gets ``std = 1``
    and so maps to 0.

    Args:
        mean: (latent_dim,) per-dimension mean.
        std: (latent_dim,) per-dimension standard deviation (> 0).

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline import LatentScaler
        >>> scaler = LatentScaler.fit(np.array([[0.0, 2.0], [0.0, 4.0]]))
        >>> scaler.std.tolist(), scaler.transform(np.array([[0.0, 4.0]])).tolist()
        ([1.0, 1.0], [[0.0, 1.0]])
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if self.mean.size != self.std.size:
            raise ValueError(
                f"LatentScaler: {self.mean.size} means but {self.std.size} standard deviations"
            )
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))
                and np.all(self.std > 0)):
            raise ValueError("LatentScaler: means must be finite and standard deviations > 0")

    @classmethod
    def fit(cls, latent_vectors: np.ndarray) -> LatentScaler:
        """Mean and standard deviation of each column of ``latent_vectors`` (n, latent_dim);
        a column whose spread is below 1e-6 of its scale (a dead unit) gets ``std = 1``."""
        x = np.asarray(latent_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"LatentScaler.fit: expected (n, latent_dim), got {x.shape}")
        std = x.std(axis=0)
        dead = std <= 1e-6 * np.maximum(1.0, np.abs(x).max(axis=0))
        return cls(x.mean(axis=0), np.where(dead, 1.0, std))

    def transform(self, latent_vectors: np.ndarray) -> np.ndarray:
        """Standardised latents, float32 (n, latent_dim).

        Raises:
            ValueError: when the latent dimension differs from the fitted one.
        """
        x = np.asarray(latent_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise ValueError(
                f"LatentScaler: fitted on {self.mean.size}-d latents, got shape {x.shape}"
            )
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready: means and standard deviations."""
        return {"kind": "standard", "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> LatentScaler:
        """Rebuild from :meth:`to_dict` output."""
        return cls(config["mean"], config["std"])


def _check_labels(labels: Any, n_columns: int, what: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != n_columns or labels.shape[0] == 0:
        raise ValueError(f"{what}: expected shape (n, {n_columns}), got {labels.shape}")
    if not np.all(np.isfinite(labels)):
        row = int(np.argwhere(~np.isfinite(labels))[0, 0])
        raise ValueError(f"{what}: row {row} has non-finite labels {labels[row].tolist()}")
    return labels


def encode(autoencoder: keras.Model, flux: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Latent vectors of ``flux`` through ``autoencoder.encoder`` (the mean for a VAE).

    Args:
        autoencoder: a zoo autoencoder (with an ``encoder``), or an encoder model itself.
        flux: (n, pixels) preprocessed spectra.
        batch_size: prediction batch size.

    Returns:
        float32 (n, latent_dim).
    """
    encoder = getattr(autoencoder, "encoder", autoencoder)
    flux = np.asarray(flux, dtype=np.float32)
    return _call_in_batches(encoder, flux, batch_size)


def _call_in_batches(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model(x)`` in batches, as float32 numpy. A direct call, not ``Model.predict``: for the
    few hundred spectra of an ensemble, ``predict``'s per-call set-up (data adapter, tracing a
    predict function per model) cost more than the arithmetic (26 x 80 x 4 MB24 ensemble:
    ~90 s -> see benchmarks/RESULTS.md)."""
    if len(x) == 0:
        return np.asarray(model(x[:1], training=False), dtype=np.float32)[:0]
    parts = [
        np.asarray(model(x[first : first + batch_size], training=False), dtype=np.float32)
        for first in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts)


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
    for name, choice in (("observed_encoder", observed_encoder),
                         ("synthetic_encoder", synthetic_encoder)):
        if choice not in _OBSERVED_ENCODERS:
            raise ValueError(
                f"latents: {name} must be one of {_OBSERVED_ENCODERS}, got {choice!r}"
            )
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
        scaled = _call_in_batches(self.model, x, batch_size)
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
    labels = _check_labels(labels, len(parameters), "train_regressors: labels")
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
    from mdwarf_zoo.fused import train_fused

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
            predicted = _call_in_batches(model, x[splits[i][1]], 1024)[:, 0]
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
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every regressor's predictions for every star, grouped by parameter.

    Args:
        regressors: from :func:`train_regressors` (one or several autoencoders).
        observed_latents: the observed latents of each autoencoder, keyed by the regressors'
            ``autoencoder`` name; a single array serves regressors of one autoencoder.

    Returns:
        ``(predictions, validation_mse)``: per parameter a (n_regressors, n_stars) array in
        physical units, and the matching (n_regressors,) validation MSEs, ready for
        :func:`mdwarf_zoo.ensemble.ensemble_table`.

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
    from mdwarf_zoo.fused import predict_fused

    groups: dict[tuple[str, int], list[int]] = {}
    for i, regressor in enumerate(regressors):
        groups.setdefault((regressor.autoencoder, id(regressor.latent_scaler)), []).append(i)
    values: list[np.ndarray] = [np.empty(0)] * len(regressors)
    for (name, _), members in groups.items():
        x = np.asarray(observed_latents[name], dtype=np.float32)
        if regressors[members[0]].latent_scaler is not None:
            x = regressors[members[0]].latent_scaler.transform(x)
        scaled = predict_fused([regressors[i].model for i in members], x)
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


#: Latent alignments :func:`align_latents` and :func:`run_pipeline` know.
ALIGNMENTS = ("coral", "coral_neighbours")


def align_latents(
    observed: np.ndarray,
    synthetic: np.ndarray,
    *,
    method: str = "coral",
    synthetic_labels: np.ndarray | None = None,
    observed_labels: np.ndarray | None = None,
    neighbours: int = 20,
    eps: float = 1e-3,
    fit_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Map observed latents onto the synthetic latent distribution (not in MB24).

    ``"coral"`` (Sun & Saenko 2016, applied to the latents): whiten the observed latents with
    their own covariance and re-colour them with the synthetic covariance,
    ``z' = (z - mean_o) C_o^-1/2 C_s^1/2 + mean_s`` (``eps`` is added to both diagonals). It
    assumes the observed stars and the synthetic set share one label distribution: when they
    do not, the alignment moves real parameter differences away (measured on the simulator,
    a cool-only observed subset went from 162 to 275 K rms in Teff).

    ``"coral_neighbours"`` aligns onto the synthetic latents of the observed population only:
    the reference is the union, over the observed stars, of the ``neighbours`` synthetic rows
    nearest (in standardised label space) to each star's preliminary estimate
    ``observed_labels`` (e.g. the ensemble without alignment), widened (doubling
    ``neighbours``) until it holds at least ``2 x latent size`` rows. On the simulator it helped in
    every population tried but one (Teff of the cool-only subset, 162 -> 169 K).

    Transductive: the observed statistics come from the spectra given, so pass the whole
    observed sample at once (at least ``2 x latent size`` spectra are required).

    Args:
        observed: (n_obs, d) observed latents.
        synthetic: (n_syn, d) synthetic latents of the same encoder's latent space.
        method: one of ``ALIGNMENTS``.
        synthetic_labels: (n_syn, k) labels of ``synthetic`` (``"coral_neighbours"``).
        observed_labels: (n_obs, k) preliminary estimates (``"coral_neighbours"``).
        neighbours: synthetic rows per observed star in the reference (``"coral_neighbours"``).
        eps: ridge added to both covariances.
        fit_rows: indices of the observed rows (repeats allowed: a bootstrap resample) whose
            statistics, and for ``"coral_neighbours"`` whose estimates, define the map; the
            map is then applied to every row of ``observed``. Default: all rows.

    Returns:
        (n_obs, d) aligned observed latents.

    Raises:
        ValueError: for an unknown method, mismatched shapes, too few spectra or missing labels.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> synthetic = rng.normal(0, 1, (500, 3))
        >>> observed = rng.normal(5, 2, (400, 3))
        >>> aligned = align_latents(observed, synthetic)
        >>> bool(np.allclose(aligned.mean(0), synthetic.mean(0)))
        True
    """
    if method not in ALIGNMENTS:
        raise ValueError(f"align_latents: method={method!r} is not one of {', '.join(ALIGNMENTS)}")
    observed = np.asarray(observed, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if observed.ndim != 2 or synthetic.ndim != 2 or observed.shape[1] != synthetic.shape[1]:
        raise ValueError(
            f"align_latents: expected (n, d) observed and synthetic latents with the same d, got "
            f"{observed.shape} and {synthetic.shape}"
        )
    d = observed.shape[1]
    if fit_rows is None:
        fit_rows = np.arange(observed.shape[0])
    fit_rows = np.asarray(fit_rows)
    if (fit_rows.ndim != 1 or not np.issubdtype(fit_rows.dtype, np.integer)
            or (fit_rows.size and not 0 <= fit_rows.min() <= fit_rows.max() < len(observed))):
        raise ValueError(
            f"align_latents: fit_rows must be a 1-d array of row indices in 0..{len(observed) - 1}"
            f", got {fit_rows!r}"
        )
    if method == "coral_neighbours":
        if synthetic_labels is None or observed_labels is None:
            raise ValueError(
                "align_latents: method='coral_neighbours' needs synthetic_labels and "
                "observed_labels (preliminary estimates)"
            )
        syn_labels = np.asarray(synthetic_labels, dtype=np.float64)
        obs_labels = np.asarray(observed_labels, dtype=np.float64)
        if (syn_labels.ndim != 2 or obs_labels.ndim != 2
                or syn_labels.shape[1] != obs_labels.shape[1]):
            raise ValueError(
                f"align_latents: expected (n, k) synthetic_labels and observed_labels with the "
                f"same k, got {syn_labels.shape} and {obs_labels.shape}"
            )
        if syn_labels.shape[0] != synthetic.shape[0] or obs_labels.shape[0] != observed.shape[0]:
            raise ValueError(
                f"align_latents: {synthetic.shape[0]} synthetic latents but "
                f"{syn_labels.shape[0]} label rows, {observed.shape[0]} observed latents but "
                f"{obs_labels.shape[0]} estimate rows"
            )
        if int(neighbours) < 1:
            raise ValueError(f"align_latents: neighbours must be >= 1, got {neighbours}")
        spread = syn_labels.std(axis=0)
        spread[spread == 0] = 1.0
        obs_labels = obs_labels[np.unique(fit_rows)]
        order = np.concatenate([  # each star's synthetic rows, nearest first (64 at a time)
            np.argsort((((obs_labels[first:first + 64, None, :] - syn_labels[None]) / spread)
                        ** 2).sum(axis=-1), axis=1, kind="stable")
            for first in range(0, len(obs_labels), 64)
        ])
        k = min(int(neighbours), syn_labels.shape[0])
        reference = np.unique(order[:, :k])
        # Stars with near-identical estimates share neighbours: widen until the reference can
        # give a covariance (2 x latent size rows) or holds the whole synthetic set.
        while reference.size < 2 * d and k < syn_labels.shape[0]:
            k = min(2 * k, syn_labels.shape[0])
            reference = np.unique(order[:, :k])
        synthetic = synthetic[reference]
    fit = observed[fit_rows]
    for name, rows in (("observed", fit), ("synthetic reference", synthetic)):
        if rows.shape[0] < 2 * d:
            raise ValueError(
                f"align_latents: {rows.shape[0]} {name} latents for a {d}-d latent space; at "
                f"least {2 * d} are needed to estimate a covariance"
            )

    def power(covariance: np.ndarray, exponent: float) -> np.ndarray:
        values, vectors = np.linalg.eigh(covariance)
        return (vectors * np.maximum(values, 1e-12) ** exponent) @ vectors.T

    ridge = eps * np.eye(d)
    whiten = power(np.cov(fit, rowvar=False) + ridge, -0.5)
    colour = power(np.cov(synthetic, rowvar=False) + ridge, 0.5)
    return (observed - fit.mean(axis=0)) @ whiten @ colour + synthetic.mean(axis=0)


def _preliminary_estimates(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    method: str,
    parameters: Sequence[str],
) -> np.ndarray | None:
    """The per-star estimates ``"coral_neighbours"`` starts from: the median of the regressors'
    predictions from the unaligned latents (``None`` for the other methods)."""
    if method != "coral_neighbours":
        return None
    preliminary, _ = predict_ensemble(regressors, observed_latents)
    return np.column_stack([np.median(preliminary[p], axis=0) for p in parameters])


def align_observed_latents(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    synthetic_latents: Mapping[str, np.ndarray],
    synthetic_labels: np.ndarray,
    *,
    method: str,
    parameters: Sequence[str] = PARAMETERS,
    neighbours: int = 20,
) -> dict[str, np.ndarray]:
    """:func:`align_latents` for every autoencoder of an ensemble.

    For ``"coral_neighbours"`` the preliminary estimate of each star is the median of the
    ``regressors``' predictions from the unaligned ``observed_latents``.

    Args:
        regressors: the trained latent regressors (:func:`train_regressors`).
        observed_latents, synthetic_latents: per autoencoder name, (n, d) latents.
        synthetic_labels: (n_syn, len(parameters)) labels of the synthetic latents.
        method: one of ``ALIGNMENTS``.
        parameters: the label columns, in the order of ``synthetic_labels``.
        neighbours: see :func:`align_latents`.

    Returns:
        Per autoencoder name, the aligned observed latents (float32).
    """
    estimates = _preliminary_estimates(regressors, observed_latents, method, parameters)
    return {
        name: align_latents(
            latent, synthetic_latents[name], method=method, synthetic_labels=synthetic_labels,
            observed_labels=estimates, neighbours=neighbours,
        ).astype(np.float32)
        for name, latent in observed_latents.items()
    }


def alignment_uncertainty(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    synthetic_latents: Mapping[str, np.ndarray],
    synthetic_labels: np.ndarray,
    *,
    method: str,
    parameters: Sequence[str] = PARAMETERS,
    neighbours: int = 20,
    keep: int | None = None,
    resamples: int = 30,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """How much each star's estimate depends on which stars defined the latent alignment.

    The alignment (:func:`align_latents`) is estimated from the observed sample itself, so a
    sample of a few hundred stars leaves it uncertain (on the simulator, CORAL on gap-free
    spectra doubled the Teff error, 52 -> 103 K). This bootstraps it: ``resamples`` times, the
    observed stars are drawn with replacement, the map is fitted on the draw
    (``fit_rows``) and applied to every star, and the ensemble estimate (the median of the
    best ``keep`` regressors per parameter) is recomputed. The result, per parameter, is each
    star's standard deviation over the resamples; :func:`mdwarf_zoo.ensemble.ensemble_table`
    adds it in quadrature to the errors (``alignment_error=``). For ``"coral_neighbours"`` the
    preliminary estimates are those of :func:`align_observed_latents` (the unaligned ensemble
    median), and each draw's reference is the neighbours of the drawn stars.

    Args:
        regressors, observed_latents, synthetic_latents, synthetic_labels, method,
            parameters, neighbours: as for :func:`align_observed_latents`.
        keep: best-K regressors per parameter by validation MSE (as in the ensemble);
            ``None`` uses all.
        resamples: bootstrap draws (>= 2).
        seed: seed of the draws (the same seed gives the same errors).

    Returns:
        Per parameter, (n_stars,) standard deviations in physical units.

    Raises:
        ValueError: for fewer than 2 resamples, or as :func:`align_latents`.
    """
    if int(resamples) < 2:
        raise ValueError(f"alignment_uncertainty: resamples must be >= 2, got {resamples!r}")
    resamples = int(resamples)
    n_stars = {len(latent) for latent in observed_latents.values()}
    if len(n_stars) != 1:
        raise ValueError(
            f"alignment_uncertainty: the autoencoders' observed latents hold different numbers "
            f"of stars: {sorted(n_stars)}"
        )
    n = n_stars.pop()
    estimates = _preliminary_estimates(regressors, observed_latents, method, parameters)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    stacked = {
        name: np.concatenate([
            align_latents(latent, synthetic_latents[name], method=method,
                          synthetic_labels=synthetic_labels, observed_labels=estimates,
                          neighbours=neighbours, fit_rows=rows)
            for rows in draws
        ]).astype(np.float32)
        for name, latent in observed_latents.items()
    }
    predictions, mse = predict_ensemble(regressors, stacked)
    out = {}
    for parameter, values in predictions.items():
        rows = select_best(mse[parameter], keep) if keep is not None else slice(None)
        per_draw = np.median(values[rows].reshape(-1, resamples, n), axis=0)
        out[parameter] = per_draw.std(axis=0, ddof=1)
    return out


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produces.

    Attributes:
        table: one row per observed star: KDE-mode values and lower/upper errors with units.
        predictions: per parameter, (n_regressors, n_stars) predictions (physical units).
        validation_mse: per parameter, the regressors' validation MSEs (standardised units).
        regressors: the trained latent regressors.
        fine_tuned: per autoencoder name, the fine-tuned copy (empty without transfer).
        synthetic_latents, observed_latents: per autoencoder name.
        scaler: the label standardisation.
        identifiers: one name per observed star.
    """

    table: Table
    predictions: dict[str, np.ndarray]
    validation_mse: dict[str, np.ndarray]
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
        observed_encoder: ``"fine_tuned"`` (MB24: transfer, then encode the observed spectra
            with the fine-tuned encoder) or ``"original"`` (no transfer at all).
        synthetic_encoder: ``"original"`` (MB24) or ``"fine_tuned"`` (synthetic spectra
            through the fine-tuned encoder too; needs ``observed_encoder="fine_tuned"``).
        transfer_options: keyword arguments of :func:`mdwarf_zoo.transfer` (``epochs``,
            ``batch_size``, ``learning_rate``, ``validation_split``, ``seed``, ``mode``,
            ``anchor_weight`` ...). ``anchor_spectra`` defaults to ``synthetic_flux``: it
            anchors ``mode="anchored"`` and measures every mode's latent drift
            (``table.meta["latent_drift"]``, per autoencoder, in sigma).
        parameters: label columns (default Teff, log g, [M/H], v sin i).
        seeds: regressor seeds per autoencoder and parameter (MB24: 5).
        keep: best K regressors per parameter by validation MSE (MB24: 80); ``None`` keeps all.
        identifiers: star names; default from the observed input (set identifiers, ``OBJECT``
            headers) or ``spectrum_<i>``.
        error_model: ``"spread"`` (MB24) or ``"spread+validation"`` (the regressors'
            validation rms added in quadrature); see :mod:`mdwarf_zoo.ensemble`.
        latent_alignment: ``None`` (MB24), ``"coral"`` or ``"coral_neighbours"``: the
            observed latents are mapped onto the synthetic ones with :func:`align_latents`
            before the final prediction (for ``"coral_neighbours"`` the preliminary estimates
            are the ensemble medians without alignment). ``result.observed_latents`` holds the
            aligned latents.
        alignment_neighbours: ``neighbours`` of ``"coral_neighbours"``.
        alignment_resamples: with ``latent_alignment``, the bootstrap draws of
            :func:`alignment_uncertainty`, whose per-star spread is added in quadrature to
            the errors (``0`` leaves it out).
        **regressor_options: keyword arguments of :func:`train_regressors` (``epochs``,
            ``architecture``, ``regressor_kwargs``, ``patience``, ``batch_size``,
            ``standardize_latents`` ...).

    Returns:
        A :class:`PipelineResult`; ``result.table`` is the estimate table.

    Raises:
        ValueError: see :func:`mdwarf_zoo.transfer` and :func:`train_regressors`.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.pipeline import run_pipeline
        >>> from mdwarf_zoo.ensemble import write_table
        >>> ae = mdwarf_zoo.from_pretrained("dense_ae_1024")  # doctest: +SKIP
        >>> result = run_pipeline(ae, syn_flux, syn_labels, "observed.h5")  # doctest: +SKIP
        >>> write_table(result.table, "estimates.ecsv")  # doctest: +SKIP
    """
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
    if observed_encoder not in _OBSERVED_ENCODERS:
        raise ValueError(
            f"run_pipeline: observed_encoder must be one of {_OBSERVED_ENCODERS}, got "
            f"{observed_encoder!r}"
        )
    if latent_alignment is not None and latent_alignment not in ALIGNMENTS:
        raise ValueError(
            f"run_pipeline: latent_alignment must be None or one of {', '.join(ALIGNMENTS)}, "
            f"got {latent_alignment!r}"
        )
    first = next(iter(named.values()))
    observed_flux, observed_ids = prepare_spectra(observed, first, what="run_pipeline: observed")
    synthetic_flux, _ = prepare_spectra(synthetic_flux, first,
                                        what="run_pipeline: synthetic_flux")
    labels = _check_labels(synthetic_labels, len(tuple(parameters)),
                           "run_pipeline: synthetic_labels")
    if labels.shape[0] != synthetic_flux.shape[0]:
        raise ValueError(
            f"run_pipeline: {synthetic_flux.shape[0]} synthetic spectra but {labels.shape[0]} "
            "label rows"
        )
    scaler = LabelScaler.fit(labels, tuple(parameters))
    fine_tuned: dict[str, keras.Model] = {}
    syn_latents: dict[str, np.ndarray] = {}
    obs_latents: dict[str, np.ndarray] = {}
    regressors: list[LatentRegressor] = []
    drifts: dict[str, float] = {}
    for name, model in named.items():
        tuned = None
        if observed_encoder == "fine_tuned":
            rule = freeze if freeze is not None else getattr(model, "default_freeze", None)
            if rule is None:
                raise ValueError(
                    f"run_pipeline: autoencoder {name!r} has no default_freeze; pass freeze="
                )
            options = dict(transfer_options or {})
            # The synthetic spectra anchor mode="anchored" and measure every mode's latent drift.
            options.setdefault("anchor_spectra", synthetic_flux)
            tuned = transfer(model, observed_flux, freeze=rule, **options)
            fine_tuned[name] = tuned
            drifts[name] = tuned.transfer_info["latent_drift"]
        syn_latents[name], obs_latents[name] = latents(
            model, synthetic_flux, observed_flux, fine_tuned=tuned,
            observed_encoder=observed_encoder, synthetic_encoder=synthetic_encoder,
        )
        regressors += train_regressors(
            syn_latents[name], labels, autoencoder=name, parameters=parameters, seeds=seeds,
            scaler=scaler, **regressor_options,
        )
    alignment_error = None
    if latent_alignment is not None:
        if int(alignment_resamples) > 0:
            alignment_error = alignment_uncertainty(
                regressors, obs_latents, syn_latents, labels, method=latent_alignment,
                parameters=parameters, neighbours=alignment_neighbours, keep=keep,
                resamples=alignment_resamples,
            )
        obs_latents = align_observed_latents(
            regressors, obs_latents, syn_latents, labels, method=latent_alignment,
            parameters=parameters, neighbours=alignment_neighbours,
        )
    predictions, mse = predict_ensemble(regressors, obs_latents)
    rms: dict[str, list[float]] = {}
    for regressor in regressors:
        rms.setdefault(regressor.parameter, []).append(regressor.validation_rms)
    names = list(identifiers) if identifiers is not None else observed_ids
    table = ensemble_table(predictions, names, validation_mse=mse, keep=keep,
                           error_model=error_model, validation_rms=rms,
                           alignment_error=alignment_error)
    table.meta["observed_encoder"] = observed_encoder
    table.meta["synthetic_encoder"] = synthetic_encoder
    table.meta["latent_alignment"] = latent_alignment or "none"
    table.meta["autoencoders"] = list(named)
    if drifts:
        table.meta["transfer_mode"] = dict(transfer_options or {}).get("mode", "mb24")
        table.meta["latent_drift"] = drifts
    return PipelineResult(table, predictions, mse, regressors, fine_tuned, syn_latents,
                          obs_latents, scaler, names)
