"""Fused latent regressors: the regressors of one ensemble member (its seeds x parameters)
trained and evaluated as the independent branches of one model (MB24 stage 3).

A member of the MB24 recipe has 20 latent CNNs (5 seeds x 4 parameters) of 0.3 M parameters
each. Trained one after the other through ``Model.fit``, every step at batch 128 (~0.34 GFLOP)
pays Keras' per-step machinery (data adapter, callbacks, a Python round trip, one optimizer
call per variable) for a few milliseconds of arithmetic. Here one traced TensorFlow graph runs
a whole epoch: every step computes all K branches' forward and backward passes and their Adam
updates, with no Python in between, and TensorFlow runs the independent branches' kernels
side by side.

Each branch keeps its own ordinary Keras model (its layers are the branch, so nothing needs
exporting: the trained models are the ordinary regressors). Stacking the kernels of all
branches into batched matrix products (``BatchMatMul``, einsum) was measured first and dropped
for training: on these CPUs TensorFlow's batched-matmul gradients ran slower than the
per-branch oneDNN kernels, and the step (462 ms for 20 branches at batch 128) was slower than
the per-model loop. Compiling the epoch loop with XLA (``jit_compile=True``) did not finish
compiling in 400 s (``benchmarks/RESULTS.md``, "Fused regressors"). For *prediction*, a
forward pass only, the stacked form is used (:func:`predict_fused`): a dozen eager operations
for any number of regressors, nothing to trace.

**Equivalence with separate training.** Branches share no weights and the loss is the sum of
the branches' losses, so the gradient of branch ``k``'s weights is the gradient of its own loss,
and each branch's optimizer (the one its model was compiled with, Adam) updates only its own
variables. Each branch reads its *own* batch: branch ``k`` (training rows ``train_k``, seed
``seed_k``) visits, in epoch ``e``, the rows
``train_k[default_rng([seed_k, e]).permutation(len(train_k))]`` in consecutive batches of
``batch_size``: the order of :func:`mdwarf_zoo.training.loop.fit_resumable`, which the recipe runner
uses for every regressor. Its loss is the mean squared error over those rows (Keras' ``"mse"``).
A branch with fewer training rows (another parameter's stratified split) has fewer steps in an
epoch; in the remaining steps its rows carry weight 0 and its optimizer step is skipped (step
count included). So each branch follows the trajectory ``fit_resumable`` gives the same model,
seed and rows, to float32 rounding (``tests/test_fused.py``). Without ``fused``,
:func:`mdwarf_zoo.pipeline.train_regressors` shuffles with ``Model.fit`` instead (another,
equally random batch order), so the two agree in distribution, not weight for weight.

With ``patience`` each branch follows ``keras.callbacks.EarlyStopping(monitor="val_loss",
patience=patience, restore_best_weights=True)`` on its own validation rows: it stops training
(its steps are skipped) after ``patience`` epochs without a lower validation loss, and ends
with the weights of its best epoch. TensorFlow backend only.

Models built in a mixed-precision policy (``create_model(..., precision="mixed_bfloat16")``)
train fused as well: their outputs are cast to float32 for the loss. On this project's CPUs
the whole-step speed-up of fusing is bounded by the kernels themselves (2.4x at batch 128;
``benchmarks/bench_stage3_ceiling.py``), and the fused graph reaches most of it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mdwarf_zoo._files import atomic_savez as _atomic_savez
from mdwarf_zoo.training.loop import epoch_order

__all__ = ["FusedRegressors", "can_fuse", "predict_fused", "train_fused"]

logger = logging.getLogger(__name__)

def _plan(model: keras.Model) -> list[tuple] | None:
    """The operations of ``model`` as ``(kind, layer index, activation, use_bias, options)``,
    or ``None`` when a layer is not one the stacked forward pass implements."""
    plan = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Reshape):
            plan.append(("reshape", index, None, False, tuple(layer.target_shape)))
        elif isinstance(layer, keras.layers.Flatten):
            plan.append(("flatten", index, None, False, None))
        elif isinstance(layer, keras.layers.Dense):
            plan.append(("dense", index, layer.activation, layer.use_bias, None))
        elif (
            isinstance(layer, keras.layers.Conv1D)
            and tuple(layer.strides) == (1,)
            and tuple(layer.dilation_rate) == (1,)
            and layer.groups == 1
            and layer.padding in ("same", "valid")
            and layer.data_format == "channels_last"
        ):
            size = int(layer.kernel_size[0])
            total = size - 1 if layer.padding == "same" else 0
            options = (size, total // 2, total - total // 2)
            plan.append(("conv", index, layer.activation, layer.use_bias, options))
        else:
            return None
    return plan


def _architecture(model: keras.Model) -> str:
    """What must agree for models to be stacked: class, config without name, seed and
    learning rate, and the weight shapes."""
    config = dict(model.get_config())
    for key in ("name", "seed", "learning_rate", "trainable"):
        config.pop(key, None)
    shapes = [tuple(w.shape) for w in model.weights]
    return json.dumps([type(model).__name__, config, shapes], sort_keys=True, default=str)


def can_fuse(models: Sequence[keras.Model]) -> bool:
    """Whether ``models`` can be evaluated as one stacked model (:func:`predict_fused`): one
    architecture of ``Reshape``, ``Conv1D`` (stride and dilation 1), ``Flatten`` and ``Dense``
    layers (``latent_cnn``, ``latent_mlp``) on the TensorFlow backend."""
    return (
        bool(models)
        and keras.backend.backend() == "tensorflow"
        and len({_architecture(m) for m in models}) == 1
        and _plan(models[0]) is not None
    )


def _stacked_forward(models: Sequence[keras.Model], x: np.ndarray) -> np.ndarray:
    """All models on the same latents with every kernel stacked along a leading branch axis:
    a dozen batched operations whatever the number of models (eager, nothing to trace)."""

    branches = len(models)
    h = tf.broadcast_to(tf.constant(x), [branches, *x.shape])
    batch = x.shape[0]
    for kind, index, activation, use_bias, options in _plan(models[0]):
        if kind == "reshape":
            h = tf.reshape(h, [branches, batch, *options])
            continue
        if kind == "flatten":
            h = tf.reshape(h, [branches, batch, -1])
            continue
        parts = [m.layers[index].get_weights() for m in models]
        kernel = tf.constant(np.stack([p[0] for p in parts]))
        if kind == "conv":
            size, left, right = options
            length, channels = h.shape[2], h.shape[3]
            out_length = length + left + right - size + 1
            padded = tf.pad(h, [[0, 0], [0, 0], [left, right], [0, 0]])
            # A Conv1D is a matmul of shifted columns: (position, size x channels) @ kernel.
            columns = tf.concat(
                [padded[:, :, j : j + out_length, :] for j in range(size)], axis=-1
            )
            filters = kernel.shape[-1]
            h = tf.matmul(
                tf.reshape(columns, [branches, -1, size * channels]),
                tf.reshape(kernel, [branches, size * channels, filters]),
            )
            h = tf.reshape(h, [branches, batch, out_length, filters])
            if use_bias:
                h = h + np.stack([p[1] for p in parts])[:, None, None, :]
        else:
            h = tf.matmul(h, kernel)
            if use_bias:
                h = h + np.stack([p[1] for p in parts])[:, None, :]
        h = activation(h)
    return np.asarray(h, dtype=np.float32)


class FusedRegressors(keras.Model):
    """K regressors as the K independent branches of one model.

    A call maps latents of shape ``(branches, batch, latent_dim)`` (each branch its own rows)
    or ``(batch, latent_dim)`` (the same rows for all) to ``(branches, batch, n_outputs)``.
    The branches are the given models themselves (they share no weights), so whatever trains
    the fused model trains them.

    Args:
        models: the K regressors (built Keras models with one input shape and one output
            shape, e.g. from ``mdwarf_zoo.create_model("latent_cnn", seed=s)``).

    Raises:
        ValueError: for no models or models with different input or output shapes.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.training.fused import FusedRegressors
        >>> fused = FusedRegressors([mdwarf_zoo.create_model("latent_cnn", seed=s)
        ...                          for s in range(3)])
        >>> fused.branches
        3
    """

    def __init__(self, models: Sequence[keras.Model], **kwargs):
        models = list(models)
        if not models:
            raise ValueError("FusedRegressors: no models")
        shapes = {(tuple(m.input_shape), tuple(m.output_shape)) for m in models}
        if len(shapes) != 1:
            raise ValueError(
                f"FusedRegressors: the models must share one input and one output shape, got "
                f"{sorted(shapes)} ({[m.name for m in models]})"
            )
        super().__init__(**kwargs)
        self.members = models
        self.branches = len(models)
        self.built = True

    def call(self, latents):

        latents = tf.convert_to_tensor(latents, dtype=tf.float32)
        if latents.shape.rank == 2:
            return tf.stack([m(latents, training=False) for m in self.members])
        return tf.stack([m(latents[k]) for k, m in enumerate(self.members)])


def predict_fused(
    models: Sequence[keras.Model],
    latent_vectors: np.ndarray,
    *,
    batch_size: int = 4096,
    exact: bool = False,
) -> np.ndarray:
    """The predictions of several regressors for the same latents: ``(len(models), n,
    n_outputs)``.

    By default models of one stackable architecture (:func:`can_fuse`) are evaluated together,
    every layer as one batched operation over all of them (equal to each model's own
    prediction to float32 rounding, ~1e-7; nothing to trace); others one by one. With
    ``exact=True`` all models run as the branches of one traced :class:`FusedRegressors` call
    with their own layers: bit for bit each model's ``predict``, at the cost of tracing the
    graph once per call.

    Args:
        models: regressors reading the same latents.
        latent_vectors: (n, latent_dim).
        batch_size: latents per call.
        exact: bit-identical results through the models' own layers (see above).

    Examples:
        >>> import numpy as np, mdwarf_zoo
        >>> from mdwarf_zoo.training.fused import predict_fused
        >>> models = [mdwarf_zoo.create_model("latent_cnn", seed=s) for s in range(3)]
        >>> predict_fused(models, np.zeros((5, 32))).shape
        (3, 5, 1)
    """
    x = np.asarray(latent_vectors, dtype=np.float32)
    models = list(models)
    if not models:
        raise ValueError("predict_fused: no models")
    chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)] or [x]
    shapes = {(tuple(m.input_shape), tuple(m.output_shape)) for m in models}
    if exact and keras.backend.backend() == "tensorflow" and len(shapes) == 1:

        call = tf.function(FusedRegressors(models).call, reduce_retracing=True)
        return np.concatenate([np.asarray(call(c), dtype=np.float32) for c in chunks], axis=1)
    if can_fuse(models):
        return np.concatenate([_stacked_forward(models, c) for c in chunks], axis=1)
    return np.stack([
        np.concatenate([np.asarray(m(c, training=False), dtype=np.float32) for c in chunks])
        for m in models
    ])


@dataclass
class FusedResult:
    """What :func:`train_fused` gives per branch: the history (``loss``, ``val_loss`` per
    epoch trained) and the epoch (0-based) whose weights the model holds."""

    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1


def _padded(index_lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows per branch, padded with row 0 at weight 0: ``(indices, weights)``, (K, max)."""
    width = max(1, max(len(i) for i in index_lists))
    indices = np.zeros((len(index_lists), width), np.int32)
    weights = np.zeros((len(index_lists), width), np.float32)
    for k, rows in enumerate(index_lists):
        indices[k, : len(rows)] = rows
        weights[k, : len(rows)] = 1.0
    return indices, weights


