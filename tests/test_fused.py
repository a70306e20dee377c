"""Fused latent regressors (mdwarf_zoo.training.fused): the same trajectories as separate training,
the same predictions, and the pipeline's regressors unchanged."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import mdwarf_zoo as mz  # noqa: E402
from mdwarf_zoo.pipeline import (  # noqa: E402
    LatentRegressor,
    predict_ensemble,
    stratified_split,
)
from mdwarf_zoo.training.fused import can_fuse, predict_fused, train_fused  # noqa: E402
from mdwarf_zoo.training.loop import fit_resumable  # noqa: E402

SMALL = {"nf1": 8, "nf2": 4, "nu": 8}


def _problem(n: int = 240, latent_dim: int = 8):
    """Two parameters with different stratified split sizes (so one has fewer steps per
    epoch), two seeds each."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, latent_dim)).astype(np.float32)
    labels = np.stack([x[:, 0] + 0.1 * rng.normal(size=n), np.round(x[:, 1])], 1)
    columns, seeds = [0, 0, 1, 1], [11, 12, 21, 22]
    targets = np.stack([
        (labels[:, c] - labels[:, c].mean()) / labels[:, c].std() for c in columns
    ]).astype(np.float32)
    splits = [
        stratified_split(labels[:, c], 0.3, seed=s) for c, s in zip(columns, seeds, strict=True)
    ]
    return x, labels, targets, seeds, splits


def _models(seeds, latent_dim=8, learning_rate=0.01):
    return [
        mz.create_model("latent_cnn", latent_dim=latent_dim, seed=s,
                        learning_rate=learning_rate, **SMALL)
        for s in seeds
    ]


def _batches(x, y, seed, batch_size, epochs):
    """fit_resumable's batch order: default_rng([seed, epoch]).permutation of the rows."""
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for first in range(0, len(x), batch_size):
            rows = order[first : first + batch_size]
            yield x[rows], y[rows]


def _max_difference(a: keras.Model, b: keras.Model) -> float:
    pairs = zip(a.get_weights(), b.get_weights(), strict=True)
    return max(float(np.max(np.abs(u - v))) for u, v in pairs)


def _fused_and_separate(make, x, targets, seeds, splits, epochs, tmp_path):
    """Train ``make(seeds)`` fused, then each seed's model alone with ``fit_resumable`` on the
    same split; yields (fused model, its fused history, separate model, separate history)."""
    fused = make(seeds)
    results = train_fused(fused, x, targets, [t for t, _ in splits], [v for _, v in splits],
                          seeds=seeds, epochs=epochs, batch_size=32, progress=False)
    for k, seed in enumerate(seeds):
        train, val = splits[k]
        separate = make([seed])[0]
        history = fit_resumable(separate, x[train], targets[k][train], epochs=epochs,
                                batch_size=32, seed=seed, checkpoint=tmp_path / f"{k}.npz",
                                validation=(x[val], targets[k][val]), progress=False)
        yield fused[k], results[k], separate, history


def test_fused_training_equals_separate_training(tmp_path):
    x, _, targets, seeds, splits = _problem()
    train_sizes = {len(t) for t, _ in splits}
    assert len(train_sizes) == 2  # the branches have different numbers of steps per epoch
    for fused, result, separate, history in _fused_and_separate(
            _models, x, targets, seeds, splits, 3, tmp_path):
        assert _max_difference(fused, separate) < 1e-5
        np.testing.assert_allclose(result.history["loss"], [h["loss"] for h in history],
                                   rtol=1e-5)
        np.testing.assert_allclose(result.history["val_loss"],
                                   [h["val_loss"] for h in history], rtol=1e-5)


def test_fused_training_of_mixed_precision_models_follows_separate_training(tmp_path):
    # bfloat16 outputs must meet float32 targets (a dtype error before); the loss is float32.
    x, _, targets, seeds, splits = _problem()
    seeds, splits, targets = seeds[:2], splits[:2], targets[:2]

    def models(chosen):
        return [mz.create_model("latent_cnn", latent_dim=8, seed=s, learning_rate=0.01,
                                precision="mixed_bfloat16", **SMALL) for s in chosen]

    for fused, result, separate, history in _fused_and_separate(
            models, x, targets, seeds, splits, 2, tmp_path):
        assert all(w.dtype == np.float32 for w in fused.get_weights())
        # bfloat16 keeps 8 bits of mantissa, and Adam turns its rounding of small gradients
        # into steps of the learning rate: the weights part at ~0.1, the losses stay close.
        np.testing.assert_allclose(result.history["loss"], [h["loss"] for h in history],
                                   rtol=2e-2)
        np.testing.assert_allclose(result.history["val_loss"],
                                   [h["val_loss"] for h in history], rtol=6e-2)
        assert result.history["val_loss"][-1] < 0.8 * result.history["val_loss"][0]


