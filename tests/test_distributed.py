"""Data-parallel training (mdwarf_zoo.training.distribute): strategies, input pipeline,
checkpoints, and real multi-process runs.

The multi-process tests start separate Python processes (tests/distributed_worker.py) because
TF_CONFIG and the device layout are fixed when TensorFlow starts: two MultiWorkerMirroredStrategy
workers talking gRPC over 127.0.0.1, a single-process reference on the default strategy, a
MirroredStrategy over two logical CPU devices (which also records how global batches are split
between its replicas). They all start at once and are bounded by one deadline; every process
is killed and reaped whatever happens.

What cannot be tested on a machine without GPUs: NCCL all-reduce (MirroredStrategy and the
multi-worker strategy use it between GPUs; here they use the CPU ring/gRPC implementations of
the same collectives) and the speed-up; the arithmetic of the data-parallel step is the same.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import mdwarf_zoo
from mdwarf_zoo.training.distribute import (
    CHECKPOINT_FILE,
    STRATEGY_NAMES,
    epoch_order,
    get_strategy,
    make_dataset,
    read_tf_config,
    steps_per_epoch,
    validation_batch_size,
)
from mdwarf_zoo.training.loop import fit_distributed

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("distributed_worker.py")
# The machines are shared and have two cores; on an idle one the whole group takes ~25 s.
DEADLINE_S = 300
EPOCHS = 3

# Tolerance between one process and two replicas on the same global batch. Both runs start
# from the same seeded weights and visit the same examples in the same global batches, so they
# differ only by float32 rounding: the gradient of a batch is summed as two half-batch sums plus
# an all-reduce instead of one sum, and oneDNN blocks an 8-row matmul differently from a 16-row
# one. That perturbs each gradient by a few float32 ulps (~1e-7 relative); Adam divides by
# sqrt(v), so each of the 12 steps moves a weight by at most ~lr * 1e-6. Observed: losses agree
# to 1e-7 relative, weights to 3e-8. A real fault is orders of magnitude larger: visiting the
# same examples in another order already changes the loss by 1e-4 relative after one epoch and
# 2e-2 after three, and the weights by 2e-2.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(tf_config: dict | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Start every worker process at once, wait for all (bounded), and return their outputs."""
    folder = tmp_path_factory.mktemp("distributed")
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    common = ["--epochs", str(EPOCHS), "--global-batch-size", "16"]
    commands = {
        f"worker{index}": (
            [
                "train",
                "--strategy",
                "multi_worker",
                "--checkpoint-dir",
                str(folder / "checkpoint"),
                *common,
            ],
            {"cluster": cluster, "task": {"type": "worker", "index": index}},
        )
        for index in range(2)
    }
    commands["single"] = (["train", "--strategy", "default", *common], None)
    outputs = {"split": folder / "split.json"}
    commands["mirrored"] = (
        ["train", "--strategy", "mirrored", "--logical-cpus", "2", "--split-out"]
        + [str(outputs["split"]), *common],
        None,
    )

    processes: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for name, (arguments, tf_config) in commands.items():
            outputs[name] = folder / f"{name}.npz"
            logs[name] = open(folder / f"{name}.log", "w")  # noqa: SIM115 (closed below)
            processes[name] = subprocess.Popen(
                [sys.executable, str(WORKER), *arguments, "--out", str(outputs[name])],
                env=worker_env(tf_config),
                stdout=logs[name],
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        deadline = time.monotonic() + DEADLINE_S
        for name, process in processes.items():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {name!r} did not finish within {DEADLINE_S} s")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()
        for log in logs.values():
            log.close()
    for name, process in processes.items():
        if process.returncode != 0:
            tail = (folder / f"{name}.log").read_text()[-4000:]
            pytest.fail(f"worker {name!r} exited with {process.returncode}:\n{tail}")
    outputs["checkpoint"] = folder / "checkpoint"
    return outputs


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


# --- multi-process runs --------------------------------------------------------------------


def test_two_workers_reach_the_single_process_loss(runs):
    single, worker0 = load(runs["single"]), load(runs["worker0"])
    assert int(single["replicas"]) == 1 and int(worker0["replicas"]) == 2
    assert len(single["loss"]) == EPOCHS
    np.testing.assert_allclose(worker0["loss"], single["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(worker0["val_loss"], single["val_loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(worker0["weights"], single["weights"], rtol=0, atol=WEIGHT_ATOL)
    # Training moved the weights well beyond that tolerance.
    assert single["loss"][-1] < single["loss"][0]


def test_two_workers_end_with_identical_weights(runs):
    worker0, worker1 = load(runs["worker0"]), load(runs["worker1"])
    # The all-reduce hands every worker the same summed gradient, so the updates are bitwise
    # identical, and so are the logged losses (reduced over both workers).
    np.testing.assert_array_equal(worker0["weights"], worker1["weights"])
    np.testing.assert_array_equal(worker0["loss"], worker1["loss"])
    assert bool(worker0["same_strategy"]) and bool(worker1["same_strategy"])


def test_only_the_chief_writes_the_checkpoint(runs):
    folder = runs["checkpoint"]
    assert [path.name for path in folder.iterdir()] == [CHECKPOINT_FILE]
    state = load(folder / CHECKPOINT_FILE)
    assert int(state["epoch"]) == EPOCHS
    settings = json.loads(str(state["settings"]))
    assert settings["batch_size"] == 16 and settings["num_examples"] == 64
    history = json.loads(str(state["history"]))
    np.testing.assert_allclose(
        [epoch["loss"] for epoch in history], load(runs["worker0"])["loss"], rtol=1e-6
    )


def test_mirrored_over_two_replicas_equals_default(runs):
    single, mirrored = load(runs["single"]), load(runs["mirrored"])
    assert int(mirrored["replicas"]) == 2
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(mirrored["weights"], single["weights"], rtol=0, atol=WEIGHT_ATOL)


def test_global_batches_are_split_between_replicas(runs):
    split = json.loads(runs["split"].read_text())
    assert split["replicas"] == 2
    # 20 examples, global batch 8, two epochs: 8, 8, 4 per epoch.
    assert [len(batch) for batch in split["global_batches"]] == [8, 8, 4] * 2
    for whole, first, second in zip(
        split["global_batches"], split["replica0"], split["replica1"], strict=True
    ):
        assert len(first) == len(second) == len(whole) // 2
        assert first + second == whole
    expected = [3.0 * i for i in epoch_order(20, 4, 0)] + [3.0 * i for i in epoch_order(20, 4, 1)]
    assert [value for batch in split["global_batches"] for value in batch] == expected


# --- strategies ----------------------------------------------------------------------------


def test_default_and_mirrored_strategies():
    default = get_strategy("default")
    assert default.num_replicas_in_sync == 1
    assert get_strategy() is default
    mirrored = get_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    # No GPU here: MirroredStrategy mirrors over the one CPU device.
    assert mirrored.num_replicas_in_sync == max(1, len(tf.config.list_logical_devices("GPU")))
    assert get_strategy("mirrored") is mirrored


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "horovod",
            {},
            "strategy must be one of ['default', 'mirrored', 'multi_worker'], got 'horovod'",
        ),
        (None, {}, "got None"),
        ("default", {"devices": ["/cpu:0"]}, "devices only applies to strategy 'mirrored'"),
        ("mirrored", {"devices": []}, "devices must be a non-empty list"),
        ("mirrored", {"devices": "/gpu:0"}, "devices must be a non-empty list"),
    ],
)
def test_strategy_errors(name, kwargs, message):
    with pytest.raises(ValueError) as error:
        get_strategy(name, **kwargs)
    assert message in str(error.value)
    assert STRATEGY_NAMES == ("default", "mirrored", "multi_worker")