def train_fused(
    models: Sequence[keras.Model],
    latent_vectors: np.ndarray,
    targets: np.ndarray,
    train_indices: Sequence[np.ndarray],
    validation_indices: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    patience: int | None = None,
    checkpoint: Path | None = None,
    description: str = "fused regressors",
    progress: bool = True,
) -> list[FusedResult]:
    """Train K compiled regressors as one fused model (the models are trained in place).

    Branch ``k`` is ``models[k]`` with its compiled optimizer, trained on the rows
    ``train_indices[k]`` of ``latent_vectors`` against ``targets[k]`` with the mean squared
    error, in the batch order seeded by ``seeds[k]`` (see the module docstring for the order
    and the equivalence with separate training).

    Args:
        models: K compiled, single-output regressors with one input shape (e.g.
            ``create_model("latent_cnn", seed=s, learning_rate=...)``, compiled with Adam);
            their current weights are the initial ones.
        latent_vectors: (n, latent_dim), shared by all branches.
        targets: (K, n) each branch's (standardised) target for every row.
        train_indices, validation_indices: per branch, its training and validation rows.
        seeds: per branch, the seed of its batch order.
        epochs: epochs (all branches).
        batch_size: rows per branch and step.
        patience: early stopping per branch on its validation loss (best weights kept);
            ``None`` trains every epoch and keeps the last weights (MB24).
        checkpoint: an ``.npz`` file written atomically after every epoch (weights, optimizer
            states, early-stopping state, histories); when it exists, training resumes after
            its epoch and ends with the weights an uninterrupted run gives.
        description: the progress bar's label.
        progress: show a tqdm bar over epochs.

    Returns:
        Per branch a :class:`FusedResult`.

    Raises:
        ValueError: for inconsistent shapes or lengths, an uncompiled model, or a checkpoint
            of other models.
    """
    models = list(models)
    x, targets, train_indices = _checked_inputs(
        models, latent_vectors, targets, train_indices, validation_indices, seeds
    )
    train_epoch, validation_loss = _fused_functions(
        models, x, targets, validation_indices, batch_size
    )
    branches = _Branches.start(models, patience)
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start = branches.restore(checkpoint)
        logger.info("%s: resumed from %s after epoch %d", description, checkpoint, start)
    counts = np.array([len(t) for t in train_indices])
    bar = tqdm(total=epochs, initial=start, desc=description, unit="epoch",
               disable=not progress, leave=False)
    for epoch in range(start, epochs):
        if not branches.training.any():
            break
        started = time.perf_counter()
        indices, weights, active = _epoch_batches(
            train_indices, seeds, epoch, branches.training, batch_size
        )
        totals = np.asarray(train_epoch(indices, weights, active))
        branches.record(epoch, totals / counts, validation_loss(), patience)
        if checkpoint is not None:
            branches.save(Path(checkpoint), epoch + 1)
        logger.debug("%s: epoch %d took %.3f s (%d steps, %d branches training)", description,
                     epoch, time.perf_counter() - started, len(indices),
                     int(branches.training.sum()))
        bar.update(1)
        bar.set_postfix(training=int(branches.training.sum()))
    bar.close()
    if branches.best_weights is not None:
        for model, saved_weights in zip(models, branches.best_weights, strict=True):
            model.set_weights(saved_weights)
    return branches.results


