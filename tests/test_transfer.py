"""transfer(): freezing, the untouched original, freeze forms, errors, inputs, determinism."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mdwarf_zoo
from mdwarf_zoo.spectra.grid import MB24_GRID, Spectrum
from mdwarf_zoo.spectra.preprocess import Preprocessor
from mdwarf_zoo.training.transfer import clone_model, resolve_freeze, transfer

TINY_AUTOENCODERS = [
    name for name in mdwarf_zoo.list_models(kind="autoencoder") if name.endswith("_tiny")
]


def observed_like(n: int = 16, length: int = 3501, seed: int = 0) -> np.ndarray:
    """Spectrum-like rows in [0, 1]: a continuum with random Gaussian absorption lines."""
    rng = np.random.default_rng(seed)
    pixels = np.arange(length)
    centres = rng.uniform(0, length, 20)
    widths = rng.uniform(2, 8, 20)
    profiles = np.exp(-0.5 * ((pixels[None] - centres[:, None]) / widths[:, None]) ** 2)
    depths = rng.uniform(0.0, 0.7, (n, 20))
    return (0.95 - 0.8 * np.clip(depths @ profiles, 0, 1)).astype("float32")


def layer_values(model: keras.Model) -> list[list[np.ndarray]]:
    return [[np.array(w) for w in layer.weights] for layer in model.layers]


def test_tiny_variants_cover_every_autoencoder_family():
    families = {type(mdwarf_zoo.create_model(name)).__name__ for name in TINY_AUTOENCODERS}
    assert families == {"DenseAutoencoder", "ConvAutoencoder", "VariationalAutoencoder"}


@pytest.mark.parametrize("name", TINY_AUTOENCODERS)
def test_frozen_layers_bit_identical_others_changed_original_untouched(name):
    model = mdwarf_zoo.create_model(name, seed=1)
    before = layer_values(model)
    freeze = model.default_freeze
    tuned = transfer(model, observed_like(), freeze=freeze, epochs=2, batch_size=8, seed=0)

    assert tuned is not model
    after = layer_values(tuned)
    trained = 0
    for index, layer in enumerate(tuned.layers):
        if not layer.weights:
            continue
        if index < freeze:
            assert not layer.trainable
            for old, new in zip(before[index], after[index], strict=True):
                assert np.array_equal(old, new), f"{name}: frozen layer {layer.name} changed"
        else:
            assert layer.trainable
            assert any(
                not np.array_equal(old, new)
                for old, new in zip(before[index], after[index], strict=True)
            ), f"{name}: trainable layer {layer.name} did not change"
            trained += 1
    assert trained >= 3
    # The model passed in is never changed, neither its weights nor its flags.
    for old, now in zip(before, layer_values(model), strict=True):
        for a, b in zip(old, now, strict=True):
            assert np.array_equal(a, b)
    assert all(layer.trainable for layer in model.layers)
    assert len(tuned.history.history["loss"]) == 2
    assert "val_loss" in tuned.history.history
    assert tuned.transfer_info["frozen_layers"] == list(range(freeze))
    assert tuned.transfer_info["n_train"] + tuned.transfer_info["n_validation"] == 16


def test_mb24_freeze_rule_for_dense_autoencoder():
    model = mdwarf_zoo.create_model("dense_ae_tiny")
    assert model.default_freeze == 5
    assert [model.layers[i].name for i in resolve_freeze(model, 5)] == [
        "spectrum", "encoder_1", "encoder_2", "encoder_3", "encoder_4",
    ]


def test_freeze_forms():
    model = mdwarf_zoo.create_model("dense_ae_tiny")
    n = len(model.layers)
    assert resolve_freeze(model, 0) == []
    assert resolve_freeze(model, 3) == [0, 1, 2]
    assert resolve_freeze(model, -2) == list(range(n - 2))
    assert resolve_freeze(model, slice(1, 4)) == [1, 2, 3]
    assert resolve_freeze(model, slice(None, None, 5)) == list(range(0, n, 5))
    assert resolve_freeze(model, [4, 1, -1, 1]) == [1, 4, n - 1]
    assert resolve_freeze(model, ["encoder_2", "bottleneck"]) == [2, 6]
    assert resolve_freeze(model, "bottleneck") == [6]
    assert resolve_freeze(model, [0, "encoder_1"]) == [0, 1]
    assert resolve_freeze(model, lambda layer: layer.name.startswith("decoder")) == list(
        range(7, 12)
    )


@pytest.mark.parametrize(
    ("freeze", "pattern"),
    [
        (99, "out of range"),
        (-99, "out of range"),
        ([0, 13], "layer index 13 is out of range"),
        (["encoder_9"], "no layer named 'encoder_9'"),
    ],
)
def test_bad_freeze_lists_layers(freeze, pattern):
    model = mdwarf_zoo.create_model("dense_ae_tiny")
    with pytest.raises(ValueError, match=pattern) as info:
        resolve_freeze(model, freeze)
    message = str(info.value)
    assert "0: spectrum (InputLayer" in message
    assert "6: bottleneck (ContractiveDense" in message


def test_bad_arguments():
    model = mdwarf_zoo.create_model("dense_ae_tiny")
    x = observed_like(8)
    with pytest.raises(TypeError, match="freeze"):
        resolve_freeze(model, True)
    with pytest.raises(TypeError, match="freeze"):
        resolve_freeze(model, 2.5)
    with pytest.raises(ValueError, match="no trainable weight"):
        transfer(model, x, freeze=len(model.layers), epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, 3501\)"):
        transfer(model, x[:, :100], freeze=5, epochs=1)
    bad = x.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="spectrum 3 has non-finite flux"):
        transfer(model, bad, freeze=5, epochs=1)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        transfer(model, x, freeze=5, epochs=0)
    with pytest.raises(ValueError, match="validation_split"):
        transfer(model, x, freeze=5, validation_split=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        transfer(model, x, freeze=5, learning_rate=-1.0)
    with pytest.raises(ValueError, match="not an autoencoder"):
        transfer(mdwarf_zoo.create_model("latent_cnn"), np.zeros((4, 32)), freeze=1)
    spectra = [Spectrum(MB24_GRID.wavelength, row) for row in x[:2]]
    with pytest.raises(ValueError, match="carries no Preprocessor"):
        transfer(model, spectra, freeze=5, epochs=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        transfer(model, "/nonexistent/observed.h5", freeze=5, epochs=1)


def test_same_seed_gives_identical_weights_and_default_learning_rate():
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=3, learning_rate=3e-4)
    x = observed_like(12, seed=2)
    first = transfer(model, x, freeze=5, epochs=2, batch_size=4, seed=7)
    second = transfer(model, x, freeze=5, epochs=2, batch_size=4, seed=7)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert first.history.history == second.history.history
    assert float(first.optimizer.learning_rate) == pytest.approx(3e-4)
    assert first.transfer_info["learning_rate"] == pytest.approx(3e-4)


def test_hdf5_set_and_spectrum_list_inputs(tmp_path):
    from mdwarf_zoo.spectra.datasets import SpectrumSet, write_set

    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0)
    x = observed_like(6, seed=4)
    path = write_set(
        tmp_path / "observed.h5",
        SpectrumSet(flux=x, wavelength=MB24_GRID.wavelength, kind="observed",
                    identifiers=[f"J0000{i}+000" for i in range(6)]),
    )
    tuned = transfer(model, path, freeze=5, epochs=1, seed=0, validation_split=0.0,
                     learning_rate=1e-3)
    assert float(tuned.optimizer.learning_rate) == pytest.approx(1e-3)
    assert sorted(tuned.transfer_info["train_identifiers"]) == [f"J0000{i}+000" for i in range(6)]

    # Raw spectra are prepared with the Preprocessor the model carries (set by the hub loader).
    wavelength = np.arange(8790.0, 8845.0, 0.01)
    spectra = [
        Spectrum(wavelength, np.interp(wavelength, MB24_GRID.wavelength, row),
                 metadata={"object": f"star {i}", "source": f"s{i}.fits"})
        for i, row in enumerate(x[:4])
    ]
    model.preprocessor = Preprocessor(MB24_GRID, margin=5.0, normalisation="none")
    tuned = transfer(model, spectra, freeze=5, epochs=1, seed=0, validation_split=0.25)
    assert tuned.transfer_info["n_train"] == 3
    names = tuned.transfer_info["train_identifiers"] + tuned.transfer_info[
        "validation_identifiers"]
    assert sorted(names) == ["star 0", "star 1", "star 2", "star 3"]
    assert tuned.preprocessor == model.preprocessor


def test_frozen_batch_normalization_keeps_statistics():
    spectrum = keras.Input((64,), name="spectrum")
    hidden = keras.layers.Dense(16, activation="relu", name="encoder")(spectrum)
    normed = keras.layers.BatchNormalization(name="norm")(hidden)
    latent = keras.layers.Dense(4, activation="relu", name="bottleneck")(normed)
    output = keras.layers.Dense(64, activation="sigmoid", name="reconstruction")(latent)
    model = keras.Model(spectrum, output, name="bn_ae")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    x = observed_like(32, length=64, seed=5)
    norm_before = [np.array(w) for w in model.get_layer("norm").weights]

    frozen = transfer(model, x, freeze=["encoder", "norm"], epochs=2, batch_size=8, seed=0)
    for old, new in zip(norm_before, frozen.get_layer("norm").weights, strict=True):
        assert np.array_equal(old, np.array(new))
    assert not np.array_equal(
        np.array(model.get_layer("bottleneck").kernel),
        np.array(frozen.get_layer("bottleneck").kernel),
    )
    # The same run with the normalisation trainable does move its statistics.
    free = transfer(model, x, freeze=["encoder"], epochs=2, batch_size=8, seed=0)
    moving_mean = [w for w in free.get_layer("norm").weights if "moving_mean" in w.path][0]
    assert not np.array_equal(np.array(moving_mean), norm_before[2])


def test_clone_model_is_independent():
    model = mdwarf_zoo.create_model("conv_ae_tiny", seed=0)
    copy = clone_model(model)
    assert type(copy) is type(model) and copy.get_config() == model.get_config()
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        assert np.array_equal(a, b)
    copy.layers[2].kernel.assign(np.zeros(copy.layers[2].kernel.shape, "float32"))
    assert np.any(np.array(model.layers[2].kernel) != 0)


def test_model_loaded_from_pretrained_prepares_spectra_with_its_preprocessor(tmp_path):
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0)
    preprocessor = Preprocessor(MB24_GRID, margin=5.0, normalisation="none")
    folder = mdwarf_zoo.save_pretrained(model, tmp_path / "ae", grid=MB24_GRID,
                                        preprocessor=preprocessor)
    loaded = mdwarf_zoo.from_pretrained(folder)
    wavelength = np.arange(8790.0, 8845.0, 0.01)
    spectra = [
        Spectrum(wavelength, np.interp(wavelength, MB24_GRID.wavelength, row),
                 metadata={"OBJECT": f"GJ {i}"})
        for i, row in enumerate(observed_like(3, seed=6))
    ]
    tuned = transfer(loaded, spectra, freeze=5, epochs=1, seed=0, validation_split=0.0)
    assert sorted(tuned.transfer_info["train_identifiers"]) == ["GJ 0", "GJ 1", "GJ 2"]
    # The fine-tuned copy keeps the metadata, so it can be saved and used the same way.
    assert tuned.zoo_metadata is loaded.zoo_metadata


# -- transfer modes and the latent drift ---------------------------------------------------------


def factor_spectra(n: int, seed: int, length: int = 3501, factors: int = 3) -> np.ndarray:
    """Spectra driven by a few hidden factors (as Teff, log g, [M/H] drive real ones): fixed
    lines whose depths are linear in the factors. Two draws with different seeds come from one
    distribution: no domain gap at all."""
    lines = np.random.default_rng(100)
    pixels = np.arange(length)
    centres, widths = lines.uniform(0, length, 40), lines.uniform(2, 6, 40)
    mixing = lines.uniform(0, 1, (factors, 40))
    profiles = np.exp(-0.5 * ((pixels[None] - centres[:, None]) / widths[:, None]) ** 2)
    hidden = np.random.default_rng(seed).uniform(0, 1, (n, factors))
    depths = 0.6 * (hidden @ mixing) / factors
    return (0.95 - 0.8 * np.clip(depths @ profiles, 0, 1)).astype("float32")


@pytest.fixture(scope="module")
def pretrained_on_factors():
    synthetic = factor_spectra(200, seed=0)
    keras.utils.set_random_seed(0)
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=3, learning_rate=1e-3)
    model.fit(synthetic, synthetic, epochs=30, batch_size=16, verbose=0, shuffle=True)
    return model, synthetic, factor_spectra(64, seed=1)


def test_anchored_transfer_holds_the_synthetic_latents_where_mb24_moves_them(
    pretrained_on_factors,
):
    """No domain gap at all, yet MB24's transfer re-codes the latent space (the regressors'
    coordinates); the anchored mode holds it (< 0.05 sigma) and reconstructs as well; the
    decoder-only mode cannot move it."""
    from mdwarf_zoo.diagnostics import LatentDriftWarning

    model, synthetic, observed = pretrained_on_factors
    options = {"freeze": model.default_freeze, "epochs": 12, "batch_size": 16, "seed": 0,
               "learning_rate": 1e-4, "anchor_spectra": synthetic}  # MB24: 1e-4
    with pytest.warns(LatentDriftWarning, match="sigma"):
        mb24 = transfer(model, observed, **options)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", LatentDriftWarning)
        anchored = transfer(model, observed, mode="anchored", **options)
        decoder = transfer(model, observed, mode="decoder_only", **options)
    assert mb24.transfer_info["latent_drift"] > 0.3
    assert anchored.transfer_info["latent_drift"] < 0.05
    assert decoder.transfer_info["latent_drift"] == 0.0
    assert anchored.transfer_info["mode"] == "anchored"
    assert anchored.transfer_info["anchor_weight"] == 1.0
    assert anchored.transfer_info["n_anchor"] == 200

    def mse(m):
        return float(np.mean((m.predict(observed, verbose=0) - observed) ** 2))

    assert mse(anchored) <= 1.1 * mse(mb24)
    assert mse(decoder) <= 1.1 * mse(mb24)
    # decoder_only: every layer up to the bottleneck is frozen and bit-identical.
    assert decoder.transfer_info["frozen_layers"] == list(range(model.bottleneck_index + 1))
    for index in range(model.bottleneck_index + 1):
        for old, new in zip(model.layers[index].weights, decoder.layers[index].weights,
                            strict=True):
            assert np.array_equal(np.array(old), np.array(new))
    # The anchored copy is an ordinary autoencoder again: it saves and predicts on its own.
    assert anchored.input_shape == model.input_shape and anchored.optimizer is not None


def test_transfer_mode_errors(pretrained_on_factors):
    model, synthetic, observed = pretrained_on_factors
    with pytest.raises(ValueError, match="mode must be one of"):
        transfer(model, observed, freeze=5, epochs=1, mode="anchor")
    with pytest.raises(ValueError, match="needs anchor_spectra"):
        transfer(model, observed, freeze=5, epochs=1, mode="anchored")
    with pytest.raises(ValueError, match="anchor_weight is a setting of mode='anchored'"):
        transfer(model, observed, freeze=5, epochs=1, anchor_weight=2.0)
    with pytest.raises(ValueError, match="anchor_weight must be a number >= 0"):
        transfer(model, observed, freeze=5, epochs=1, mode="anchored",
                 anchor_spectra=synthetic, anchor_weight=-1.0)
    with pytest.raises(ValueError, match="anchor_spectra: expected an array of shape"):
        transfer(model, observed, freeze=5, epochs=1, mode="anchored",
                 anchor_spectra=synthetic[:, :100])


def test_latent_drift_is_the_rms_mean_shift_in_sigma():
    from mdwarf_zoo.diagnostics import drift_of_latents

    rng = np.random.default_rng(0)
    before = rng.normal(0.0, [1.0, 2.0, 0.5], (500, 3))
    shift = np.array([0.3, -0.2, 0.0])
    expected = np.sqrt(np.mean((shift / before.std(axis=0)) ** 2))
    assert drift_of_latents(before, before + shift) == pytest.approx(expected, rel=1e-12)
    assert drift_of_latents(before, before) == 0.0
    # A dead dimension (no spread under the original encoder) is left out.
    dead = np.column_stack([before, np.zeros(500)])
    moved = np.column_stack([before + shift, np.full(500, 3.0)])
    assert drift_of_latents(dead, moved) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="same >= 2 synthetic spectra"):
        drift_of_latents(before, before[:10])
