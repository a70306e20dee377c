"""Fused latent regressors: many independent regressors of one architecture trained and
evaluated as one model (MB24 stage 3).

A member of the MB24 recipe has 20 latent CNNs (5 seeds x 4 parameters) of 0.3 M parameters
each. Trained one after the other, each step at batch 128 is ~0.3 GFLOP: kernel launches, the
per-variable optimizer update and the Python step loop cost more than the arithmetic (about 10 %
of the fp32 matmul peak on this project's CPUs). Here the K regressors become the K branches
of one :class:`FusedRegressors` model: every kernel is stacked along a leading branch axis and
every layer is one batched matrix product (a ``Conv1D`` is a shifted-column matmul), so one step
trains all K with the launches of one.

**Equivalence with separate training.** Branches share no weights and the loss is the sum of
the branches' losses, so the gradient of branch ``k``'s weights is the gradient of its own loss.
Each branch reads its *own* batch: branch ``k`` (training rows ``train_k``, seed ``seed_k``)
visits, in epoch ``e``, the rows ``train_k[default_rng([seed_k, e]).permutation(len(train_k))]``
in consecutive batches of ``batch_size``; exactly the order of
:func:`mdwarf_zoo.runner.fit_resumable`, which the recipe runner uses for every regressor. Its
loss is the mean squared error over those rows (Keras' ``"mse"``). Branches with fewer training
rows (another parameter's stratified split) have fewer steps in an epoch: in the remaining steps
their rows carry weight 0 and their optimizer update is skipped, step count included. The
optimizer is Adam with Keras' update rule and a step count per branch, so each branch follows
the trajectory that ``fit_resumable`` with ``FusedAdam`` gives the same model, seed and rows, to
float32 rounding (``tests/test_fused.py``). :func:`mdwarf_zoo.pipeline.train_regressors` without
``fused`` shuffles with ``Model.fit`` instead (another, equally random batch order), so the two
agree in distribution, not weight for weight.

With ``patience`` each branch follows ``keras.callbacks.EarlyStopping(monitor="val_loss",
patience=patience, restore_best_weights=True)`` on its own validation rows: it stops training
(its updates are skipped) after ``patience`` epochs without a lower validation loss, and ends
with the weights of its best epoch.

Only the layers of the zoo's latent regressors are supported (``Reshape``, ``Conv1D`` with
stride and dilation 1, ``Flatten``, ``Dense``); TensorFlow backend only.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

__all__ = ["FusedRegressors", "can_fuse", "predict_fused", "train_fused"]

logger = logging.getLogger(__name__)

_EPSILON = 1e-7  # keras.optimizers.Adam's default, as FusedAdam
_BETA_1 = 0.9
_BETA_2 = 0.999


def _plan(model: keras.Model) -> list[tuple]:
    """The operations of ``model`` as a list of ``(kind, layer index, activation, use_bias,
    options)``; raises ValueError for a layer the fused forward pass does not implement."""
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
            raise ValueError(
                f"fused regressors: layer {layer.name!r} ({type(layer).__name__}) of "
                f"{model.name!r} is not supported; fusing needs Reshape, Conv1D (stride and "
                "dilation 1, 'same' or 'valid'), Flatten and Dense layers (latent_cnn, "
                "latent_mlp); train this architecture with fused=False"
            )
    return plan


def _signature(model: keras.Model) -> str:
    """What must agree for models to be fused: the architecture config without name, seed
    and learning rate."""
    config = dict(model.get_config())
    for key in ("name", "seed", "learning_rate", "trainable"):
        config.pop(key, None)
    return json.dumps([type(model).__name__, config], sort_keys=True, default=str)


def can_fuse(models: Sequence[keras.Model]) -> bool:
    """Whether ``models`` share one supported architecture (so :func:`predict_fused` and
    :func:`train_fused` can stack them)."""
    if not models or keras.backend.backend() != "tensorflow":
        return False
    if len({_signature(m) for m in models}) != 1:
        return False
    try:
        _plan(models[0])
    except ValueError:
        return False
    return True


class FusedRegressors(keras.Model):
    """K regressors of one architecture as the K independent branches of one model.

    Every weight of the template architecture is held once per branch, stacked along a leading
    axis of size ``branches``; a call maps latents of shape ``(branches, batch, latent_dim)``
    (each branch its own rows) to ``(branches, batch, n_outputs)``.

    Args:
        models: the K regressors (built Keras models of one architecture, e.g. from
            ``mdwarf_zoo.create_model("latent_cnn", seed=s)``); their weights are the initial
            weights of the branches.

    Raises:
        ValueError: for no models, models of different architectures, or an unsupported layer.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.fused import FusedRegressors
        >>> fused = FusedRegressors([mdwarf_zoo.create_model("latent_cnn", seed=s)
        ...                          for s in range(3)])
        >>> fused.branches
        3
    """

    def __init__(self, models: Sequence[keras.Model], **kwargs):
        models = list(models)
        if not models:
            raise ValueError("FusedRegressors: no models")
        signatures = {_signature(m) for m in models}
        if len(signatures) != 1:
            raise ValueError(
                f"FusedRegressors: the models must share one architecture, got "
                f"{len(signatures)} different configurations ({[m.name for m in models]})"
            )
        super().__init__(**kwargs)
        self.branches = len(models)
        self.latent_dim = int(models[0].input_shape[-1])
        self._plan = _plan(models[0])
        self.stacked: list[list[keras.Variable]] = []
        for _, index, _, _, _ in self._plan:
            per_model = [m.layers[index].get_weights() for m in models]
            self.stacked.append([
                self.add_weight(
                    shape=(self.branches, *parts[0].shape),
                    initializer=keras.initializers.Constant(np.stack(parts)),
                    name=f"{models[0].layers[index].name}_{i}",
                )
                for i, parts in enumerate(zip(*per_model, strict=True))
            ])
        self.built = True

    def call(self, latents):
        import tensorflow as tf

        h = tf.convert_to_tensor(latents, dtype=tf.float32)
        branches, batch = self.branches, tf.shape(h)[1]
        for (kind, _, activation, use_bias, options), weights in zip(
            self._plan, self.stacked, strict=True
        ):
            if kind == "reshape":
                h = tf.reshape(h, tf.concat([[branches, batch], list(options)], 0))
                continue
            if kind == "flatten":
                h = tf.reshape(h, [branches, batch, int(np.prod(h.shape[2:]))])
                continue
            kernel = weights[0].value
            if kind == "conv":
                size, left, right = options
                length, channels = h.shape[2], h.shape[3]
                out_length = length + left + right - size + 1
                padded = tf.pad(h, [[0, 0], [0, 0], [left, right], [0, 0]])
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
                    h = h + weights[1].value[:, None, None, :]
            else:
                h = tf.matmul(h, kernel)
                if use_bias:
                    h = h + weights[1].value[:, None, :]
            h = activation(h)
        return h

    def branch_weights(self, k: int) -> list[list[np.ndarray]]:
        """Branch ``k``'s weights, per fused layer."""
        return [[np.asarray(w)[k] for w in weights] for weights in self.stacked]

    def export(self, models: Sequence[keras.Model]) -> None:
        """Copy each branch's weights into the matching ordinary model (same architecture)."""
        for k, model in enumerate(models):
            for (_, index, _, _, _), weights in zip(
                self._plan, self.branch_weights(k), strict=True
            ):
                model.layers[index].set_weights(weights)


