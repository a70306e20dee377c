"""The training loop: batch order, checkpoints, resume, validation and progress, for every
strategy.

One function fixes the batches: epoch ``e`` visits the training rows in the order
:func:`epoch_order` ``(n, seed, e)``, that is
``numpy.random.default_rng([seed, e]).permutation(n)``, a function of ``(seed, e)`` alone. On
the default strategy :func:`fit_resumable` cuts that order into batches in Python; under a
``tf.distribute`` strategy it feeds the same global batches through
:func:`mdwarf_zoo.training.distribute.make_dataset` (every worker builds the same pipeline and
keeps its slice of each global batch). So a model sees the same batches on one device, on the
GPUs of one machine or across machines, and a resumed run takes exactly the steps of an
uninterrupted one.

One checkpoint format: after every epoch the model variables, the optimizer variables (moments
and step count), the epoch, the history and the settings that fix the batches are written to one
``.npz`` file in one atomic rename (:func:`write_checkpoint`), by the chief worker only;
:func:`read_checkpoint` restores it under any strategy, so a run checkpointed on one device can
resume on several.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mdwarf_zoo._files import atomic_savez
from mdwarf_zoo.training.batches import (
    check_positive_int,
    check_seed,
    epoch_order,
    split_indices,
    steps_per_epoch,
)
from mdwarf_zoo.training.distribute import (
    CHECKPOINT_FILE,
    STRATEGY_NAMES,
    as_arrays,
    check_last_batch,
    distributed_validation,
    get_strategy,
    is_chief,
    make_dataset,
    validation_batch_size,
)

__all__ = [
    "fit_distributed",
    "determinism",
    "epoch_order",
    "fit_resumable",
    "read_checkpoint",
    "remove_checkpoint",
    "split_indices",
    "steps_per_epoch",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

# The evaluation chunk of the default strategy (rows per test_on_batch call).
_EVALUATION_CHUNK = 1024


def remove_checkpoint(checkpoint: Path) -> None:
    """Delete a finished model's checkpoint: ``<checkpoint>.npz``, or a folder ``<checkpoint>``
    left by an older version."""
    npz = checkpoint.with_name(checkpoint.name + ".npz")
    if npz.is_file():
        npz.unlink()
    if checkpoint.is_dir():
        shutil.rmtree(checkpoint)


def determinism(seed: int) -> None:
    """Seed Python, numpy and Keras with ``seed`` and switch TensorFlow's op determinism on (a
    process-wide setting): the same seed then gives the same weights on the same machine."""

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _state_variables(model) -> tuple[list, list]:
    return list(model.variables), list(model.optimizer.variables)


def write_checkpoint(
    path: Path,
    model,
    *,
    epoch: int,
    history: list[dict[str, float]],
    settings: dict[str, Any],
    chief: bool = True,
) -> None:
    """Write the state after ``epoch`` finished epochs to the ``.npz`` file ``path``, atomically.

    The file holds ``m<i>`` (the model variables), ``o<i>`` (the optimizer variables), ``epoch``,
    ``history`` (JSON) and ``settings`` (JSON: what fixes the batches, checked on resume). Every
    worker reads the variables (a distributed variable may need all of them); only the chief
    (``chief=True``) writes.
    """
    variables, optimizer_variables = _state_variables(model)
    arrays = {f"m{i}": np.asarray(v) for i, v in enumerate(variables)}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer_variables)})
    if not chief:
        return
    atomic_savez(
        path,
        epoch=np.array(epoch),
        history=np.array(json.dumps(history)),
        settings=np.array(json.dumps(settings, sort_keys=True)),
        **arrays,
    )


def read_checkpoint(
    path: Path, model, *, settings: dict[str, Any] | None = None
) -> tuple[int, list[dict[str, float]]]:
    """Restore the checkpoint ``path`` into ``model`` (built, with a built optimizer).

    Returns:
        ``(finished epochs, history)``; ``(0, [])`` when there is no checkpoint.

    Raises:
        ValueError: for a checkpoint of another model (other variables), or one written with
            other ``settings`` (a checkpoint without settings, from before they were recorded,
            is not checked).
    """
    if not path.is_file():
        return 0, []
    variables, optimizer_variables = _state_variables(model)
    with np.load(path, allow_pickle=False) as saved:
        if settings is not None and "settings" in saved.files:
            written = json.loads(str(saved["settings"]))
            for key, value in settings.items():
                if written.get(key) != value:
                    raise ValueError(
                        f"checkpoint {path} was written with {key}={written.get(key)!r} but this "
                        f"run has {key}={value!r}; resume with the same settings or delete it"
                    )
        names_model = sorted(
            (k for k in saved.files if k.startswith("m")), key=lambda k: int(k[1:])
        )
        names_opt = sorted((k for k in saved.files if k.startswith("o")), key=lambda k: int(k[1:]))
        if len(names_model) != len(variables) or len(names_opt) != len(optimizer_variables):
            raise ValueError(
                f"checkpoint {path} does not match the model {model.name!r}; delete it to "
                "restart this model"
            )
        for variable, key in zip(variables, names_model, strict=True):
            variable.assign(saved[key])
        for variable, key in zip(optimizer_variables, names_opt, strict=True):
            variable.assign(saved[key])
        return int(saved["epoch"]), json.loads(str(saved["history"]))


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _length(x) -> int:
    """Rows of a training input: an array, or a list of arrays of one length (a model with
    several inputs)."""
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def _tupled(x):
    return tuple(x) if isinstance(x, list) else x


def _rows(x, rows):
    """``x[rows]`` of an array or of each array of a list."""
    return [part[rows] for part in x] if isinstance(x, (list, tuple)) else x[rows]


def _evaluate(model, x, y, chunk: int = _EVALUATION_CHUNK) -> float:
    """The model's loss (with its internal penalties) on ``(x, y)``, in chunks."""
    total, n = 0.0, _length(x)
    for first in range(0, n, chunk):
        part = slice(first, first + chunk)
        loss = model.test_on_batch(_rows(x, part), _rows(y, part))
        total += float(loss[0] if isinstance(loss, list) else loss) * _length(_rows(x, part))
    return total / n


