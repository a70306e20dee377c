"""Data-parallel training with ``tf.distribute``: strategies, input pipelines, checkpoints.

Three strategies, by name (the recipe option ``strategy``):

* ``"default"``: one device, no distribution (TensorFlow's default strategy).
* ``"mirrored"``: ``tf.distribute.MirroredStrategy``, one replica per GPU of this machine
  (one CPU replica when there is no GPU).
* ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` across machines, each
  process told its place in the cluster by the standard ``TF_CONFIG`` environment variable.

Batches are always given at the GLOBAL batch size (MB24: 128); the strategy splits every global
batch between the replicas, so a run on N replicas takes the same optimisation steps as a run on
one device, up to float32 rounding.

Every worker builds the same input pipeline and keeps its own slice of each global batch, so the
order of the examples must be identical on all workers and must not depend on how far a random
generator has advanced: the order of epoch ``e`` is a function of ``(seed, e)`` only
(:func:`epoch_order`). That is also what makes a resumed run take exactly the steps of an
uninterrupted one.

Checkpoints (:class:`EpochCheckpoint`) are written once per epoch by the chief worker only,
into a directory every worker can read (a shared file system on a cluster); they hold the model
weights, the optimizer state (Adam moments and step count) and the epoch, so that
:func:`fit_distributed` resumes a killed job at the next epoch with the same result.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "STRATEGY_NAMES",
    "EpochCheckpoint",
    "epoch_order",
    "fit_distributed",
    "get_strategy",
    "is_chief",
    "make_dataset",
    "read_tf_config",
    "steps_per_epoch",
]

logger = logging.getLogger(__name__)

STRATEGY_NAMES = ("default", "mirrored", "multi_worker")

TF_CONFIG_EXAMPLE = json.dumps(
    {
        "cluster": {"worker": ["node1:12345", "node2:12345"]},
        "task": {"type": "worker", "index": 0},
    }
)

# A process can hold only one MultiWorkerMirroredStrategy (it configures the collective ops of
# the TensorFlow runtime once), and the recipe runner asks for the strategy once per stage.
_STRATEGY_CACHE: dict[tuple, tf.distribute.Strategy] = {}


def read_tf_config(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Read and check the ``TF_CONFIG`` environment variable of a multi-worker job.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        The parsed ``TF_CONFIG``: ``{"cluster": {"worker": [...], ...}, "task": {"type": ...,
        "index": ...}}``.

    Raises:
        ValueError: when ``TF_CONFIG`` is absent, not JSON, or lacks a cluster with workers, a
            task type present in the cluster or a task index inside that job; the message names
            what is missing and shows an example.
    """
    environ = os.environ if environ is None else environ
    hint = f"; example: TF_CONFIG='{TF_CONFIG_EXAMPLE}'"
    raw = environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        raise ValueError(
            "strategy 'multi_worker' needs the TF_CONFIG environment variable, which is not set"
            + hint
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}{hint}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {raw!r}{hint}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no 'cluster' object, got {raw!r}{hint}")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError(f"TF_CONFIG 'cluster' names no 'worker' addresses, got {raw!r}{hint}")
    for job, addresses in cluster.items():
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)
        ):
            raise ValueError(
                f"TF_CONFIG cluster job {job!r} must be a list of 'host:port' strings, "
                f"got {addresses!r}{hint}"
            )
    task = config.get("task")
    if not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG has no 'task' object, got {raw!r}{hint}")
    task_type = task.get("type")
    if task_type not in cluster:
        raise ValueError(
            f"TF_CONFIG task type must be one of the cluster jobs {sorted(cluster)}, "
            f"got {task_type!r}{hint}"
        )
    index = task.get("index")
    size = len(cluster[task_type])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(
            f"TF_CONFIG task index must be an integer in 0..{size - 1} (the cluster has {size} "
            f"{task_type!r} address(es)), got {index!r}{hint}"
        )
    return config


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3's ``fit`` gives it.

    Keras 3 (up to 3.15.1 at least) cannot ``fit`` under the plain multi-worker strategy
    (keras-team/keras#20585): before the first epoch it reduces the ``(x, y)`` tuple of a batch
    (``ValueError: Attempt to convert a value (PerReplica ...) to a Tensor``), and after every
    step it reduces the scalar logs with ``axis=0`` (``Invalid reduction dimension 0 for input
    with 0 dimensions``). This strategy reduces a nest item by item, and a scalar across the
    replicas (``axis=None``), which is what both calls mean.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(item):
            local = self.experimental_local_results(item)[0]
            scalar = getattr(getattr(local, "shape", None), "rank", None) == 0
            return parent.reduce(reduce_op, item, None if scalar else axis)

        return tf.nest.map_structure(reduce_one, value)


def get_strategy(name: str = "default", *, devices: Sequence[str] | None = None):
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: ``"default"`` (one device), ``"mirrored"`` (all GPUs of this machine, or the
            ``devices`` given) or ``"multi_worker"`` (the cluster in ``TF_CONFIG``).
        devices: only for ``"mirrored"``: the devices to mirror over, e.g.
            ``["/gpu:0", "/gpu:1"]``; default all GPUs (the CPU when there is none).

    Returns:
        A ``tf.distribute.Strategy``. The same call in the same process returns the same object
        (a process can hold one multi-worker strategy only).

    Raises:
        ValueError: for an unknown name, ``devices`` with another strategy than ``"mirrored"``,
            or ``"multi_worker"`` without a valid ``TF_CONFIG`` (see :func:`read_tf_config`).

    Examples:
        >>> from mdwarf_zoo.distribute import get_strategy
        >>> get_strategy("default").num_replicas_in_sync
        1
    """
    if not isinstance(name, str) or name not in STRATEGY_NAMES:
        raise ValueError(f"strategy must be one of {list(STRATEGY_NAMES)}, got {name!r}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices only applies to strategy 'mirrored', got strategy {name!r}")
    if name == "default":
        if tf.distribute.has_strategy():
            raise ValueError(
                "get_strategy('default') was called inside the scope of another strategy "
                f"({type(tf.distribute.get_strategy()).__name__}); call it outside any scope"
            )
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        config = read_tf_config()
        key = (name, json.dumps(config, sort_keys=True))
        if key not in _STRATEGY_CACHE and any(k[0] == name for k in _STRATEGY_CACHE):
            raise ValueError(
                "TF_CONFIG changed after this process created its multi-worker strategy; a "
                "process can join one cluster only"
            )
    else:
        if devices is not None and (
            isinstance(devices, str)
            or not devices
            or not all(isinstance(device, str) for device in devices)
        ):
            raise ValueError(f"devices must be a non-empty list of device names, got {devices!r}")
        key = (name, None if devices is None else tuple(devices))
    if key not in _STRATEGY_CACHE:
        if name == "multi_worker":
            strategy = _MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy(None if devices is None else list(devices))
        logger.info("strategy %s: %d replica(s) in sync", name, strategy.num_replicas_in_sync)
        _STRATEGY_CACHE[key] = strategy
    return _STRATEGY_CACHE[key]


def is_chief(strategy) -> bool:
    """Whether this process is the chief of ``strategy``'s cluster (the one that writes files).

    The chief is the ``"chief"`` task if the cluster has one, otherwise worker 0; a process
    without a multi-worker strategy is always the chief.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:  # a MultiWorkerMirroredStrategy without a cluster: one local worker
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be an integer >= 0, got {value!r}")
    return int(value)


def steps_per_epoch(num_examples: int, global_batch_size: int, drop_remainder: bool = False) -> int:
    """Optimisation steps in one epoch of ``num_examples`` at ``global_batch_size``.

    Raises:
        ValueError: for a non-positive size, or when ``drop_remainder`` leaves no batch.
    """
    num_examples = _check_positive_int("num_examples", num_examples)
    global_batch_size = _check_positive_int("global_batch_size", global_batch_size)
    steps = num_examples // global_batch_size
    if not drop_remainder and num_examples % global_batch_size:
        steps += 1
    if steps == 0:
        raise ValueError(
            f"drop_remainder=True with {num_examples} examples and global_batch_size "
            f"{global_batch_size} leaves no batch; lower global_batch_size"
        )
    return steps


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples: a permutation of
    ``range(num_examples)`` that depends on ``(seed, epoch)`` only.

    Args:
        num_examples: number of examples.
        seed: the shuffling seed (an integer >= 0).
        epoch: the epoch index (0-based, an integer >= 0).

    Returns:
        An ``int64`` array holding each index once.
    """
    num_examples = _check_positive_int("num_examples", num_examples)
    seed = _check_seed(seed)
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    return _shuffled_indices(num_examples, seed, tf.constant(int(epoch), tf.int64)).numpy()


def _shuffled_indices(num_examples: int, seed: int, epoch: tf.Tensor) -> tf.Tensor:
    # A stateless shuffle keyed by (seed, epoch): no generator state carries over from earlier
    # epochs or differs between workers; the same op serves the pipeline and epoch_order().
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=key
    )


def _as_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"x must be an array of shape (examples, features...) with at least one example, "
            f"got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must hold floating-point values, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have one row per example of x ({x.shape[0]}), got shape {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float32, copy=False)
    return x, y


def _check_last_batch(
    name: str, num_examples: int, global_batch_size: int, replicas: int, drop_remainder: bool
) -> None:
    remainder = num_examples % global_batch_size
    if not drop_remainder and 0 < remainder < replicas:
        # A replica with an empty slice would average its penalties over zero examples (NaN).
        raise ValueError(
            f"the last batch of {name} holds {remainder} example(s) ({num_examples} examples, "
            f"global_batch_size {global_batch_size}), fewer than the {replicas} replicas; "
            "change global_batch_size (or, for training, pass drop_remainder=True)"
        )


def _validation_batch_size(num_examples: int, global_batch_size: int, replicas: int) -> int:
    """The evaluation batch: ``global_batch_size`` on one replica; on several, the largest
    multiple of the replicas (at most ``global_batch_size``) whose first batch splits evenly and
    whose last batch still gives every replica an example. The batch size of an evaluation
    changes only the float32 rounding of the mean loss."""
    if replicas == 1:
        return global_batch_size
    size = min(global_batch_size, num_examples) // replicas * replicas
    while size >= replicas:
        rest = num_examples % size
        if rest == 0 or rest >= replicas:
            return size
        size -= replicas
    raise ValueError(
        f"validation_data has {num_examples} examples, which cannot be cut into batches that "
        f"give each of the {replicas} replicas an equal first slice and at least one example "
        "in every batch; use a validation set that is a multiple of the replicas"
    )


def make_dataset(
    x: Any,
    y: Any = None,
    *,
    global_batch_size: int,
    seed: int | None = None,
    first_epoch: int = 0,
    num_epochs: int = 1,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of GLOBAL batches for ``num_epochs`` consecutive epochs.

    Pass the dataset to ``model.fit`` under a strategy together with
    ``steps_per_epoch=steps_per_epoch(len(x), global_batch_size, drop_remainder)``: the
    strategy splits each global batch between its replicas (and, across workers, each worker
    keeps its own slice of every batch; ``AutoShardPolicy.DATA``).

    Epoch ``e`` visits the examples in the order ``epoch_order(len(x), seed, e)``; each epoch
    ends with a partial batch unless ``drop_remainder``. The arrays are held as tensors and each
    batch is gathered by index; a distributed pipeline serialises its graph with them, which
    TensorFlow limits to 2 GB (the MB24 training set is 225 MB: 16,053 x 3501 float32).

    Args:
        x: inputs, shape ``(examples, ...)``; floating point (cast to float32).
        y: targets, one row per example; ``None`` for an autoencoder (the target is ``x``).
        global_batch_size: examples per optimisation step, summed over all replicas.
        seed: the shuffling seed; ``None`` keeps the order of ``x`` (validation, prediction).
        first_epoch: the index of the first epoch (the ``initial_epoch`` of a resumed run).
        num_epochs: how many epochs the dataset holds.
        drop_remainder: drop the last partial batch of every epoch.

    Returns:
        A dataset of ``(x_batch, y_batch)`` pairs of ``num_epochs * steps_per_epoch(...)``
        batches (known cardinality).

    Raises:
        ValueError: for arrays of the wrong shape or an argument outside its range.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.distribute import make_dataset
        >>> dataset = make_dataset(np.zeros((10, 3)), global_batch_size=4, seed=0)
        >>> [int(x.shape[0]) for x, _ in dataset]
        [4, 4, 2]
    """
    x, y = _as_arrays(x, y)
    global_batch_size = _check_positive_int("global_batch_size", global_batch_size)
    num_epochs = _check_positive_int("num_epochs", num_epochs)
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, numbers.Integral):
        raise ValueError(f"first_epoch must be an integer >= 0, got {first_epoch!r}")
    if first_epoch < 0:
        raise ValueError(f"first_epoch must be an integer >= 0, got {first_epoch!r}")
    if seed is not None:
        seed = _check_seed(seed)
    num_examples = x.shape[0]
    steps = steps_per_epoch(num_examples, global_batch_size, drop_remainder)
    first_epoch = int(first_epoch)

    # The arrays enter the pipeline as constants and batches are gathered by index with
    # TensorFlow ops only: a Python generator (Dataset.from_generator) gave batches out of step
    # between workers under Keras' fit with the multi-worker strategy.
    inputs = tf.constant(x)
    targets = inputs if y is None else tf.constant(y)

    def epoch_indices(epoch: tf.Tensor) -> tf.data.Dataset:
        if seed is None:
            order = tf.range(num_examples, dtype=tf.int64)
        else:
            order = _shuffled_indices(num_examples, seed, epoch)
        return tf.data.Dataset.from_tensor_slices(order).batch(
            global_batch_size, drop_remainder=drop_remainder
        )

    dataset = (
        tf.data.Dataset.range(first_epoch, first_epoch + num_epochs)
        .flat_map(epoch_indices)
        .map(lambda index: (tf.gather(inputs, index), tf.gather(targets, index)))
        .apply(tf.data.experimental.assert_cardinality(steps * num_epochs))
    )
    options = tf.data.Options()
    options.deterministic = True
    # Every worker runs the whole (cheap, deterministic) pipeline and keeps its own slice of
    # each global batch; there are no files to shard by.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