def _checked_inputs(
    models: list[keras.Model],
    latent_vectors: np.ndarray,
    targets: np.ndarray,
    train_indices: Sequence[np.ndarray],
    validation_indices: Sequence[np.ndarray],
    seeds: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """:func:`train_fused`'s arguments checked: ``(latents, targets, train_indices)`` as
    float32, float32 and int64 arrays."""
    k_branches = len(models)
    x = np.asarray(latent_vectors, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    lengths = {len(train_indices), len(validation_indices), len(seeds)}
    if lengths != {k_branches} or targets.shape != (k_branches, len(x)):
        raise ValueError(
            f"train_fused: {k_branches} models need {k_branches} targets of {len(x)} rows, "
            f"train and validation index sets and seeds; got targets {targets.shape}, "
            f"{len(train_indices)} train, {len(validation_indices)} validation, "
            f"{len(seeds)} seeds"
        )
    if any(getattr(m, "optimizer", None) is None for m in models):
        raise ValueError("train_fused: every model must be compiled with an optimizer")
    train_indices = [np.asarray(t, dtype=np.int64) for t in train_indices]
    if any(len(t) == 0 for t in train_indices):
        raise ValueError("train_fused: every branch needs at least one training row")
    return x, targets, train_indices


def _fused_functions(
    models: list[keras.Model],
    x: np.ndarray,
    targets: np.ndarray,
    validation_indices: Sequence[np.ndarray],
    batch_size: int,
) -> tuple[Callable, Callable[[], np.ndarray]]:
    """The fused model's traced epoch, ``train_epoch(indices, weights, active)`` (the per-branch
    sums of the training losses), and ``validation_loss()`` (per branch), with the models'
    optimizers built."""

    fused = FusedRegressors(models)
    trainable = [list(m.trainable_variables) for m in models]
    for model, variables in zip(models, trainable, strict=True):
        model.optimizer.build(variables)
    x_all = tf.constant(x)
    y_all = tf.constant(targets)
    return (
        _epoch_function(models, trainable, x_all, y_all, batch_size),
        _validation_function(fused, x_all, targets, validation_indices),
    )


def _epoch_function(models, trainable, x_all, y_all, batch_size: int) -> Callable:
    """One traced loop over an epoch's steps, each step every branch's forward and backward
    pass and its optimizer step: no Python between steps."""

    k_branches = len(models)

    def branch_step(k, rows, weight, on):
        with tf.GradientTape() as tape:
            predicted = tf.cast(models[k](tf.gather(x_all, rows), training=True)[:, 0], tf.float32)
            error = tf.square(tf.gather(y_all[k], rows) - predicted)
            count = tf.reduce_sum(weight)
            loss = tf.reduce_sum(weight * error) / tf.maximum(count, 1.0)
        gradients = tape.gradient(loss, [v.value for v in trainable[k]])

        def update():
            models[k].optimizer.apply(gradients, trainable[k])
            return tf.constant(0)

        # A branch past its last batch of the epoch (or stopped early) takes no optimizer
        # step at all: Adam with a zero gradient would still move the weights.
        tf.cond(on > 0, update, lambda: tf.constant(0))
        return loss * count * on

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, k_branches, batch_size], tf.int32),
            tf.TensorSpec([None, k_branches, batch_size], tf.float32),
            tf.TensorSpec([None, k_branches], tf.float32),
        ]
    )
    def train_epoch(indices, weights, active):
        totals = tf.zeros([k_branches], tf.float32)
        for s in tf.range(tf.shape(indices)[0]):
            totals += tf.stack([
                branch_step(k, indices[s, k], weights[s, k], active[s, k])
                for k in range(k_branches)
            ])
        return totals

    return train_epoch