def _is_distributed(strategy) -> bool:

    return tf.distribute.has_strategy() or strategy is not tf.distribute.get_strategy()


def fit_resumable(
    model,
    x,
    y=None,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    checkpoint: Path | None,
    validation: tuple[Any, Any] | None = None,
    description: str = "training",
    progress: bool = True,
    initial_epoch: int = 0,
    drop_remainder: bool = False,
    callbacks: Sequence[Any] = (),
    verbose: int | str = 0,
) -> list[dict[str, float]]:
    """Train a compiled model epoch by epoch, checkpointing after each epoch.

    Epoch ``e`` visits the rows in the order :func:`epoch_order` ``(n, seed, e)``, in GLOBAL
    batches of ``batch_size`` (a strategy splits each between its replicas): from Python on the
    default strategy, through :func:`mdwarf_zoo.training.distribute.make_dataset` under the
    strategy the model was built in (``model.distribute_strategy``). After each epoch
    :func:`write_checkpoint` saves the state (chief only); called again, under any strategy, it
    resumes after the checkpoint's epoch, to the weights of an uninterrupted run.

    Args:
        model: a compiled ``keras.Model``.
        x, y: training inputs and targets (arrays, or lists of arrays for a model with several
            inputs; ``y=None``: the target is ``x``); or, on the default strategy, ``x`` an
            object with ``len(x)`` rows and ``x.batch(epoch, rows)`` that returns a batch's
            ``(inputs, targets)`` (``mdwarf_zoo.training.transfer.AnchorReplay``), with ``y``
            unused.
        epochs: total number of epochs.
        batch_size: (global) batch size.
        seed: seed of the batch order.
        checkpoint: the ``.npz`` checkpoint file (its folder must exist); ``None``: none.
        validation: optional ``(x, y)`` evaluated after each epoch (``y=None``: ``x``).
        description: the progress bar's label.
        progress: show a tqdm bar over epochs.
        initial_epoch: the epoch to start at when there is no checkpoint.
        drop_remainder: drop the last partial batch of every epoch.
        callbacks: more Keras callbacks; their ``on_epoch_end`` logs hold ``val_loss``.
        verbose: Keras' ``fit`` verbosity.

    Returns:
        One dict per epoch (restored and trained): ``loss`` and, with validation, ``val_loss``.

    Raises:
        ValueError: for a checkpoint that does not match the model (other variable shapes) or
            was written with another seed, batch size, number of rows or ``drop_remainder``.
    """

    strategy = model.distribute_strategy
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    n = _length(x)
    settings = _batch_settings(seed, batch_size, n, drop_remainder)
    start, history = _resume(model, checkpoint, settings, int(initial_epoch), description)
    if start >= epochs:
        return history
    batches, validate, chief = _feed(
        model, x, y, validation, batch_size, seed, range(start, epochs), drop_remainder
    )
    bar = tqdm(
        total=epochs,
        initial=start,
        desc=description,
        unit="epoch",
        disable=not progress,
        leave=False,
    )

    def epoch_end(epoch: int, logs: dict | None) -> None:
        history.append(_epoch_record(logs, validate))
        if checkpoint is not None:
            write_checkpoint(
                checkpoint, model, epoch=epoch + 1, history=history, settings=settings, chief=chief
            )
        bar.update(1)
        bar.set_postfix(history[-1])

    model.fit(
        batches,
        epochs=epochs,
        initial_epoch=start,
        shuffle=False,  # the batches are already in their (seed, epoch) order
        steps_per_epoch=steps_per_epoch(n, batch_size, drop_remainder),
        verbose=verbose,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=epoch_end), *callbacks],
    )
    bar.close()
    return history