def test_fused_early_stopping_follows_keras_early_stopping():
    x, _, targets, seeds, splits = _problem()
    seeds, splits, targets = seeds[2:], splits[2:], targets[2:]
    fused = _models(seeds, learning_rate=0.05)
    results = train_fused(fused, x, targets, [t for t, _ in splits], [v for _, v in splits],
                          seeds=seeds, epochs=8, batch_size=32, patience=1, progress=False)
    stopped = 0
    for k, seed in enumerate(seeds):
        train, val = splits[k]
        separate = _models([seed], learning_rate=0.05)[0]
        steps = -(-len(train) // 32)
        history = separate.fit(
            _batches(x[train], targets[k][train], seed, 32, 8), epochs=8,
            steps_per_epoch=steps, validation_data=(x[val], targets[k][val]), shuffle=False,
            verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)],
        )
        assert len(results[k].history["val_loss"]) == len(history.history["val_loss"])
        best = int(np.argmin(history.history["val_loss"]))
        assert results[k].best_epoch == best
        assert _max_difference(fused[k], separate) < 1e-5
        stopped += len(history.history["val_loss"]) < 8
    assert stopped  # the check covered a branch that stopped early


def test_fused_training_resumes_to_identical_weights(tmp_path):
    x, _, targets, seeds, splits = _problem()
    args = (x, targets, [t for t, _ in splits], [v for _, v in splits])
    uninterrupted = _models(seeds)
    train_fused(uninterrupted, *args, seeds=seeds, epochs=3, batch_size=32, progress=False)
    checkpoint = tmp_path / "fused.npz"
    first = _models(seeds)
    train_fused(first, *args, seeds=seeds, epochs=1, batch_size=32, checkpoint=checkpoint,
                progress=False)
    resumed = _models(seeds)  # fresh weights: everything must come from the checkpoint
    results = train_fused(resumed, *args, seeds=seeds, epochs=3, batch_size=32,
                          checkpoint=checkpoint, progress=False)
    for a, b in zip(uninterrupted, resumed, strict=True):
        assert _max_difference(a, b) == 0.0
    assert all(len(r.history["loss"]) == 3 for r in results)


@pytest.mark.parametrize("architecture", ["latent_cnn", "latent_mlp"])
def test_predict_fused_matches_each_model(architecture):
    models = [mz.create_model(architecture, latent_dim=8, seed=s) for s in range(5)]
    assert can_fuse(models)
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    fused = predict_fused(models, x, batch_size=128)
    separate = np.stack([np.asarray(m(x)) for m in models])
    np.testing.assert_allclose(fused, separate, atol=1e-5)


def test_predict_fused_exact_is_each_models_predict_bit_for_bit():
    models = [mz.create_model("latent_cnn", latent_dim=8, seed=s) for s in range(3)]
    x = np.random.default_rng(2).normal(size=(37, 8)).astype(np.float32)
    fused = predict_fused(models, x, exact=True)
    for k, model in enumerate(models):
        assert np.array_equal(fused[k], model.predict(x, verbose=0))


def test_predict_fused_falls_back_for_mixed_architectures():
    models = [mz.create_model("latent_cnn", latent_dim=8, seed=0),
              mz.create_model("latent_mlp", latent_dim=8, seed=0)]
    assert not can_fuse(models)
    x = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    np.testing.assert_allclose(predict_fused(models, x),
                               np.stack([np.asarray(m(x)) for m in models]), atol=1e-6)


def test_train_regressors_fused_gives_ordinary_regressors():
    x, labels, _, _, _ = _problem(n=150)
    kwargs = dict.fromkeys(("teff", "logg"), SMALL)
    regressors = mz.train_regressors(x, labels, parameters=["teff", "logg"], seeds=[0, 1],
                                     epochs=2, batch_size=32, regressor_kwargs=kwargs,
                                     fused=True, progress=False)
    assert [(r.parameter, r.seed) for r in regressors] == [
        ("teff", 0), ("teff", 1), ("logg", 0), ("logg", 1)
    ]
    for regressor in regressors:
        assert isinstance(regressor, LatentRegressor)
        assert type(regressor.model).__name__ == "LatentCNN"
        assert len(regressor.history["loss"]) == 2
        assert np.isfinite(regressor.validation_mse)
    predictions, mse = predict_ensemble(regressors, x[:20])
    assert predictions["teff"].shape == (2, 20)
    for regressor, row in zip(regressors[:2], predictions["teff"], strict=True):
        np.testing.assert_allclose(row, regressor.predict(x[:20]), rtol=1e-5, atol=1e-5)