def _validation_function(
    fused: FusedRegressors, x_all, targets: np.ndarray, validation_indices: Sequence[np.ndarray]
) -> Callable[[], np.ndarray]:
    """Each branch's mean squared error on its own validation rows, in chunks of 2048."""

    k_branches = fused.branches
    validation_rows, validation_weights = _padded(
        [np.asarray(v, dtype=np.int64) for v in validation_indices]
    )
    validation_y = np.take_along_axis(targets, validation_rows, axis=1)

    @tf.function(input_signature=[tf.TensorSpec([k_branches, None], tf.int32)])
    def predict_rows(rows):
        return tf.cast(fused(tf.gather(x_all, rows))[:, :, 0], tf.float32)

    def validation_loss() -> np.ndarray:
        chunk = 2048
        sums = np.zeros(k_branches)
        for first in range(0, validation_rows.shape[1], chunk):
            part = slice(first, first + chunk)
            predicted = np.asarray(predict_rows(validation_rows[:, part]))
            sums += np.sum(
                validation_weights[:, part] * (predicted - validation_y[:, part]) ** 2, axis=1
            )
        return sums / np.maximum(validation_weights.sum(axis=1), 1.0)

    return validation_loss


def _epoch_batches(
    train_indices: list[np.ndarray],
    seeds: Sequence[int],
    epoch: int,
    training: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of epoch ``epoch`` of the branches still ``training``, in their batch order:
    ``(indices, weights, active)`` of shapes (steps, K, batch_size) and (steps, K), padded at
    weight 0 and ``active`` 0 past a branch's last batch."""
    k_branches = len(train_indices)
    counts = np.array([len(t) for t in train_indices])
    steps = -(-counts // batch_size)
    n_steps = int(steps[training].max())
    indices = np.zeros((n_steps, k_branches, batch_size), np.int32)
    weights = np.zeros((n_steps, k_branches, batch_size), np.float32)
    active = np.zeros((n_steps, k_branches), np.float32)
    for k in np.flatnonzero(training):
        order = train_indices[k][epoch_order(counts[k], int(seeds[k]), epoch)]
        rows = np.zeros(steps[k] * batch_size, np.int32)
        rows[: counts[k]] = order
        flags = np.zeros(steps[k] * batch_size, np.float32)
        flags[: counts[k]] = 1.0
        indices[: steps[k], k] = rows.reshape(steps[k], batch_size)
        weights[: steps[k], k] = flags.reshape(steps[k], batch_size)
        active[: steps[k], k] = 1.0
    return indices, weights, active


@dataclass
class _Branches:
    """Where the branches of a :func:`train_fused` run stand: their results, which still train,
    each one's best validation loss, epochs since it and (with patience) best weights, and the
    variables (model and optimizer) a checkpoint holds."""

    models: list[keras.Model]
    results: list[FusedResult]
    training: np.ndarray
    best: np.ndarray
    wait: np.ndarray
    best_weights: list[list[np.ndarray]] | None
    state: list

    @classmethod
    def start(cls, models: list[keras.Model], patience: int | None) -> _Branches:
        k_branches = len(models)
        return cls(
            models=models,
            results=[FusedResult({"loss": [], "val_loss": []}) for _ in range(k_branches)],
            training=np.ones(k_branches, bool),
            best=np.full(k_branches, np.inf),
            wait=np.zeros(k_branches, np.int64),
            best_weights=[m.get_weights() for m in models] if patience is not None else None,
            state=[v for m in models for v in (*m.variables, *m.optimizer.variables)],
        )

    def record(
        self, epoch: int, losses: np.ndarray, val: np.ndarray, patience: int | None
    ) -> None:
        """Append epoch ``epoch``'s training and validation losses of the training branches,
        and follow ``EarlyStopping(patience, restore_best_weights=True)`` for each."""
        for k in np.flatnonzero(self.training):
            history = self.results[k].history
            history["loss"].append(float(losses[k]))
            history["val_loss"].append(float(val[k]))
            if patience is None:
                self.results[k].best_epoch = epoch
                continue
            self.wait[k] += 1
            if val[k] < self.best[k]:
                self.best[k], self.wait[k], self.results[k].best_epoch = val[k], 0, epoch
                self.best_weights[k] = self.models[k].get_weights()
            elif self.wait[k] >= patience and epoch > 0:
                self.training[k] = False

    def restore(self, checkpoint: Path) -> int:
        """Load the checkpoint ``checkpoint``; returns its finished epochs."""
        k_branches = len(self.models)
        with np.load(checkpoint, allow_pickle=False) as saved:
            shapes = [tuple(v.shape) for v in self.state]
            if int(saved["branches"]) != k_branches or [
                tuple(saved[f"s{i}"].shape) for i in range(len(self.state)) if f"s{i}" in saved
            ] != shapes:
                raise ValueError(
                    f"checkpoint {checkpoint} does not match these {k_branches} regressors; "
                    "delete it to restart them"
                )
            for i, variable in enumerate(self.state):
                variable.assign(saved[f"s{i}"])
            self.training, self.best, self.wait = (
                saved[key].copy() for key in ("training", "best", "wait")
            )
            if self.best_weights is not None:
                self.best_weights = [
                    [saved[f"b{k}_{i}"] for i in range(len(self.best_weights[k]))]
                    for k in range(k_branches)
                ]
            records = json.loads(str(saved["results"]))
            for result, record in zip(self.results, records, strict=True):
                result.history, result.best_epoch = record["history"], record["best_epoch"]
            return int(saved["epoch"])

    def save(self, checkpoint: Path, epoch: int) -> None:
        """Write the state after ``epoch`` finished epochs to ``checkpoint``, atomically."""
        arrays = {f"s{i}": np.asarray(v) for i, v in enumerate(self.state)}
        if self.best_weights is not None:
            arrays.update({
                f"b{k}_{i}": w
                for k, ws in enumerate(self.best_weights)
                for i, w in enumerate(ws)
            })
        records = [{"history": r.history, "best_epoch": r.best_epoch} for r in self.results]
        _atomic_savez(
            checkpoint, epoch=np.array(epoch), branches=np.array(len(self.models)),
            training=self.training, best=self.best, wait=self.wait,
            results=np.array(json.dumps(records)), **arrays,
        )