def _batch_settings(seed: int, batch_size: int, n: int, drop_remainder: bool) -> dict[str, Any]:
    """What fixes the batches, recorded in a checkpoint and checked on resume."""
    return {
        "seed": int(seed),
        "batch_size": int(batch_size),
        "num_examples": int(n),
        "drop_remainder": bool(drop_remainder),
    }


def _resume(
    model, checkpoint: Path | None, settings: dict[str, Any], initial_epoch: int, description: str
) -> tuple[int, list[dict[str, float]]]:
    """``(first epoch, history so far)``: from the checkpoint when there is one (restored into
    ``model`` under its strategy), else ``(initial_epoch, [])``."""
    if checkpoint is None or not checkpoint.is_file():
        return initial_epoch, []
    with model.distribute_strategy.scope():
        start, history = read_checkpoint(checkpoint, model, settings=settings)
    logger.info("%s: resumed from %s after epoch %d", description, checkpoint, start)
    return start, history


def _epoch_record(logs: dict | None, validate: Callable[[], float | None]) -> dict[str, float]:
    """An epoch's history entry, ``loss`` from Keras' ``logs`` and, with validation,
    ``val_loss``; the validation loss also goes into ``logs`` for the later callbacks."""
    logs = {} if logs is None else logs
    record = {"loss": float(logs.get("loss", float("nan")))}
    validation_loss = validate()
    if validation_loss is not None:
        record["val_loss"] = logs["val_loss"] = validation_loss
    return record


def _feed(
    model, x, y, validation, batch_size: int, seed: int, epochs: range, drop_remainder: bool
) -> tuple[Any, Callable[[], float | None], bool]:
    """How ``model``'s strategy gets the batches of ``epochs`` and the validation loss, and
    whether this process writes checkpoints: ``(batches, validate, chief)``."""
    if y is None and not hasattr(x, "batch"):
        y = x
    if validation is not None and validation[1] is None:
        validation = (validation[0], validation[0])
    if validation is not None and not _length(validation[0]):
        validation = None
    strategy = model.distribute_strategy
    if not _is_distributed(strategy):
        batches = _python_batches(x, y, batch_size, seed, epochs, drop_remainder)
        return (
            batches,
            lambda: None if validation is None else _evaluate(model, *validation),
            True,
        )
    if hasattr(x, "batch"):
        raise ValueError(
            f"inputs drawn per batch ({type(x).__name__}) train on the default strategy only"
        )
    batches = make_dataset(
        x,
        y,
        global_batch_size=batch_size,
        seed=seed,
        first_epoch=epochs.start,
        num_epochs=len(epochs),
        drop_remainder=drop_remainder,
    )
    return batches, distributed_validation(model, validation, batch_size), is_chief(strategy)