class EpochCheckpoint(keras.callbacks.Callback):
    """Per-epoch checkpoint of weights, optimizer state and epoch, written by the chief only.

    After every epoch the chief writes ``epoch-NNNN.weights.h5`` (``model.save_weights``: the
    model weights and the optimizer variables, so Adam's moments and step count resume too),
    then replaces ``checkpoint.json`` (``{"epoch": N, "weights": ..., **fingerprint}``) in one
    atomic rename and deletes the older weights file, so a job killed at any moment leaves a
    complete checkpoint. The other workers save into a scratch directory that they delete at
    once: saving reads the distributed variables, which every worker must take part in, but
    only one copy may land in the shared directory.

    Keras' own ``BackupAndRestore`` is not used: in Keras 3 every worker writes into the same
    directory (a race on a shared file system), and it restores the epoch through
    ``fit(initial_epoch=...)`` only, after the input pipeline was built, while ours must know
    the epoch first to lay out the shuffling order.

    Args:
        directory: where the checkpoint lives; on a cluster a directory all workers can read.
        chief: whether this process writes (see :func:`is_chief`).
        fingerprint: JSON values that must match on resume (seed, global batch size, number
            of examples): resuming with others would not continue the same run.
    """

    STATE_FILE = "checkpoint.json"

    def __init__(
        self, directory: str | os.PathLike, *, chief: bool = True, fingerprint: dict | None = None
    ):
        super().__init__()
        self.directory = Path(directory)
        self.chief = bool(chief)
        self.fingerprint = dict(fingerprint or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.save(epoch + 1, logs)

    def save(self, epoch: int, logs: dict | None = None) -> None:
        """Save the state after ``epoch`` finished epochs."""
        name = f"epoch-{epoch:04d}.weights.h5"
        if not self.chief:
            scratch = tempfile.mkdtemp(prefix="mdwarf_zoo_checkpoint_")
            try:
                self.model.save_weights(os.path.join(scratch, name))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(self.directory / name, overwrite=True)
        state = {
            "epoch": int(epoch),
            "weights": name,
            "logs": {key: float(value) for key, value in (logs or {}).items()},
            **self.fingerprint,
        }
        partial = self.directory / f".{self.STATE_FILE}.partial"
        partial.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(partial, self.directory / self.STATE_FILE)
        for old in self.directory.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink()

    def read_state(self) -> dict | None:
        """The saved state, or ``None`` when the directory holds no checkpoint."""
        path = self.directory / self.STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"checkpoint state {path} is not valid JSON: {error}") from None
        if not isinstance(state, dict) or "epoch" not in state or "weights" not in state:
            raise ValueError(f"checkpoint state {path} lacks 'epoch' or 'weights': {state!r}")
        return state

    def restore(self, model: keras.Model) -> int | None:
        """Load the checkpoint into ``model`` (under the strategy's scope); return its epoch.

        Returns:
            The number of finished epochs, or ``None`` when there is no checkpoint.

        Raises:
            ValueError: when the checkpoint was written with another fingerprint, or its
                weights file is missing.
        """
        state = self.read_state()
        if state is None:
            return None
        path = self.directory / self.STATE_FILE
        for key, value in self.fingerprint.items():
            if state.get(key) != value:
                raise ValueError(
                    f"checkpoint {path} was written with {key}={state.get(key)!r} but this run "
                    f"has {key}={value!r}; resume with the same settings or use a new directory"
                )
        weights = self.directory / state["weights"]
        if not weights.is_file():
            raise ValueError(f"checkpoint {path} names {weights.name}, which is missing")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        logger.info("resumed from %s after epoch %d", weights, state["epoch"])
        return int(state["epoch"])


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
            epoch at the global batch size, in its own order.
        initial_epoch: the epoch to start at when there is no checkpoint to resume.
        callbacks: more Keras callbacks (they run on every worker).
        checkpoint_dir: where to keep an :class:`EpochCheckpoint`; when it already holds one,
            training resumes after its epoch (and ``initial_epoch`` is ignored).
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
        >>> from mdwarf_zoo.distribute import fit_distributed
        >>> model, history = fit_distributed(
        ...     lambda: mdwarf_zoo.create_model("dense_ae_tiny", seed=0),
        ...     spectra, strategy="mirrored", epochs=120, global_batch_size=128, seed=0)
    """
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)
    elif not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            f"strategy must be one of {list(STRATEGY_NAMES)} or a tf.distribute.Strategy, "
            f"got {strategy!r}"
        )
    if not callable(build_model):
        raise ValueError(f"build_model must be a function returning a model, got {build_model!r}")
    epochs = _check_positive_int("epochs", epochs)
    global_batch_size = _check_positive_int("global_batch_size", global_batch_size)
    seed = _check_seed(seed)
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral):
        raise ValueError(f"initial_epoch must be an integer in 0..{epochs}, got {initial_epoch!r}")
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be an integer in 0..{epochs}, got {initial_epoch!r}")
    x, y = _as_arrays(x, y)
    steps = steps_per_epoch(x.shape[0], global_batch_size, drop_remainder)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size < replicas:
        raise ValueError(
            f"global_batch_size {global_batch_size} is smaller than the {replicas} replicas of "
            "the strategy; every replica needs at least one example per step"
        )
    _check_last_batch("x", x.shape[0], global_batch_size, replicas, drop_remainder)
    if replicas > 1:
        # Keras 3's fit and evaluate reduce the first batch of every pass across the replicas
        # (to learn its shapes), which fails, or hangs across workers, on unequal slices.
        if global_batch_size % replicas:
            raise ValueError(
                f"global_batch_size {global_batch_size} must be a multiple of the {replicas} "
                "replicas: Keras 3 needs the first batch of an epoch split into equal slices"
            )
        if x.shape[0] < global_batch_size and x.shape[0] % replicas:
            raise ValueError(
                f"x has {x.shape[0]} examples, fewer than global_batch_size {global_batch_size} "
                f"and not a multiple of the {replicas} replicas: its only batch cannot be split "
                "into equal slices; change global_batch_size"
            )
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

    all_callbacks = list(callbacks or [])
    if checkpoint_dir is not None:
        checkpoint = EpochCheckpoint(
            checkpoint_dir,
            chief=is_chief(strategy),
            fingerprint={
                "seed": seed,
                "global_batch_size": global_batch_size,
                "num_examples": int(x.shape[0]),
                "drop_remainder": bool(drop_remainder),
            },
        )
        with strategy.scope():
            resumed = checkpoint.restore(model)
        if resumed is not None:
            initial_epoch = min(resumed, epochs)
        all_callbacks.append(checkpoint)

    history = keras.callbacks.History()
    if initial_epoch == epochs:
        history.set_model(model)
        history.history = {}
        history.epoch = []
        return model, history

    dataset = make_dataset(
        x,
        y,
        global_batch_size=global_batch_size,
        seed=seed,
        first_epoch=int(initial_epoch),
        num_epochs=epochs - int(initial_epoch),
        drop_remainder=drop_remainder,
    )
    validation = None
    if validation_data is not None:
        if isinstance(validation_data, tuple):
            if len(validation_data) != 2:
                raise ValueError(
                    "validation_data must be x_val or (x_val, y_val), got a sequence of "
                    f"{len(validation_data)} items"
                )
            x_val, y_val = validation_data
        else:
            x_val, y_val = validation_data, None
        x_val, y_val = _as_arrays(x_val, y_val)
        validation = make_dataset(
            x_val,
            y_val,
            global_batch_size=_validation_batch_size(x_val.shape[0], global_batch_size, replicas),
        )
    history = model.fit(
        dataset,
        epochs=epochs,
        initial_epoch=int(initial_epoch),
        steps_per_epoch=steps,
        validation_data=validation,
        callbacks=all_callbacks,
        shuffle=False,  # the dataset is already in its (seed, epoch) order
        verbose=verbose,
    )
    return model, history