def test_default_strategy_inside_another_scope_is_an_error():
    with get_strategy("mirrored").scope(), pytest.raises(ValueError, match="outside any scope"):
        get_strategy("default")


def test_multi_worker_without_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        get_strategy("multi_worker")


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ("", "which is not set"),
        ("{cluster:", "TF_CONFIG is not valid JSON"),
        ("[1, 2]", "TF_CONFIG must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG has no 'cluster' object"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {}}', "names no 'worker' addresses"),
        ('{"cluster": {"worker": ["localhost"]}}', "must be a list of 'host:port' strings"),
        ('{"cluster": {"worker": []}}', "names no 'worker' addresses"),
        ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG has no 'task' object"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            "task type must be one of the cluster jobs ['worker'], got 'chief'",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            "task index must be an integer in 0..1 (the cluster has 2 'worker' address(es)), got 2",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}',
            "task index must be an integer in 0..0",
        ),
    ],
)
def test_tf_config_errors(monkeypatch, tf_config, message):
    with pytest.raises(ValueError) as error:
        read_tf_config({"TF_CONFIG": tf_config})
    assert message in str(error.value)
    assert "example: TF_CONFIG=" in str(error.value)
    # get_strategy checks TF_CONFIG before it creates anything.
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        get_strategy("multi_worker")