def predict_fused(
    models: Sequence[keras.Model], latent_vectors: np.ndarray, *, batch_size: int = 1024
) -> np.ndarray:
    """The predictions of several regressors of one architecture for the same latents, in one
    fused call per batch: ``(len(models), n, n_outputs)``; ``model(x)`` for each model when they
    cannot be fused (:func:`can_fuse`).

    Args:
        models: regressors reading the same latents.
        latent_vectors: (n, latent_dim).
        batch_size: latents per fused call.
    """
    x = np.asarray(latent_vectors, dtype=np.float32)
    if not can_fuse(models):
        return np.stack([
            np.concatenate([
                np.asarray(m(x[i : i + batch_size], training=False), dtype=np.float32)
                for i in range(0, max(len(x), 1), batch_size)
            ])[: len(x)]
            for m in models
        ])
    fused = FusedRegressors(models)
    rows = [
        np.asarray(fused(np.broadcast_to(x[i : i + batch_size], (len(models),
                                                                  *x[i : i + batch_size].shape))))
        for i in range(0, len(x), batch_size)
    ]
    if not rows:
        return np.zeros((len(models), 0, int(models[0].output_shape[-1])), np.float32)
    return np.concatenate(rows, axis=1)


@dataclass
class FusedResult:
    """What :func:`train_fused` gives per branch: the history (``loss``, ``val_loss`` per
    epoch trained) and the epoch (0-based) whose weights the model holds."""

    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(handle)
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


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
    learning_rates: Sequence[float],
    epochs: int,
    batch_size: int,
    patience: int | None = None,
    checkpoint: Path | None = None,
    description: str = "fused regressors",
    progress: bool = True,
) -> list[FusedResult]:
    """Train K regressors of one architecture as one fused model; the trained weights are
    written back into ``models``.

    Branch ``k`` is ``models[k]`` trained on the rows ``train_indices[k]`` of
    ``latent_vectors`` against ``targets[k]`` with Adam at ``learning_rates[k]``, batch order
    seeded by ``seeds[k]`` (see the module docstring for the exact order and the equivalence
    with separate training).

    Args:
        models: K built regressors of one architecture (their weights are the initial ones).
        latent_vectors: (n, latent_dim), shared by all branches.
        targets: (K, n) each branch's (standardised) target for every row.
        train_indices, validation_indices: per branch, its training and validation rows.
        seeds: per branch, the seed of its batch order.
        learning_rates: per branch, Adam's learning rate.
        epochs: epochs (all branches).
        batch_size: rows per branch and step.
        patience: early stopping per branch on its validation loss (best weights kept);
            ``None`` trains every epoch and keeps the last weights (MB24).
        checkpoint: an ``.npz`` file written atomically after every epoch (weights, Adam
            state, early-stopping state, histories); when it exists, training resumes after
            its epoch and ends with the weights an uninterrupted run gives.
        description: the progress bar's label.
        progress: show a tqdm bar over epochs.

    Returns:
        Per branch a :class:`FusedResult`.

    Raises:
        ValueError: for inconsistent shapes or lengths, or a checkpoint of another problem.
    """
    import tensorflow as tf

    models = list(models)
    k_branches = len(models)
    x = np.asarray(latent_vectors, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    lengths = {len(train_indices), len(validation_indices), len(seeds), len(learning_rates)}
    if lengths != {k_branches} or targets.shape != (k_branches, len(x)):
        raise ValueError(
            f"train_fused: {k_branches} models need {k_branches} targets of {len(x)} rows, "
            f"train/validation index sets, seeds and learning rates; got targets "
            f"{targets.shape}, {len(train_indices)} train, {len(validation_indices)} "
            f"validation, {len(seeds)} seeds, {len(learning_rates)} learning rates"
        )
    train_indices = [np.asarray(t, dtype=np.int64) for t in train_indices]
    if any(len(t) == 0 for t in train_indices):
        raise ValueError("train_fused: every branch needs at least one training row")
    fused = FusedRegressors(models)
    variables = [w for weights in fused.stacked for w in weights]
    moments = [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in variables]
    velocities = [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in variables]
    steps_done = tf.Variable(tf.zeros([k_branches], tf.float32), trainable=False)
    x_all = tf.constant(x)
    y_all = tf.constant(targets)
    rates = tf.constant(np.asarray(learning_rates, np.float32))

    def per_branch(values, active):
        return tf.reshape(active, [k_branches] + [1] * (len(values.shape) - 1))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, k_branches, batch_size], tf.int32),
            tf.TensorSpec([None, k_branches, batch_size], tf.float32),
            tf.TensorSpec([None, k_branches], tf.float32),
        ],
        reduce_retracing=True,
    )
    def train_epoch(indices, weights, active):
        # One traced loop over the epoch's steps: no Python per step.
        totals = tf.zeros([k_branches], tf.float32)
        for s in tf.range(tf.shape(indices)[0]):
            rows, w, on = indices[s], weights[s], active[s]
            with tf.GradientTape() as tape:
                predicted = fused(tf.gather(x_all, rows))[:, :, 0]
                error = tf.square(predicted - tf.gather(y_all, rows, batch_dims=1))
                count = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)
                losses = tf.reduce_sum(w * error, axis=1) / count
                total = tf.reduce_sum(losses)
            gradients = tape.gradient(total, [v.value for v in variables])
            step = steps_done + on
            alpha = rates * tf.sqrt(1.0 - tf.pow(_BETA_2, step)) / (1.0 - tf.pow(_BETA_1, step))
            for variable, m, v, g in zip(variables, moments, velocities, gradients, strict=True):
                mask = per_branch(g, on)
                m.assign_add(mask * ((g - m) * (1.0 - _BETA_1)))
                v.assign_add(mask * ((tf.square(g) - v) * (1.0 - _BETA_2)))
                variable.assign_sub(
                    mask * ((m * per_branch(g, alpha)) / (tf.sqrt(v) + _EPSILON))
                )
            steps_done.assign(step)
            totals += losses * tf.reduce_sum(w, axis=1) * on
        return totals

    validation_rows, validation_weights = _padded(
        [np.asarray(v, dtype=np.int64) for v in validation_indices]
    )
    validation_y = np.take_along_axis(targets, validation_rows, axis=1)

    @tf.function(reduce_retracing=True)
    def predict_rows(rows):
        return fused(tf.gather(x_all, rows))[:, :, 0]

    def validation_loss() -> np.ndarray:
        chunk = 1024
        sums = np.zeros(k_branches)
        for first in range(0, validation_rows.shape[1], chunk):
            part = slice(first, first + chunk)
            predicted = np.asarray(predict_rows(validation_rows[:, part]))
            sums += np.sum(
                validation_weights[:, part] * (predicted - validation_y[:, part]) ** 2, axis=1
            )
        return sums / np.maximum(validation_weights.sum(axis=1), 1.0)

    results = [FusedResult({"loss": [], "val_loss": []}) for _ in range(k_branches)]
    training = np.ones(k_branches, bool)
    best = np.full(k_branches, np.inf)
    wait = np.zeros(k_branches, np.int64)
    best_weights = [np.asarray(v).copy() for v in variables] if patience is not None else None
    start = 0
    all_state = [*variables, *moments, *velocities, steps_done]
    if checkpoint is not None and Path(checkpoint).is_file():
        with np.load(checkpoint, allow_pickle=False) as saved:
            shapes = [tuple(v.shape) for v in all_state]
            if int(saved["branches"]) != k_branches or [
                tuple(saved[f"s{i}"].shape) for i in range(len(all_state))
            ] != shapes:
                raise ValueError(
                    f"checkpoint {checkpoint} does not match these {k_branches} regressors; "
                    "delete it to restart them"
                )
            for i, variable in enumerate(all_state):
                variable.assign(saved[f"s{i}"])
            start = int(saved["epoch"])
            training, best, wait = saved["training"], saved["best"], saved["wait"]
            if best_weights is not None:
                best_weights = [saved[f"b{i}"] for i in range(len(variables))]
            for result, state in zip(results, json.loads(str(saved["results"])), strict=True):
                result.history, result.best_epoch = state["history"], state["best_epoch"]
        logger.info("%s: resumed from %s after epoch %d", description, checkpoint, start)

    counts = np.array([len(t) for t in train_indices])
    bar = tqdm(total=epochs, initial=start, desc=description, unit="epoch",
               disable=not progress, leave=False)
    for epoch in range(start, epochs):
        if not training.any():
            break
        steps = -(-counts // batch_size)
        n_steps = int(steps[training].max())
        indices = np.zeros((n_steps, k_branches, batch_size), np.int32)
        weights = np.zeros((n_steps, k_branches, batch_size), np.float32)
        active = np.zeros((n_steps, k_branches), np.float32)
        for k in np.flatnonzero(training):
            order = train_indices[k][
                np.random.default_rng([int(seeds[k]), epoch]).permutation(counts[k])
            ]
            padded = np.zeros(steps[k] * batch_size, np.int32)
            padded[: counts[k]] = order
            indices[: steps[k], k] = padded.reshape(steps[k], batch_size)
            flags = np.zeros(steps[k] * batch_size, np.float32)
            flags[: counts[k]] = 1.0
            weights[: steps[k], k] = flags.reshape(steps[k], batch_size)
            active[: steps[k], k] = 1.0
        totals = np.asarray(train_epoch(indices, weights, active))
        val = validation_loss()
        current = None
        for k in np.flatnonzero(training):
            history = results[k].history
            history["loss"].append(float(totals[k] / counts[k]))
            history["val_loss"].append(float(val[k]))
            if patience is None:
                results[k].best_epoch = epoch
                continue
            wait[k] += 1
            if val[k] < best[k]:
                best[k], wait[k], results[k].best_epoch = val[k], 0, epoch
                current = current or [np.asarray(v) for v in variables]
                for saved_value, value in zip(best_weights, current, strict=True):
                    saved_value[k] = value[k]
            elif wait[k] >= patience and epoch > 0:
                training[k] = False
        if checkpoint is not None:
            arrays = {f"s{i}": np.asarray(v) for i, v in enumerate(all_state)}
            if best_weights is not None:
                arrays.update({f"b{i}": b for i, b in enumerate(best_weights)})
            state = [{"history": r.history, "best_epoch": r.best_epoch} for r in results]
            _atomic_savez(
                Path(checkpoint), epoch=np.array(epoch + 1), branches=np.array(k_branches),
                training=training, best=best, wait=wait, results=np.array(json.dumps(state)),
                **arrays,
            )
        bar.update(1)
    bar.close()
    if best_weights is not None:
        for variable, saved_value in zip(variables, best_weights, strict=True):
            variable.assign(saved_value)
    fused.export(models)
    return results
