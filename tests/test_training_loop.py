"""The one training loop (mdwarf_zoo.training.loop): the same batches, weights and checkpoints
whatever the strategy.

A tiny regression model records the rows of every batch it trains on (column 0 of the inputs
is the row index), so the tests compare the batch sequences themselves, not only their effect.
On one CPU device ``"mirrored"`` is one replica: it feeds the global batches through the
``tf.data`` pipeline of ``mdwarf_zoo.training.distribute.make_dataset``, ``"default"`` from
Python, and both must give the model the same rows in the same steps.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mdwarf_zoo.training.distribute import get_strategy
from mdwarf_zoo.training.loop import epoch_order, fit_resumable, steps_per_epoch

ROWS, BATCH, SEED = 20, 8, 5
# Both strategies run the same float32 steps on one device; only the summation order of a
# batch may differ (a few ulps), far below what another batch order does (~1e-2 here).
WEIGHT_ATOL = 1e-6


class _Recorder(keras.Model):
    """A functional model whose training step appends the row indices of its batch to
    ``self.seen`` (a plain list, set with ``object.__setattr__`` so Keras does not track it)."""

    def train_step(self, data):
        x, _ = data
        self.seen.append(np.rint(x[:, 0].numpy()).astype(int).tolist())
        return super().train_step(data)


def build(seen: list) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = _Recorder(inputs, keras.layers.Dense(1)(inputs), name="recorder")
    object.__setattr__(model, "seen", seen)
    # Eager steps, so the recorder reads each batch's values.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)
    return model


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS + 6, 4)).astype(np.float32)
    x[:, 0] = np.arange(ROWS + 6)
    y = (x[:, 1:] @ np.array([[0.5], [-1.0], [2.0]])).astype(np.float32)
    return x, y


def train(strategy: str, epochs: int, checkpoint) -> tuple[keras.Model, list, list]:
    x, y = data()
    seen: list = []
    with get_strategy(strategy).scope():
        model = build(seen)
    history = fit_resumable(
        model,
        x[:ROWS],
        y[:ROWS],
        epochs=epochs,
        batch_size=BATCH,
        seed=SEED,
        checkpoint=checkpoint,
        validation=(x[ROWS:], y[ROWS:]),
        progress=False,
    )
    return model, seen, history


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(left, right, rtol=0, atol=WEIGHT_ATOL)


def expected_batches(epochs: range) -> list[list[int]]:
    return [
        epoch_order(ROWS, SEED, epoch)[first : first + BATCH].tolist()
        for epoch in epochs
        for first in range(0, ROWS, BATCH)
    ]


def test_default_and_mirrored_see_the_same_batches(tmp_path):
    default, default_seen, default_history = train("default", 3, tmp_path / "d.ckpt.npz")
    mirrored, mirrored_seen, mirrored_history = train("mirrored", 3, tmp_path / "m.ckpt.npz")
    assert len(default_seen) == 3 * steps_per_epoch(ROWS, BATCH) == 9
    assert mirrored_seen == default_seen == expected_batches(range(3))
    assert_same_weights(mirrored, default)
    for ours, theirs in zip(mirrored_history, default_history, strict=True):
        assert set(ours) == set(theirs) == {"loss", "val_loss"}
        np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)
        np.testing.assert_allclose(ours["val_loss"], theirs["val_loss"], rtol=1e-5)
    # One checkpoint format: the same keys, the same settings and history.
    with np.load(tmp_path / "d.ckpt.npz") as d, np.load(tmp_path / "m.ckpt.npz") as m:
        assert sorted(d.files) == sorted(m.files)
        assert int(d["epoch"]) == int(m["epoch"]) == 3
        assert str(d["settings"]) == str(m["settings"])
        assert len(json.loads(str(m["history"]))) == 3


@pytest.mark.parametrize(("first", "then"), [("default", "mirrored"), ("mirrored", "default")])
def test_resume_under_the_other_strategy(tmp_path, first, then):
    straight, straight_seen, straight_history = train("default", 4, None)
    checkpoint = tmp_path / "model.ckpt.npz"
    # A job stopped after two epochs, restarted under the other strategy.
    _, seen_before, _ = train(first, 2, checkpoint)
    resumed, seen_after, history = train(then, 4, checkpoint)
    assert seen_before + seen_after == straight_seen == expected_batches(range(4))
    assert_same_weights(resumed, straight)
    assert int(resumed.optimizer.iterations.numpy()) == 4 * steps_per_epoch(ROWS, BATCH)
    assert len(history) == 4
    np.testing.assert_allclose(
        [epoch["loss"] for epoch in history],
        [epoch["loss"] for epoch in straight_history],
        rtol=1e-5,
    )
    # A checkpoint of other settings is refused, not resumed.
    with get_strategy(then).scope():
        model = build([])
    x, y = data()
    with pytest.raises(ValueError, match="was written with seed=5 but this run has seed=6"):
        fit_resumable(
            model, x[:ROWS], y[:ROWS], epochs=5, batch_size=BATCH, seed=6, checkpoint=checkpoint
        )
