"""Data-parallel training with ``tf.distribute``: the strategies and the input pipeline.

Three strategies, by name (the recipe option ``strategy``):

* ``"default"``: one device, no distribution (TensorFlow's default strategy).
* ``"mirrored"``: ``tf.distribute.MirroredStrategy``, one replica per GPU of this machine
  (one CPU replica when there is no GPU).
* ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` across machines, each
  process told its place in the cluster by the standard ``TF_CONFIG`` environment variable.

Batches are always given at the GLOBAL batch size (MB24: 128); the strategy splits every global
batch between the replicas, so a run on N replicas takes the same optimisation steps as a run on
one device, up to float32 rounding.

Training runs through the one loop of the package (:func:`mdwarf_zoo.training.loop.fit_resumable`,
and :func:`~mdwarf_zoo.training.loop.fit_distributed` to build a model under a strategy and
train it there): the same batch order on every strategy (epoch
``e`` visits the examples in the order :func:`~mdwarf_zoo.training.batches.epoch_order`
``(n, seed, e)``, a function of ``(seed, e)`` only, so identical on all workers and after a
resume), and the same ``.npz`` checkpoint, written after every epoch by the chief worker only
into a directory every worker can read (a shared file system on a cluster), from which a killed
job resumes at the next epoch with the same result. :func:`make_dataset` feeds that order to the
strategy as global batches: every worker builds the same pipeline and keeps its own slice of
each global batch.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mdwarf_zoo.training.batches import check_positive_int, check_seed, epoch_order, steps_per_epoch

__all__ = [
    "CHECKPOINT_FILE",
    "STRATEGY_NAMES",
    "epoch_order",
    "agree",
    "get_strategy",
    "is_chief",
    "make_dataset",
    "read_tf_config",
    "steps_per_epoch",
]

logger = logging.getLogger(__name__)

STRATEGY_NAMES = ("default", "mirrored", "multi_worker")

#: The checkpoint file :func:`fit_distributed` keeps in its ``checkpoint_dir``.
CHECKPOINT_FILE = "checkpoint.npz"

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
        >>> from mdwarf_zoo.training.distribute import get_strategy
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


def agree(strategy, flag: bool) -> bool:
    """Whether any worker of ``strategy``'s cluster passes ``flag``: an all-reduce, so also a
    barrier (every worker must call it the same number of times in the same order).

    Run eagerly: inside a ``tf.function`` the all-reduce of a plain tensor has no device to
    reduce to ("destinations can not be empty"). Each local replica adds the flag, so the sum
    is positive exactly when some worker's flag is set.
    """

    def reduce(value):
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    value = tf.constant(1.0 if flag else 0.0, tf.float32)
    total = strategy.experimental_local_results(strategy.run(reduce, args=(value,)))[0]
    return bool(float(total) > 0.5)


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


def as_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
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


def check_last_batch(
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


def validation_batch_size(num_examples: int, global_batch_size: int, replicas: int) -> int:
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
        >>> from mdwarf_zoo.training.distribute import make_dataset
        >>> dataset = make_dataset(np.zeros((10, 3)), global_batch_size=4, seed=0)
        >>> [int(x.shape[0]) for x, _ in dataset]
        [4, 4, 2]
    """
    x, y = as_arrays(x, y)
    global_batch_size = check_positive_int("global_batch_size", global_batch_size)
    num_epochs = check_positive_int("num_epochs", num_epochs)
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, numbers.Integral):
        raise ValueError(f"first_epoch must be an integer >= 0, got {first_epoch!r}")
    if first_epoch < 0:
        raise ValueError(f"first_epoch must be an integer >= 0, got {first_epoch!r}")
    if seed is not None:
        seed = check_seed(seed)
    num_examples = x.shape[0]
    steps = steps_per_epoch(num_examples, global_batch_size, drop_remainder)
    first_epoch = int(first_epoch)

    # The arrays enter the pipeline as constants and batches are gathered by index with
    # TensorFlow ops only: a Python generator (Dataset.from_generator) gave batches out of step
    # between workers under Keras' fit with the multi-worker strategy.
    inputs = tf.constant(x)
    targets = inputs if y is None else tf.constant(y)

    # The orders come from epoch_order(), the one batch order of the package, computed here
    # once: no generator state carries over between epochs or differs between workers.
    epochs = range(first_epoch, first_epoch + num_epochs)
    orders = np.stack(
        [
            np.arange(num_examples) if seed is None else epoch_order(num_examples, seed, epoch)
            for epoch in epochs
        ]
    ).astype(np.int64)

    def epoch_batches(order: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(order).batch(
            global_batch_size, drop_remainder=drop_remainder
        )

    dataset = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(epoch_batches)
        .map(lambda index: (tf.gather(inputs, index), tf.gather(targets, index)))
        .apply(tf.data.experimental.assert_cardinality(steps * num_epochs))
    )
    options = tf.data.Options()
    options.deterministic = True
    # Every worker runs the whole (cheap, deterministic) pipeline and keeps its own slice of
    # each global batch; there are no files to shard by.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def distributed_validation(
    model: keras.Model, validation: tuple[Any, Any] | None, global_batch_size: int
) -> Callable[[], float | None]:
    """The per-epoch validation of a model under a strategy: ``model.evaluate`` on global
    batches that give every replica a slice (:func:`validation_batch_size`)."""
    if validation is None:
        return lambda: None
    x_val, y_val = as_arrays(*validation)
    replicas = model.distribute_strategy.num_replicas_in_sync
    dataset = make_dataset(
        x_val,
        y_val,
        global_batch_size=validation_batch_size(x_val.shape[0], global_batch_size, replicas),
    )
    return lambda: float(model.evaluate(dataset, verbose=0, return_dict=True)["loss"])
