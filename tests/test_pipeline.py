"""The reference pipeline: label scaling, stratified split, latents, regressors, end to end."""

from __future__ import annotations

import numpy as np
import pytest

import mdwarf_zoo
from mdwarf_zoo.pipeline import (
    LabelScaler,
    LatentRegressor,
    LatentScaler,
    RegressorStore,
    align_latents,
    alignment_uncertainty,
    latents,
    predict_ensemble,
    run_pipeline,
    stratified_split,
    train_regressors,
)

PIXELS = 3501


def toy_labels(n: int, seed: int) -> np.ndarray:
    """Labels on MB24-like grids: Teff 25 K steps, log g 0.1, [M/H] 0.1, v sin i set."""
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.choice(np.arange(2400, 4001, 25), n),
        rng.choice(np.round(np.arange(4.7, 5.31, 0.1), 1), n),
        rng.choice(np.round(np.arange(-0.5, 0.51, 0.1), 1), n),
        rng.choice([1.5, 2.0, 3.0, 5.0, 10.0], n),
    ]).astype(float)


def toy_spectra(labels: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Spectra whose line depths and widths follow the labels; ``shift`` mimics a domain gap."""
    pixels = np.arange(PIXELS)
    centres = np.linspace(100, PIXELS - 100, 30)
    teff, logg, mh, vsini = (labels[:, i : i + 1] for i in range(4))
    depth = 0.2 + 0.5 * (4000 - teff) / 1600 + 0.2 * mh + 0.1 * (logg - 5.0)
    width = 3.0 + vsini / 3.0
    profiles = np.exp(-0.5 * ((pixels[None, None] - centres[None, :, None]) / width[..., None])
                      ** 2)
    flux = 0.95 - np.clip(depth[..., None] * profiles, 0, 0.9).sum(axis=1)
    return np.clip(flux * (1.0 - shift) + shift * 0.5, 0, 1).astype("float32")


def test_label_scaler_round_trip_and_errors():
    labels = toy_labels(50, 0)
    scaler = LabelScaler.fit(labels)
    scaled = scaler.transform(labels)
    assert np.allclose(scaled.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(scaled.std(axis=0), 1)
    assert np.allclose(scaler.inverse_transform(scaled), labels)
    assert np.allclose(scaler.inverse_transform(scaled[:, 0], "teff"), labels[:, 0])
    again = LabelScaler.from_dict(scaler.to_dict())
    assert again.names == ("teff", "logg", "mh", "vsini")
    assert np.array_equal(again.mean, scaler.mean) and np.array_equal(again.std, scaler.std)
    assert scaler.to_dict()["units"] == ["K", "dex", "dex", "km / s"]
    constant = labels.copy()
    constant[:, 1] = 5.0
    with pytest.raises(ValueError, match=r"\['logg'\] are constant"):
        LabelScaler.fit(constant)
    with pytest.raises(ValueError, match=r"expected shape \(n, 4\)"):
        LabelScaler.fit(labels[:, :3])
    with pytest.raises(ValueError, match="unknown column"):
        scaler.transform(labels[:, 0], "feh")


def test_stratified_split_follows_the_label_distribution():
    rng = np.random.default_rng(1)
    gridded = rng.choice([1.5, 2.0, 3.0, 10.0, 30.0], 1000, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    train, val = stratified_split(gridded, 0.3, seed=0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(1000))
    for value in np.unique(gridded):
        total = np.sum(gridded == value)
        assert abs(np.sum(gridded[val] == value) - 0.3 * total) <= 0.5
    continuous = rng.normal(3300, 300, 2000)
    train, val = stratified_split(continuous, 0.3, seed=0)
    assert len(val) == pytest.approx(600, abs=10)
    assert np.quantile(continuous[val], [0.1, 0.5, 0.9]) == pytest.approx(
        np.quantile(continuous, [0.1, 0.5, 0.9]), abs=30
    )
    assert np.array_equal(stratified_split(continuous, 0.3, seed=4)[1],
                          stratified_split(continuous, 0.3, seed=4)[1])
    with pytest.raises(ValueError, match="validation_fraction"):
        stratified_split(continuous, 1.5)
    with pytest.raises(ValueError, match="need more samples"):
        stratified_split([1.0, 2.0], 0.3)


def test_regressors_learn_a_known_mapping_and_predict_physical_units():
    rng = np.random.default_rng(2)
    latent = rng.normal(0, 1, (400, 8)).astype("float32")
    teff = 3300.0 + 300.0 * latent[:, 0] - 100.0 * latent[:, 1]
    regressors = train_regressors(
        latent, teff[:, None], parameters=["teff"], seeds=[0, 1], architecture="latent_mlp",
        regressor_kwargs={"teff": {"hidden": [32, 16], "learning_rate": 1e-2}}, epochs=25,
        batch_size=64, progress=False, autoencoder="toy",
    )
    assert [(r.parameter, r.seed, r.autoencoder) for r in regressors] == [
        ("teff", 0, "toy"), ("teff", 1, "toy"),
    ]
    for regressor in regressors:
        assert regressor.validation_rms < 60.0  # the label spread is ~316 K
        assert regressor.validation_mse == pytest.approx(
            (regressor.validation_rms / regressor.scaler.std[0]) ** 2
        )
        assert len(regressor.history["val_loss"]) == 25
    test = rng.normal(0, 1, (50, 8)).astype("float32")
    predictions, mse = predict_ensemble(regressors, test)
    assert predictions["teff"].shape == (2, 50) and mse["teff"].shape == (2,)
    truth = 3300.0 + 300.0 * test[:, 0] - 100.0 * test[:, 1]
    assert np.sqrt(np.mean((predictions["teff"].mean(axis=0) - truth) ** 2)) < 80.0
    with pytest.raises(ValueError, match="no observed latents for autoencoder 'toy'"):
        predict_ensemble(regressors, {"other": test})
    with pytest.raises(ValueError, match="unknown parameter"):
        train_regressors(latent, teff[:, None], parameters=["feh"])
    with pytest.raises(ValueError, match="to match the labels"):
        train_regressors(latent[:10], teff[:, None], parameters=["teff"])


def test_latent_scaler_standardises_and_keeps_dead_units_finite():
    rng = np.random.default_rng(3)
    raw = np.column_stack([rng.normal(50.0, 20.0, 200), np.zeros(200), rng.normal(0, 1e-3, 200)])
    scaler = LatentScaler.fit(raw)
    scaled = scaler.transform(raw)
    assert scaled.dtype == np.float32
    assert np.allclose(scaled.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(scaled.std(axis=0), [1, 0, 1], atol=1e-4)  # the dead unit maps to 0
    again = LatentScaler.from_dict(scaler.to_dict())
    assert np.array_equal(again.mean, scaler.mean) and np.array_equal(again.std, scaler.std)
    with pytest.raises(ValueError, match="fitted on 3-d latents"):
        scaler.transform(raw[:, :2])
    with pytest.raises(ValueError, match="standard deviations > 0"):
        LatentScaler([0.0], [0.0])


def test_standardized_latents_make_regressors_blind_to_the_latent_scale():
    rng = np.random.default_rng(5)
    latent = rng.normal(0, 1, (300, 6)).astype("float32")
    teff = 3300.0 + 300.0 * latent[:, 0] - 100.0 * latent[:, 1]
    options = {"parameters": ["teff"], "seeds": [0], "architecture": "latent_mlp",
               "regressor_kwargs": {"teff": {"hidden": [16], "learning_rate": 1e-2}},
               "epochs": 5, "batch_size": 64, "progress": False, "standardize_latents": True}
    # A ReLU bottleneck's latents: offsets and ranges of hundreds; the scaler removes them.
    stretched = latent * 400.0 + 900.0
    (plain,) = train_regressors(latent, teff[:, None], **options)
    (wide,) = train_regressors(stretched, teff[:, None], **options)
    assert wide.latent_scaler is not None
    assert np.allclose(wide.latent_scaler.mean, stretched.mean(axis=0), rtol=1e-4)
    test = rng.normal(0, 1, (40, 6)).astype("float32")
    assert np.allclose(wide.predict(test * 400.0 + 900.0), plain.predict(test), atol=0.5)
    assert np.allclose(
        wide.predict(test * 400.0 + 900.0),
        wide.scaler.inverse_transform(
            wide.model.predict(wide.latent_scaler.transform(test * 400.0 + 900.0),
                               verbose=0)[:, 0], "teff"),
        atol=1e-3,
    )
    (raw,) = train_regressors(stretched, teff[:, None],
                              **{**options, "standardize_latents": False})
    assert raw.latent_scaler is None
    assert not np.allclose(raw.predict(test * 400.0 + 900.0), wide.predict(test * 400.0 + 900.0),
                           atol=0.5)


def test_latents_use_original_for_synthetic_and_chosen_encoder_for_observed():
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0)
    labels = toy_labels(24, 3)
    synthetic, observed = toy_spectra(labels), toy_spectra(labels, shift=0.2)
    tuned = mdwarf_zoo.transfer(model, observed, freeze=5, epochs=3, batch_size=8, seed=0,
                                learning_rate=1e-3)
    syn_a, obs_a = latents(model, synthetic, observed, fine_tuned=tuned)
    syn_b, obs_b = latents(model, synthetic, observed, observed_encoder="original")
    assert np.array_equal(syn_a, syn_b)
    assert np.allclose(obs_b, model.encoder.predict(observed, verbose=0))
    assert np.allclose(obs_a, tuned.encoder.predict(observed, verbose=0))
    assert not np.allclose(obs_a, obs_b)
    syn_c, obs_c = latents(model, synthetic, observed, fine_tuned=tuned,
                           synthetic_encoder="fine_tuned")
    assert np.allclose(syn_c, tuned.encoder.predict(synthetic, verbose=0))
    assert np.array_equal(obs_c, obs_a)
    with pytest.raises(ValueError, match="needs fine_tuned"):
        latents(model, synthetic, observed)
    with pytest.raises(ValueError, match="observed_encoder must be one of"):
        latents(model, synthetic, observed, observed_encoder="both")


def tiny_autoencoders(synthetic: np.ndarray, epochs: int = 0) -> dict:
    autoencoders = {
        "dense": mdwarf_zoo.create_model("dense_ae_tiny", seed=0),
        "vae": mdwarf_zoo.create_model("vae_tiny", seed=0),
    }
    if epochs:
        for model in autoencoders.values():
            model.fit(synthetic, synthetic, epochs=epochs, batch_size=32, verbose=0)
    return autoencoders


def test_run_pipeline_end_to_end_on_two_autoencoders():
    syn_labels = toy_labels(160, 4)
    obs_labels = toy_labels(10, 5)
    synthetic = toy_spectra(syn_labels)
    observed = toy_spectra(obs_labels, shift=0.05)
    autoencoders = tiny_autoencoders(synthetic)
    ids = [f"J{i:05d}+000" for i in range(10)]
    result = run_pipeline(
        autoencoders, synthetic, syn_labels[:, :2], observed, parameters=("teff", "logg"),
        transfer_options={"epochs": 1, "batch_size": 8, "seed": 0},
        seeds=[0], keep=1, identifiers=ids, epochs=2, batch_size=64,
        architecture="latent_mlp", regressor_kwargs={"teff": {"hidden": [16]}},
        progress=False,
    )
    table = result.table
    assert len(table) == 10 and list(table["id"]) == ids
    assert table.colnames == ["id", "teff", "teff_err_lower", "teff_err_upper", "logg",
                              "logg_err_lower", "logg_err_upper"]
    assert str(table["teff"].unit) == "K" and str(table["logg_err_upper"].unit) == "dex"
    assert table.meta["n_regressors"] == {"teff": 1, "logg": 1}
    assert table.meta["observed_encoder"] == "fine_tuned"
    # 2 autoencoders x 1 seed trained; the best 1 per parameter predicts.
    assert result.predictions["logg"].shape == (1, 10)
    assert set(result.fine_tuned) == {"dense", "vae"}
    assert result.synthetic_latents["vae"].shape == (160, 8)
    assert len(result.regressors) == 2 * 2
    # Predictions come back in physical units, near the label ranges.
    assert 2000 < float(np.median(result.predictions["teff"])) < 4500
    assert 4.0 < float(np.median(result.predictions["logg"])) < 6.0

    no_transfer = run_pipeline(
        autoencoders["dense"], synthetic, syn_labels[:, :1], observed, parameters=("teff",),
        observed_encoder="original", seeds=[0], keep=None, epochs=1,
        architecture="latent_mlp", progress=False,
    )
    assert no_transfer.fine_tuned == {}
    assert list(no_transfer.table["id"]) == [f"spectrum_{i}" for i in range(10)]
    with pytest.raises(ValueError, match="label rows"):
        run_pipeline(autoencoders["dense"], synthetic, syn_labels[:10], observed)


@pytest.mark.slow
def test_run_pipeline_all_four_parameters_with_latent_cnn():
    syn_labels = toy_labels(400, 6)
    synthetic = toy_spectra(syn_labels)
    observed = toy_spectra(toy_labels(20, 7), shift=0.05)
    result = run_pipeline(
        tiny_autoencoders(synthetic, epochs=2), synthetic, syn_labels, observed,
        transfer_options={"epochs": 3, "batch_size": 16, "seed": 0},
        seeds=[0, 1, 2], keep=4, epochs=5, progress=False,
    )
    assert result.predictions["vsini"].shape == (6, 20)
    assert [str(result.table[p].unit) for p in ("teff", "logg", "mh", "vsini")] == [
        "K", "dex", "dex", "km / s",
    ]
    assert result.table.meta["n_regressors"] == {"teff": 4, "logg": 4, "mh": 4, "vsini": 4}


def _latent_world(n: int, seed: int):
    """Labels (teff-like, mh-like) and correlated 4-d latents that depend linearly on them."""
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(2400, 4000, n), rng.uniform(-0.5, 0.5, n)])
    scaled = (labels - [3200, 0.0]) / [460, 0.29]
    mixing = np.array([[1.0, 0.5, -0.3, 0.2], [0.4, -1.0, 0.6, 0.1]])
    latent = scaled @ mixing + 0.05 * rng.normal(size=(n, 4))
    return labels, latent


def _linear_fit(latent, labels):
    design = np.c_[np.ones(len(latent)), latent]
    weights = np.linalg.lstsq(design, labels, rcond=None)[0]
    return lambda z: np.c_[np.ones(len(z)), z] @ weights


def test_coral_matches_moments_and_undoes_an_affine_gap():
    syn_labels, synthetic = _latent_world(2000, 0)
    obs_labels, clean = _latent_world(400, 1)
    gap = np.diag([1.6, 0.7, 1.2, 0.9])
    observed = clean @ gap + [0.8, -0.5, 0.3, 0.2]  # the same population seen through a gap
    exact = align_latents(observed, synthetic, eps=1e-12)
    np.testing.assert_allclose(exact.mean(axis=0), synthetic.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(np.cov(exact, rowvar=False), np.cov(synthetic, rowvar=False),
                               atol=1e-8)
    aligned = align_latents(observed, synthetic)  # the default ridge, eps = 1e-3
    predict = _linear_fit(synthetic, syn_labels)
    before = np.sqrt(np.mean((predict(observed) - obs_labels) ** 2, axis=0))
    after = np.sqrt(np.mean((predict(aligned) - obs_labels) ** 2, axis=0))
    assert np.all(after < before / 3), (before, after)


def test_coral_neighbours_keeps_a_population_that_differs_from_the_synthetic_set():
    syn_labels, synthetic = _latent_world(3000, 2)
    obs_labels, observed = _latent_world(1500, 3)
    cool = obs_labels[:, 0] < 3000  # a cool-only population: not the synthetic distribution
    obs_labels, observed = obs_labels[cool], observed[cool]
    predict = _linear_fit(synthetic, syn_labels)
    error = {
        "none": predict(observed) - obs_labels,
        "coral": predict(align_latents(observed, synthetic)) - obs_labels,
        "coral_neighbours": predict(align_latents(
            observed, synthetic, method="coral_neighbours", synthetic_labels=syn_labels,
            observed_labels=predict(observed), neighbours=20,
        )) - obs_labels,
    }
    teff_bias = {name: abs(float(e[:, 0].mean())) for name, e in error.items()}
    # Plain CORAL drags the cool stars towards the mean Teff of the whole synthetic set.
    assert teff_bias["coral"] > 150
    assert teff_bias["coral_neighbours"] < 40 and teff_bias["none"] < 40


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"method": "pca"}, r"method='pca' is not one of coral, coral_neighbours"),
        ({"method": "coral_neighbours"}, r"needs synthetic_labels and observed_labels"),
        (
            {"method": "coral_neighbours", "synthetic_labels": np.zeros((5, 2)),
             "observed_labels": np.zeros((40, 2))},
            r"200 synthetic latents but 5 label rows",
        ),
        (
            {"method": "coral_neighbours", "synthetic_labels": np.zeros((200, 2)),
             "observed_labels": np.zeros((40, 3))},
            r"with the same k, got \(200, 2\) and \(40, 3\)",
        ),
    ],
)
def test_align_latents_errors_name_the_problem(kwargs, pattern):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=pattern):
        align_latents(rng.normal(size=(40, 4)), rng.normal(size=(200, 4)), **kwargs)


def test_align_latents_refuses_shapes_and_too_few_spectra():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"same d, got \(40, 4\) and \(200, 3\)"):
        align_latents(rng.normal(size=(40, 4)), rng.normal(size=(200, 3)))
    with pytest.raises(ValueError, match="6 observed latents for a 4-d latent space; at least 8"):
        align_latents(rng.normal(size=(6, 4)), rng.normal(size=(200, 4)))


def test_fit_rows_fits_the_map_on_those_rows_and_applies_it_to_all():
    syn_labels, synthetic = _latent_world(2000, 6)
    obs_labels, observed = _latent_world(300, 7)
    observed = observed @ np.diag([1.3, 0.8, 1.1, 0.9]) + 0.4
    np.testing.assert_allclose(align_latents(observed, synthetic, fit_rows=np.arange(300)),
                               align_latents(observed, synthetic))
    rows = np.arange(0, 300, 2)
    on_rows = align_latents(observed[rows], synthetic)
    np.testing.assert_allclose(align_latents(observed, synthetic, fit_rows=rows)[rows], on_rows,
                               atol=1e-10)
    # A bootstrap draw (repeated rows) defines a different map, applied to every row.
    draw = np.random.default_rng(0).integers(0, 300, 300)
    drawn = align_latents(observed, synthetic, fit_rows=draw)
    assert drawn.shape == observed.shape and not np.allclose(drawn, align_latents(observed,
                                                                                  synthetic))
    neighbours = align_latents(observed, synthetic, method="coral_neighbours",
                               synthetic_labels=syn_labels, observed_labels=obs_labels,
                               fit_rows=draw)
    assert neighbours.shape == observed.shape and np.all(np.isfinite(neighbours))
    with pytest.raises(ValueError, match=r"fit_rows must be a 1-d array of row indices in 0..299"):
        align_latents(observed, synthetic, fit_rows=np.array([0, 300]))
    with pytest.raises(ValueError, match="fit_rows must be"):
        align_latents(observed, synthetic, fit_rows=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="4 observed latents for a 4-d latent space"):
        align_latents(observed, synthetic, fit_rows=np.arange(4))


def _linear_regressors(synthetic, syn_labels):
    """Real Keras Dense(1) regressors (one per label column) set to the least-squares fit."""
    import keras

    scaler = LabelScaler.fit(syn_labels, ("teff", "mh"))
    scaled = scaler.transform(syn_labels)
    design = np.c_[np.ones(len(synthetic)), synthetic]
    weights = np.linalg.lstsq(design, scaled, rcond=None)[0]
    out = []
    for j, parameter in enumerate(("teff", "mh")):
        model = keras.Sequential([keras.Input((synthetic.shape[1],)), keras.layers.Dense(1)])
        model.layers[0].set_weights([weights[1:, j:j + 1].astype("float32"),
                                     weights[:1, j].astype("float32")])
        out.append(LatentRegressor(parameter, "ae", 0, model, scaler, 0.01, 10.0))
    return out


def test_alignment_uncertainty_shrinks_as_the_observed_sample_grows():
    syn_labels, synthetic = _latent_world(4000, 8)
    regressors = _linear_regressors(synthetic, syn_labels)
    gap = np.diag([1.4, 0.8, 1.2, 0.9])
    spread = {}
    for n in (100, 1600):
        _, observed = _latent_world(n, 9)
        observed = observed @ gap + 0.3
        errors = alignment_uncertainty(regressors, {"ae": observed}, {"ae": synthetic},
                                       syn_labels, method="coral", parameters=("teff", "mh"),
                                       resamples=40, seed=1)
        assert set(errors) == {"teff", "mh"} and errors["teff"].shape == (n,)
        assert np.all(np.isfinite(errors["teff"])) and np.all(errors["teff"] > 0)
        spread[n] = float(np.median(errors["teff"]))
        again = alignment_uncertainty(regressors, {"ae": observed}, {"ae": synthetic},
                                      syn_labels, method="coral", parameters=("teff", "mh"),
                                      resamples=40, seed=1)
        np.testing.assert_array_equal(again["teff"], errors["teff"])  # seeded
    # A bootstrap spread falls as 1/sqrt(n): 16 x the stars, about a quarter of the spread.
    assert 2.5 < spread[100] / spread[1600] < 6.5, spread
    _, observed = _latent_world(300, 10)
    neighbours = alignment_uncertainty(
        regressors, {"ae": observed}, {"ae": synthetic}, syn_labels,
        method="coral_neighbours", parameters=("teff", "mh"), neighbours=10, resamples=5)
    assert neighbours["mh"].shape == (300,) and np.all(neighbours["mh"] > 0)
    with pytest.raises(ValueError, match="resamples must be >= 2, got 1"):
        alignment_uncertainty(regressors, {"ae": observed}, {"ae": synthetic}, syn_labels,
                              method="coral", parameters=("teff", "mh"), resamples=1)


def test_run_pipeline_aligns_the_observed_latents_when_asked():
    syn_labels = toy_labels(160, 4)
    obs_labels = toy_labels(40, 5)
    synthetic = toy_spectra(syn_labels)
    observed = toy_spectra(obs_labels, shift=0.05)
    autoencoder = tiny_autoencoders(synthetic)["dense"]
    options = {"parameters": ("teff",), "observed_encoder": "original", "seeds": [0],
               "keep": None, "epochs": 1, "architecture": "latent_mlp", "progress": False}
    plain = run_pipeline(autoencoder, synthetic, syn_labels[:, :1], observed, **options)
    aligned = run_pipeline(autoencoder, synthetic, syn_labels[:, :1], observed,
                           latent_alignment="coral_neighbours", alignment_neighbours=5,
                           **options)
    assert plain.table.meta["latent_alignment"] == "none"
    assert aligned.table.meta["latent_alignment"] == "coral_neighbours"
    (z_plain,), (z_aligned,) = plain.observed_latents.values(), aligned.observed_latents.values()
    assert z_aligned.shape == z_plain.shape and not np.allclose(z_aligned, z_plain)
    assert not np.allclose(aligned.predictions["teff"], plain.predictions["teff"])
    # The alignment's bootstrap spread is added to the errors (alignment_resamples=0: not).
    bare = run_pipeline(autoencoder, synthetic, syn_labels[:, :1], observed,
                        latent_alignment="coral_neighbours", alignment_neighbours=5,
                        alignment_resamples=0, **options)
    np.testing.assert_allclose(bare.table["teff"], aligned.table["teff"])
    for side in ("lower", "upper"):
        widened = np.asarray(aligned.table[f"teff_err_{side}"])
        assert np.all(widened >= np.asarray(bare.table[f"teff_err_{side}"]))
        assert np.any(widened > np.asarray(bare.table[f"teff_err_{side}"]))
    assert "alignment bootstrap" in aligned.table.meta["errors"]
    assert "alignment_error" not in bare.table.meta
    with pytest.raises(ValueError, match="latent_alignment must be None or one of coral"):
        run_pipeline(autoencoder, synthetic, syn_labels[:, :1], observed,
                     latent_alignment="mmd", **options)


def test_train_regressors_loads_what_its_store_already_has():
    """A store that has a regressor (a resumed run's folder) gives it back instead of training
    it again, for the one-by-one and the fused trainer alike."""

    class Memory(RegressorStore):
        def __init__(self):
            self.saved = {}

        def load(self, job):
            model = self.saved.get(job.name)
            return model is not None, model

        def save(self, regressor, job, history, fused):
            self.saved[job.name] = regressor.model

    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(60, 8)), rng.uniform(3000, 4000, (60, 1))
    tiny = {"teff": {"nf1": 4, "nf2": 4, "nu": 4}}
    for fused in (False, True):
        store = Memory()
        options = {"parameters": ["teff"], "seeds": [0, 1], "epochs": 1, "progress": False,
                   "regressor_kwargs": tiny, "fused": fused, "store": store}
        first = train_regressors(z, labels, **options)
        assert sorted(store.saved) == ["teff_seed0", "teff_seed1"]
        again = train_regressors(z, labels, **options)
        assert all(a.model is b.model for a, b in zip(first, again, strict=True))
        assert [r.validation_mse for r in again] == [r.validation_mse for r in first]
        assert all(r.history == {} != b.history for r, b in zip(again, first, strict=True))