def _python_batches(
    x, y, batch_size: int, seed: int, epochs: range, drop_remainder: bool
) -> Iterator[tuple[Any, Any]]:
    """The batches of ``epochs`` for the default strategy, from Python."""
    n = _length(x)
    last = n - n % batch_size if drop_remainder else n
    for epoch in epochs:
        order = epoch_order(n, seed, epoch)
        for first in range(0, last, batch_size):
            rows = order[first : first + batch_size]
            if hasattr(x, "batch"):  # inputs drawn per (epoch, rows): AnchorReplay
                inputs, targets = x.batch(epoch, rows)
            else:
                inputs, targets = _rows(x, rows), _rows(y, rows)
            # Keras' generator adapter takes several inputs as tuples, not lists.
            yield _tupled(inputs), _tupled(targets)


def fit_distributed(
    build_model: Callable[[], keras.Model],
    x: Any,
    y: Any = None,
    *,
    strategy: str | tf.distribute.Strategy = "default",
    epochs: int,
    global_batch_size: int,
    seed: int,
    validation_data: Any = None,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    drop_remainder: bool = False,
    verbose: int | str = 0,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build and compile a model under ``strategy``'s scope and train it data-parallel.

    Every worker of a multi-worker job calls this with the same arguments and data.

    Args:
        build_model: a function of no arguments that returns a built and COMPILED model; it is
            called inside ``strategy.scope()`` (for example
            ``lambda: mdwarf_zoo.create_model("dense_ae_1024", seed=1)``, or a function that
            loads pretrained weights, freezes layers and recompiles).
        x: training inputs, shape ``(examples, ...)``.
        y: training targets; ``None`` for an autoencoder (the target is ``x``).
        strategy: a name for :func:`get_strategy` or a ``tf.distribute.Strategy``.
        epochs: the index of the last epoch plus one, as in ``keras.Model.fit``.
        global_batch_size: examples per step over all replicas (MB24: 128).
        seed: seed of the per-epoch shuffling (see :func:`epoch_order`).
        validation_data: ``x_val`` (autoencoder) or ``(x_val, y_val)``; evaluated after every
            epoch in its own order (on the default strategy in chunks of 1024 rows, as the
            recipe runner does; under another at the global batch size).
        initial_epoch: the epoch to start at when there is no checkpoint to resume.
        callbacks: more Keras callbacks (they run on every worker).
        checkpoint_dir: where the chief keeps the checkpoint :data:`CHECKPOINT_FILE` (the
            format of :func:`mdwarf_zoo.training.loop.write_checkpoint`); when it already
            holds one, training resumes after its epoch (and ``initial_epoch`` is ignored).
        drop_remainder: drop the last partial batch of every epoch. Keep it ``False`` to train
            like single-device MB24; the partial batch is then split unevenly between replicas,
            which weights its examples slightly unequally (each replica's mean counts the same).
        verbose: Keras' ``fit`` verbosity.

    Returns:
        ``(model, history)``; ``history.history`` holds the epochs trained in this call.

    Raises:
        ValueError: for an argument outside its range, a model that is not compiled, built
            outside the scope, or a checkpoint written with other settings; on several
            replicas also for a global batch that is not a multiple of them, or data whose
            batches cannot give every replica an (equal first) slice.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.training.loop import fit_distributed
        >>> model, history = fit_distributed(
        ...     lambda: mdwarf_zoo.create_model("dense_ae_tiny", seed=0),
        ...     spectra, strategy="mirrored", epochs=120, global_batch_size=128, seed=0)
    """
    strategy, epochs, global_batch_size, seed = _checked_arguments(
        build_model, strategy, epochs, global_batch_size, seed, initial_epoch
    )
    x, y = as_arrays(x, y)
    replicas = strategy.num_replicas_in_sync
    _check_training_batches(x.shape[0], global_batch_size, replicas, drop_remainder)
    model = _built_model(build_model, strategy)
    validation_data = _checked_validation(validation_data, global_batch_size, replicas)
    history = keras.callbacks.History()
    history.set_model(model)
    history.epoch = []
    fit_resumable(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=global_batch_size,
        seed=seed,
        checkpoint=None if checkpoint_dir is None else _checkpoint_file(checkpoint_dir, strategy),
        validation=validation_data,
        progress=False,
        initial_epoch=int(initial_epoch),
        drop_remainder=drop_remainder,
        callbacks=[*(callbacks or []), history],
        verbose=verbose,
    )
    return model, history


def _checked_arguments(
    build_model: Any,
    strategy: Any,
    epochs: Any,
    global_batch_size: Any,
    seed: Any,
    initial_epoch: Any,
) -> tuple[tf.distribute.Strategy, int, int, int]:
    """:func:`fit_distributed`'s settings checked: ``(strategy, epochs, global_batch_size,
    seed)``, the strategy resolved from its name."""
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)
    elif not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            f"strategy must be one of {list(STRATEGY_NAMES)} or a tf.distribute.Strategy, "
            f"got {strategy!r}"
        )
    if not callable(build_model):
        raise ValueError(f"build_model must be a function returning a model, got {build_model!r}")
    epochs = check_positive_int("epochs", epochs)
    global_batch_size = check_positive_int("global_batch_size", global_batch_size)
    seed = check_seed(seed)
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral):
        raise ValueError(f"initial_epoch must be an integer in 0..{epochs}, got {initial_epoch!r}")
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be an integer in 0..{epochs}, got {initial_epoch!r}")
    return strategy, epochs, global_batch_size, seed


def _check_training_batches(
    num_examples: int, global_batch_size: int, replicas: int, drop_remainder: bool
) -> None:
    """Raise unless every training batch gives every replica a slice (an equal one in the
    first batch of an epoch)."""
    steps_per_epoch(num_examples, global_batch_size, drop_remainder)  # raises if no batch is left
    if global_batch_size < replicas:
        raise ValueError(
            f"global_batch_size {global_batch_size} is smaller than the {replicas} replicas of "
            "the strategy; every replica needs at least one example per step"
        )
    check_last_batch("x", num_examples, global_batch_size, replicas, drop_remainder)
    if replicas > 1:
        # Keras 3's fit and evaluate reduce the first batch of every pass across the replicas
        # (to learn its shapes), which fails, or hangs across workers, on unequal slices.
        if global_batch_size % replicas:
            raise ValueError(
                f"global_batch_size {global_batch_size} must be a multiple of the {replicas} "
                "replicas: Keras 3 needs the first batch of an epoch split into equal slices"
            )
        if num_examples < global_batch_size and num_examples % replicas:
            raise ValueError(
                f"x has {num_examples} examples, fewer than global_batch_size {global_batch_size} "
                f"and not a multiple of the {replicas} replicas: its only batch cannot be split "
                "into equal slices; change global_batch_size"
            )


def _built_model(
    build_model: Callable[[], keras.Model], strategy: tf.distribute.Strategy
) -> keras.Model:
    """``build_model()`` called in ``strategy``'s scope, checked: a compiled model of that
    strategy."""
    with strategy.scope():
        model = build_model()
    if not isinstance(model, keras.Model):
        raise ValueError(f"build_model must return a keras.Model, got {type(model).__name__}")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"build_model returned model {model.name!r} without an optimizer; compile it inside "
            "build_model"
        )
    if model.distribute_strategy is not strategy:
        raise ValueError(
            f"model {model.name!r} was created outside the strategy's scope; build_model must "
            "create the model, not return one made earlier"
        )
    return model


def _checked_validation(
    validation_data: Any, global_batch_size: int, replicas: int
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``validation_data`` (``x_val`` or ``(x_val, y_val)``) as ``(x_val, y_val)`` arrays, checked
    to cut into batches for ``replicas`` before any training step; ``None`` stays ``None``."""
    if validation_data is None:
        return None
    if isinstance(validation_data, tuple):
        if len(validation_data) != 2:
            raise ValueError(
                "validation_data must be x_val or (x_val, y_val), got a sequence of "
                f"{len(validation_data)} items"
            )
        validation_data = as_arrays(*validation_data)
    else:
        validation_data = as_arrays(validation_data, None)
    validation_batch_size(validation_data[0].shape[0], global_batch_size, replicas)
    return validation_data


def _checkpoint_file(directory: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    directory = Path(directory)
    if is_chief(strategy):
        directory.mkdir(parents=True, exist_ok=True)
    return directory / CHECKPOINT_FILE