def test_valid_tf_config():
    config = {
        "cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
        "task": {"type": "worker", "index": 1},
    }
    assert read_tf_config({"TF_CONFIG": json.dumps(config)}) == config


# --- input pipeline ------------------------------------------------------------------------


def test_epoch_order_depends_on_seed_and_epoch_only():
    first = epoch_order(1000, seed=7, epoch=3)
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    np.random.default_rng().random(10)  # no global or shared generator state is involved
    np.testing.assert_array_equal(epoch_order(1000, seed=7, epoch=3), first)
    assert not np.array_equal(epoch_order(1000, seed=7, epoch=4), first)
    assert not np.array_equal(epoch_order(1000, seed=8, epoch=3), first)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0, got -1"):
        epoch_order(10, seed=0, epoch=-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 1.5"):
        epoch_order(10, seed=1.5, epoch=0)


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_dataset_follows_the_epoch_order_in_global_batches():
    x = np.arange(22 * 2, dtype=np.float32).reshape(22, 2)
    labels = np.arange(22) * 10
    dataset = make_dataset(x, labels, global_batch_size=8, seed=3, first_epoch=2, num_epochs=2)
    assert int(dataset.cardinality()) == 2 * steps_per_epoch(22, 8) == 6
    got = batches(dataset)
    assert [len(xb) for xb, _ in got] == [8, 8, 6, 8, 8, 6]
    rows = np.concatenate([xb[:, 0] / 2 for xb, _ in got]).astype(int)
    np.testing.assert_array_equal(rows[:22], epoch_order(22, 3, 2))
    np.testing.assert_array_equal(rows[22:], epoch_order(22, 3, 3))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in got]), rows * 10)
    # Iterating again, or starting a resumed run at epoch 3, gives the same batches.
    again = batches(dataset)
    for (x1, y1), (x2, y2) in zip(got, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = batches(make_dataset(x, labels, global_batch_size=8, seed=3, first_epoch=3))
    for (x1, _), (x2, _) in zip(got[3:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)


def test_dataset_for_an_autoencoder_and_without_shuffling():
    x = np.linspace(0, 1, 30, dtype=np.float64).reshape(10, 3)
    got = batches(make_dataset(x, global_batch_size=4))
    assert [xb.dtype for xb, _ in got] == [np.float32] * 3
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), x.astype(np.float32))
    for xb, yb in got:
        np.testing.assert_array_equal(xb, yb)
    dropped = batches(make_dataset(x, global_batch_size=4, seed=1, drop_remainder=True))
    assert [len(xb) for xb, _ in dropped] == [4, 4]


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "message"),
    [
        (np.zeros(5), None, {}, "x must be an array of shape (examples, features...)"),
        (np.zeros((0, 3)), None, {}, "at least one example, got shape (0, 3)"),
        (np.zeros((5, 3), dtype=int), None, {}, "x must hold floating-point values"),
        (np.zeros((5, 3)), np.zeros(4), {}, "y must have one row per example of x (5)"),
        (np.zeros((5, 3)), None, {"global_batch_size": 0}, "global_batch_size must be a positive"),
        (np.zeros((5, 3)), None, {"seed": -1}, "seed must be an integer >= 0, got -1"),
        (np.zeros((5, 3)), None, {"first_epoch": -2}, "first_epoch must be an integer >= 0"),
        (np.zeros((5, 3)), None, {"num_epochs": 0}, "num_epochs must be a positive integer"),
        (
            np.zeros((5, 3)),
            None,
            {"global_batch_size": 8, "drop_remainder": True},
            "drop_remainder=True with 5 examples and global_batch_size 8 leaves no batch",
        ),
    ],
)
def test_dataset_errors(x, y, kwargs, message):
    kwargs = {"global_batch_size": 2, **kwargs}
    with pytest.raises(ValueError) as error:
        make_dataset(x, y, **kwargs)
    assert message in str(error.value)


# --- fit_distributed and checkpoints -------------------------------------------------------


def spectra(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 1.0, size=(count, 3501)).astype(np.float32)


