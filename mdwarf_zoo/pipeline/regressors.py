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

import hashlib
import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.models.inference import call_in_batches
from mdwarf_zoo.pipeline.ensemble import PARAMETER_UNITS
from mdwarf_zoo.pipeline.scaling import LabelScaler, LatentScaler, check_labels
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.training.fused import predict_fused, train_fused
from mdwarf_zoo.training.loop import fit_resumable

__all__ = [
    "LatentRegressor",
    "RegressorJob",
    "RegressorSpec",
    "RegressorStore",
    "regressor_jobs",
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


@dataclass(frozen=True)
class RegressorSpec:
    """How the regressors of one parameter are built and trained.

    Attributes:
        architecture: a registered regressor taking ``latent_dim`` (``"latent_cnn"``, MB24).
        kwargs: constructor arguments (e.g. ``learning_rate``, ``nf1``, ``nu``).
        epochs: training epochs (MB24: 200).
        batch_size: batch size (MB24: 32, Keras' default in their training script).
        validation_fraction: validation share of the stratified split (MB24: 0.3).
    """

    architecture: str = "latent_cnn"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 200
    batch_size: int = 128
    validation_fraction: float = 0.3


@dataclass(frozen=True)
class RegressorJob:
    """One regressor to train: parameter ``parameter`` (label column ``column``), its
    ``index``-th seed ``seed``, with ``spec``."""

    parameter: str
    column: int
    index: int
    seed: int
    spec: RegressorSpec

    @property
    def name(self) -> str:
        """``<parameter>_seed<index>``: the regressor's name in a run folder."""
        return f"{self.parameter}_seed{self.index}"


class RegressorStore:
    """Where :func:`train_regressors` keeps regressors between calls: by default nowhere
    (everything in memory). The recipe runner's member folder overrides it, so a killed run
    resumes (checkpoints), a finished regressor is loaded instead of trained again, and each
    is saved as soon as it is trained; and so that it builds models under its strategy."""

    def build(self, create: Callable[[], keras.Model]) -> keras.Model:
        """A new compiled model from ``create`` (e.g. inside a strategy's scope)."""
        return create()

    def trained(self, model: keras.Model) -> keras.Model:
        """The model to keep after its training (e.g. a copy outside a strategy)."""
        return model

    def load(self, job: RegressorJob) -> tuple[bool, keras.Model | None]:
        """``(done, model)``: whether ``job`` was trained before, and its model (``None``
        with ``done``: leave the job out)."""
        return False, None

    def checkpoint(self, name: str) -> Path | None:
        """The checkpoint file of the regressor or fused group called ``name``."""
        return None

    def save(
        self,
        regressor: LatentRegressor,
        job: RegressorJob,
        history: list[dict[str, float]],
        fused: bool,
    ) -> None:
        """Keep a newly trained regressor."""

    def release(self, name: str) -> None:
        """The regressor or fused group ``name`` is saved: drop its checkpoint."""


def regressor_jobs(
    parameters: Sequence[str],
    seeds: Sequence[int] | Mapping[str, Sequence[int]],
    specs: Mapping[str, RegressorSpec],
) -> list[RegressorJob]:
    """Parameter-major, then seed: one job per parameter and seed (``seeds``: one list for
    every parameter, or a list per parameter)."""
    jobs = []
    for column, parameter in enumerate(parameters):
        own = seeds[parameter] if isinstance(seeds, Mapping) else seeds
        jobs += [
            RegressorJob(parameter, column, k, int(seed), specs[parameter])
            for k, seed in enumerate(own)
        ]
    return jobs


def train_regressors(
    synthetic_latents: np.ndarray,
    labels: np.ndarray,
    *,
    autoencoder: str = "autoencoder",
    parameters: Sequence[str] = PARAMETERS,
    seeds: Sequence[int] | Mapping[str, Sequence[int]] = (0, 1, 2, 3, 4),
    architecture: str = "latent_cnn",
    regressor_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    epochs: int = 200,
    batch_size: int = 128,
    validation_fraction: float = 0.3,
    patience: int | None = None,
    scaler: LabelScaler | None = None,
    standardize_latents: bool = False,
    progress: bool = True,
    fused: bool = True,
    specs: Mapping[str, RegressorSpec] | None = None,
    store: RegressorStore | None = None,
) -> list[LatentRegressor]:
    """Train one latent regressor per parameter and seed on synthetic latents (MB24 stage 3).

    Every regressor visits its training rows in the order of the one training loop
    (:func:`mdwarf_zoo.training.loop.fit_resumable`: ``default_rng([seed, epoch])``), with its
    own model seed, stratified split and Adam; the recipe runner trains its regressors through
    this function too, so the same seeds give the same weights either way.

    Args:
        synthetic_latents: (n, latent_dim) latents of the synthetic spectra (original encoder).
        labels: (n, len(parameters)) physical labels in the order of ``parameters``.
        autoencoder: name recorded in each regressor (which latents it reads).
        parameters: the label columns (default all four).
        seeds: the regressors' seeds (MB24: 5 per autoencoder and parameter): one list for
            every parameter, or a list per parameter. A seed sets the weights, the split and
            the batch order.
        architecture, regressor_kwargs, epochs, batch_size, validation_fraction: the
            :class:`RegressorSpec` of every parameter (``regressor_kwargs``: per parameter,
            constructor overrides, e.g. MB24 Teff ``{"teff": {"nf1": 64, "nf2": 32, "nu": 64,
            "learning_rate": 0.01}}``), unless ``specs`` gives them.
        patience: stop after this many epochs without a better validation loss, keeping the
            best weights (``None``: all epochs, MB24).
        scaler: the label standardisation; default fitted on ``labels``.
        standardize_latents: standardise each latent dimension with the mean and standard
            deviation of ``synthetic_latents`` (:class:`LatentScaler`, stored in every
            regressor and applied by :meth:`LatentRegressor.predict`). Not in MB24.
        progress: show a tqdm bar over regressors (over epochs with ``fused``).
        fused: train the regressors of one layer shape, epoch count and batch size as the branches
            of one model (:func:`mdwarf_zoo.training.fused.train_fused`, the default: one traced
            step trains all, 1-2.8x as fast): the same seeds, splits, batch order and Adam as one
            by one (``fused=False``), so the same weights to float32 rounding.
        specs: per parameter, a :class:`RegressorSpec` (overrides the five arguments above).
        store: where regressors are kept between calls (:class:`RegressorStore`).

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
        ValueError: for mismatched shapes, non-finite values, an unknown name, no seeds.
    """
    parameters = tuple(parameters)
    labels, x = _check_inputs(synthetic_latents, labels, parameters, seeds)
    scaler = scaler or LabelScaler.fit(labels, parameters)
    if scaler.names != parameters:
        raise ValueError(
            f"train_regressors: the scaler has columns {scaler.names}, the labels {parameters}"
        )
    latent_scaler = LatentScaler.fit(x) if standardize_latents else None
    if latent_scaler is not None:
        x = latent_scaler.transform(x)
    if specs is None:
        specs = {p: RegressorSpec(architecture, dict((regressor_kwargs or {}).get(p, {})),
                                  int(epochs), int(batch_size), validation_fraction)
                 for p in parameters}
    training = _Training(x, labels, scaler.transform(labels).astype(np.float32), scaler,
                         latent_scaler, autoencoder, patience, progress, store or RegressorStore())
    jobs = regressor_jobs(parameters, seeds, specs)
    done: dict[int, LatentRegressor] = {}
    pending = []
    for i, job in enumerate(jobs):
        finished, model = training.store.load(job)
        if finished and model is not None:
            done[i] = training.regressor(job, model, [], fused=None)
        elif not finished:
            pending.append(i)
    if fused:
        done.update(training.fused([(i, jobs[i]) for i in pending]))
    else:
        for i in tqdm(pending, desc=f"regressors ({autoencoder})", disable=not progress):
            done[i] = training.one(jobs[i])
    return [done[i] for i in sorted(done)]


def _check_inputs(
    synthetic_latents: Any, labels: Any, parameters: tuple[str, ...], seeds: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``train_regressors``' labels (float64) and latents (float32), checked."""
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
    lists = seeds.values() if isinstance(seeds, Mapping) else [seeds]
    if not seeds or not all(len(own) for own in lists):
        raise ValueError("train_regressors: seeds is empty")
    return labels, x


@dataclass
class _Training:
    """The shared state of one :func:`train_regressors` call."""

    x: np.ndarray
    labels: np.ndarray
    scaled: np.ndarray
    scaler: LabelScaler
    latent_scaler: LatentScaler | None
    autoencoder: str
    patience: int | None
    progress: bool
    store: RegressorStore

    def split(self, job: RegressorJob) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(
            self.labels[:, job.column], job.spec.validation_fraction, seed=job.seed
        )

    def create(self, job: RegressorJob) -> keras.Model:
        """The job's untrained, compiled model (seeded weights)."""
        keras.utils.set_random_seed(job.seed)
        return self.store.build(
            lambda: create_model(
                job.spec.architecture,
                latent_dim=self.x.shape[1],
                seed=job.seed,
                **dict(job.spec.kwargs),
            )
        )

    def one(self, job: RegressorJob) -> LatentRegressor:
        """Train ``job`` alone through the one training loop."""
        train, val = self.split(job)
        y = self.scaled[:, job.column]
        model = self.create(job)
        callbacks = []
        if self.patience is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=int(self.patience), restore_best_weights=True
                )
            )
        history = fit_resumable(
            model,
            self.x[train],
            y[train],
            epochs=job.spec.epochs,
            batch_size=job.spec.batch_size,
            seed=job.seed,
            checkpoint=self.store.checkpoint(job.name),
            validation=(self.x[val], y[val]),
            description=f"{self.autoencoder} {job.parameter} seed {job.index}",
            progress=False,
            callbacks=callbacks,
        )
        regressor = self.regressor(job, self.store.trained(model), history, fused=False)
        self.store.release(job.name)
        return regressor

    def fused(self, pending: list[tuple[int, RegressorJob]]) -> dict[int, LatentRegressor]:
        """Train the pending jobs as fused groups (one per layer shapes, epochs, batch size)."""
        models = {i: self.create(job) for i, job in pending}
        groups: dict[str, list[tuple[int, RegressorJob]]] = {}
        for i, job in pending:
            shapes = [tuple(v.shape) for v in models[i].weights]
            key = repr((shapes, job.spec.epochs, job.spec.batch_size))
            groups.setdefault(key, []).append((i, job))
        out = {}
        for members in groups.values():
            splits = [self.split(job) for _, job in members]
            names = "-".join(f"{job.parameter}{job.index}" for _, job in members)
            # Named after its branches: a group that lost members (saved before an
            # interruption) never reads another group's checkpoint.
            tag = hashlib.sha256(names.encode()).hexdigest()[:12]
            results = train_fused(
                [models[i] for i, _ in members],
                self.x,
                np.stack([self.scaled[:, job.column] for _, job in members]),
                [train for train, _ in splits],
                [val for _, val in splits],
                seeds=[job.seed for _, job in members],
                epochs=members[0][1].spec.epochs,
                batch_size=members[0][1].spec.batch_size,
                patience=self.patience,
                checkpoint=self.store.checkpoint(f"fused_{tag}"),
                description=f"{self.autoencoder} fused regressors ({len(members)})",
                progress=self.progress,
            )
            for (i, job), result in zip(members, results, strict=True):
                history = [
                    dict(zip(result.history, values, strict=True))
                    for values in zip(*result.history.values(), strict=True)
                ]
                out[i] = self.regressor(job, models[i], history, fused=True)
            self.store.release(f"fused_{tag}")
        return out

    def regressor(
        self,
        job: RegressorJob,
        model: keras.Model,
        history: list[dict[str, float]],
        fused: bool | None,
    ) -> LatentRegressor:
        """The trained (``fused`` True/False: and now saved) or loaded (``None``) regressor,
        with its validation error."""
        _, val = self.split(job)
        predicted = np.asarray(model.predict(self.x[val], verbose=0))[:, 0]
        mse = float(np.mean((predicted - self.scaled[val, job.column]) ** 2))
        rms = float(np.sqrt(mse)) * float(self.scaler.std[job.column])
        logger.debug(
            "regressor %s/%s seed %d: validation MSE %.4g (rms %.4g %s)",
            self.autoencoder,
            job.parameter,
            job.seed,
            mse,
            rms,
            PARAMETER_UNITS[job.parameter],
        )
        regressor = LatentRegressor(
            job.parameter,
            self.autoencoder,
            job.seed,
            model,
            self.scaler,
            mse,
            rms,
            {key: [record.get(key) for record in history] for key in (history[:1] or [{}])[0]},
            self.latent_scaler,
        )
        if fused is not None:
            self.store.save(regressor, job, history, fused)
        return regressor


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
    # (mdwarf_zoo.training.fused.predict_fused: every layer one batched operation over all of them).
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
