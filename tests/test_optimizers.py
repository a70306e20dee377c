"""FusedAdam: the same update as keras.optimizers.Adam in one kernel, saved and loaded as Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mdwarf_zoo
from mdwarf_zoo.optimizers import FusedAdam

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 20)).astype("float32")
Y = X[:, :3] ** 2


def _train(optimizer, *, jit_compile=False, epochs=3):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3),
    ])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(X, Y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_adam_matches_keras_adam(jit_compile):
    options = {"learning_rate": 1e-2, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}
    reference = _train(keras.optimizers.Adam(**options))
    fused = _train(FusedAdam(**options), jit_compile=jit_compile)
    initial = _train(FusedAdam(**options), epochs=0)
    for ref, got, start in zip(reference.weights, fused.weights, initial.weights, strict=True):
        moved = np.abs(ref.numpy() - start.numpy()).max()
        assert moved > 1e-2  # the weights did move: the comparison is not trivially true
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-5 * moved)
    for ref, got in zip(reference.optimizer.variables, fused.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-7)


def test_fused_adam_is_deterministic():
    first = _train(FusedAdam(1e-2))
    second = _train(FusedAdam(1e-2))
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_amsgrad_falls_back_to_keras_update():
    reference = _train(keras.optimizers.Adam(1e-2, amsgrad=True))
    fused = _train(FusedAdam(1e-2, amsgrad=True))
    for ref, got in zip(reference.weights, fused.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), ref.numpy())


def test_saved_model_keeps_fused_adam_and_its_state(tmp_path):
    model = _train(FusedAdam(1e-2))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, FusedAdam)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 12
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_zoo_models_compile_with_fused_adam():
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0, learning_rate=3e-4)
    assert isinstance(model.optimizer, FusedAdam)
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(3e-4)