def tiny_autoencoder() -> keras.Model:
    return mdwarf_zoo.create_model("dense_ae_tiny", seed=2, learning_rate=1e-3)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    x = spectra(24, seed=1)
    settings = {"strategy": "default", "global_batch_size": 8, "seed": 9}
    whole, whole_history = fit_distributed(
        tiny_autoencoder, x, epochs=3, checkpoint_dir=tmp_path / "whole", **settings
    )
    # A job killed after its first epoch, then restarted with the same command.
    fit_distributed(tiny_autoencoder, x, epochs=1, checkpoint_dir=tmp_path / "cut", **settings)
    resumed, resumed_history = fit_distributed(
        tiny_autoencoder, x, epochs=3, checkpoint_dir=tmp_path / "cut", **settings
    )
    assert resumed_history.epoch == [1, 2]
    np.testing.assert_allclose(
        resumed_history.history["loss"], whole_history.history["loss"][1:], rtol=1e-6
    )
    for a, b in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    # Adam's step count came back with the weights.
    assert int(resumed.optimizer.iterations.numpy()) == int(whole.optimizer.iterations.numpy()) == 9
    assert [p.name for p in (tmp_path / "cut").iterdir()] == [CHECKPOINT_FILE]
    # Nothing left to do: the checkpoint is loaded and returned as it is.
    done, done_history = fit_distributed(
        tiny_autoencoder, x, epochs=3, checkpoint_dir=tmp_path / "cut", **settings
    )
    assert done_history.epoch == []
    for a, b in zip(done.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="was written with seed=9 but this run has seed=10"):
        fit_distributed(
            tiny_autoencoder,
            x,
            epochs=4,
            checkpoint_dir=tmp_path / "cut",
            **{**settings, "seed": 10},
        )


def test_fit_distributed_with_labels_and_validation():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(40, 32)).astype(np.float32)
    teff = (latents[:, :1] * 0.5).astype(np.float32)
    model, history = fit_distributed(
        lambda: mdwarf_zoo.create_model("latent_cnn", seed=1),
        latents,
        teff,
        strategy=get_strategy("mirrored"),
        epochs=2,
        global_batch_size=16,
        seed=0,
        validation_data=(latents[:10], teff[:10]),
    )
    assert history.epoch == [0, 1]
    assert set(history.history) == {"loss", "val_loss"}
    assert model.distribute_strategy is get_strategy("mirrored")


def test_fit_distributed_errors():
    x = spectra(8, seed=0)

    def uncompiled():
        return keras.Sequential([keras.Input((3501,)), keras.layers.Dense(1)])

    made_outside = tiny_autoencoder()
    common = {"epochs": 1, "global_batch_size": 4, "seed": 0}
    cases = [
        (lambda: None, {}, "build_model must return a keras.Model, got NoneType"),
        (uncompiled, {}, "without an optimizer; compile it inside build_model"),
        (
            lambda: made_outside,
            {"strategy": "mirrored"},
            "was created outside the strategy's scope",
        ),
        (tiny_autoencoder, {"strategy": "ring"}, "strategy must be one of"),
        (tiny_autoencoder, {"strategy": 3}, "or a tf.distribute.Strategy, got 3"),
        ("model", {}, "build_model must be a function"),
        (tiny_autoencoder, {"epochs": 0}, "epochs must be a positive integer, got 0"),
        (tiny_autoencoder, {"initial_epoch": 2}, "initial_epoch must be an integer in 0..1, got 2"),
        (tiny_autoencoder, {"validation_data": (x, x, x)}, "a sequence of 3 items"),
    ]
    for build, overrides, message in cases:
        with pytest.raises(ValueError) as error:
            fit_distributed(build, x, **{**common, **overrides})
        assert message in str(error.value), (message, str(error.value))


@pytest.mark.parametrize(
    ("examples", "batch", "replicas", "expected"),
    [
        (6880, 128, 1, 128),  # one replica: the global batch, whatever the remainder
        (6880, 128, 4, 128),  # 53 x 128 + 96: the last batch still feeds all 4 replicas
        (57, 128, 16, 32),  # MB24 transfer validation on 16 GPUs: 32 + 25
        (57, 128, 4, 52),  # 56 would leave a last batch of 1 for 4 replicas
        (6, 8, 2, 6),
    ],
)
def test_validation_batch_size(examples, batch, replicas, expected):
    size = validation_batch_size(examples, batch, replicas)
    assert size == expected
    assert size % replicas == 0 or replicas == 1
    assert examples % size == 0 or examples % size >= replicas or replicas == 1


def test_validation_set_that_cannot_be_split():
    with pytest.raises(ValueError, match="validation_data has 5 examples, which cannot be cut"):
        validation_batch_size(5, 8, 2)
