"""Every registered architecture: build, forward, config round trip, save/load, training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mdwarf_zoo
from mdwarf_zoo.models import ContractiveDense, DenseAutoencoder, mb24_widths
from mdwarf_zoo.models._base import zoo_constructor
from mdwarf_zoo.registry import get_entry

ALL_MODELS = mdwarf_zoo.list_models()
AUTOENCODERS = mdwarf_zoo.list_models(kind="autoencoder")


def sample_inputs(model: keras.Model, n: int = 8, seed: int = 0) -> np.ndarray:
    """Spectrum-like inputs in [0, 1]: a continuum near 0.9 with Gaussian absorption lines."""
    rng = np.random.default_rng(seed)
    length = model.input_shape[1]
    pixels = np.arange(length)
    centres = rng.uniform(0, length, 12)
    widths = rng.uniform(2, 10, 12)
    profiles = np.exp(-0.5 * ((pixels[None] - centres[:, None]) / widths[:, None]) ** 2)
    depths = rng.uniform(0.0, 0.6, (n, 12))
    return (0.9 - 0.8 * np.clip(depths @ profiles, 0, 1)).astype("float32")


def sample_targets(model: keras.Model, x: np.ndarray, seed: int = 1) -> np.ndarray:
    if model.kind == "autoencoder":
        return x
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (len(x), *model.output_shape[1:])).astype("float32")


def test_registry_lists_every_family():
    assert {
        "dense_ae_1024",
        "dense_ae_1280",
        "dense_ae_1536",
        "dense_ae_1792",
        "dense_ae_2048",
        "dense_ae_tiny",
        "conv_ae",
        "conv_ae_tiny",
        "vae_1024",
        "vae_tiny",
        "latent_cnn",
        "latent_mlp",
        "spectrum_cnn",
    } <= set(ALL_MODELS)
    assert mdwarf_zoo.list_models("dense_ae_1*") == [
        "dense_ae_1024",
        "dense_ae_1280",
        "dense_ae_1536",
        "dense_ae_1792",
    ]
    assert set(mdwarf_zoo.list_models(kind="regressor")) >= {
        "latent_cnn",
        "latent_mlp",
        "spectrum_cnn",
    }
    assert mdwarf_zoo.list_models("no_such_*") == []


def test_unknown_name_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'dense_ae_1000'.*dense_ae_1024"):
        mdwarf_zoo.create_model("dense_ae_1000")


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        mdwarf_zoo.register_model("autoencoder")(get_entry("latent_cnn").builder)
    with pytest.raises(ValueError, match="kind must be one of"):
        mdwarf_zoo.register_model("classifier")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_and_range(name):
    model = mdwarf_zoo.create_model(name, seed=0)
    assert model.kind == get_entry(name).kind
    x = sample_inputs(model)
    y = np.asarray(model(x, training=False))
    assert y.shape == (len(x), *model.output_shape[1:])
    assert np.all(np.isfinite(y))
    if model.kind == "autoencoder":
        assert y.shape == x.shape
        assert y.min() >= 0.0 and y.max() <= 1.0
        assert model.encoder(x).shape == (len(x), model.latent_dim)
    # Compiled with its own loss by default.
    assert model.compiled and model.loss == "mse"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_round_trip(name):
    model = mdwarf_zoo.create_model(name, seed=3)
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()
    # Same seed, same initial weights: the config says everything about the model.
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_keras_save_load_identical(name, tmp_path):
    model = mdwarf_zoo.create_model(name, seed=1)
    x = sample_inputs(model)
    model.train_on_batch(x, sample_targets(model, x))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False))
    )


@pytest.mark.parametrize("name", ALL_MODELS)
def test_one_training_step_lowers_loss(name):
    # Plain gradient descent with a small step: what is tested is the wiring (gradients through
    # every loss term, the model's own and the added penalties), not whether Adam's first,
    # sign-like step of the default learning rate overshoots on one batch.
    keras.utils.set_random_seed(0)
    model = mdwarf_zoo.create_model(name, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=model.loss)
    x = sample_inputs(model, n=16)
    y = sample_targets(model, x)
    before = model.evaluate(x, y, verbose=0)
    model.train_on_batch(x, y)
    after = model.evaluate(x, y, verbose=0)
    assert after < before


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_flat_layers_encoder_decoder_share_weights(name):
    model = mdwarf_zoo.create_model(name, seed=0)
    assert isinstance(model.layers[0], keras.layers.InputLayer)
    bottleneck = model.layers[model.bottleneck_index]
    assert bottleneck.units == model.latent_dim
    encoder, decoder = model.encoder, model.decoder
    assert encoder.layers[-1] is bottleneck
    assert all(layer is model.layers[i] for i, layer in enumerate(encoder.layers[1:], start=1))
    decoder_layers = [layer for layer in decoder.layers if layer.weights]
    assert all(any(layer is other for other in model.layers) for layer in decoder_layers)
    x = sample_inputs(model)
    np.testing.assert_allclose(
        np.asarray(decoder(encoder(x))), np.asarray(model(x, training=False)), atol=1e-6
    )


def test_mb24_layout_and_parameter_count():
    model = mdwarf_zoo.create_model("dense_ae_1024")
    assert model.count_params() == 9_874_125
    units = [layer.units for layer in model.layers[1:]]
    assert units == [1024, 768, 512, 256, 128, 32, 128, 256, 512, 768, 1024, 3501]
    assert model.bottleneck_index == 6 and model.default_freeze == 5
    activations = [layer.activation.__name__ for layer in model.layers[1:]]
    assert activations == ["relu"] * 11 + ["sigmoid"]
    # L1 activity regularisation everywhere but the first encoder layer, the bottleneck and
    # the output layer.
    regularised = [layer.activity_regularizer is not None for layer in model.layers[1:]]
    assert regularised == [False, True, True, True, True, False] + [True] * 5 + [False]
    assert model.layers[6].contractive == 1e-4
    for n in (1280, 1536, 1792, 2048):
        widths = [layer.units for layer in mdwarf_zoo.create_model(f"dense_ae_{n}").layers[1:6]]
        assert widths == mb24_widths(n) == [n, 3 * n // 4, n // 2, n // 4, n // 8]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softplus"])
def test_contractive_penalty_equals_numerical_jacobian(activation):
    rng = np.random.default_rng(4)
    layer = ContractiveDense(5, contractive=1.0, activation=activation)
    layer.build((None, 7))
    layer.set_weights(
        [rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=5).astype("float32")]
    )
    x = rng.normal(size=(6, 7)).astype("float64")
    penalty = float(np.asarray(keras.ops.mean(layer.penalty(*_pre_and_post(layer, x)))))

    def forward(v):
        return np.asarray(layer(v.astype("float32"))).astype("float64")

    eps = 1e-3
    norms = []
    for row in x:
        jac = np.stack(
            [
                (forward(row + eps * e[None])[0] - forward(row - eps * e[None])[0]) / (2 * eps)
                for e in np.eye(7)
            ]
        )
        norms.append(np.sum(jac**2))
    assert penalty == pytest.approx(np.mean(norms), rel=2e-3)
    # The layer adds lambda times that penalty to the model losses.
    layer(x.astype("float32"))
    assert float(np.asarray(layer.losses[-1])) == pytest.approx(penalty, rel=1e-5)


def test_mb24_contractive_form_is_their_script_as_written():
    """MB24's loss: sum_j (h_j (1 - h_j))^2 * sum_i W_ij^2 on the ReLU bottleneck output h,
    with the kernel a constant (no gradient through it); the default form differs."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    layer = ContractiveDense(4, contractive=1.0, activation="relu", form="mb24")
    layer.build((None, 6))
    layer.set_weights([rng.normal(size=(6, 4)).astype("float32"),
                       rng.normal(size=4).astype("float32")])
    x = rng.normal(size=(5, 6)).astype("float32")
    pre, h = _pre_and_post(layer, x)
    h_np = np.asarray(h, dtype=np.float64)
    kernel = np.asarray(layer.kernel, dtype=np.float64)
    expected = np.sum((h_np * (1 - h_np)) ** 2 * np.sum(kernel**2, axis=0), axis=1)
    assert np.allclose(np.asarray(layer.penalty(pre, h)), expected, rtol=1e-5)
    with tf.GradientTape() as tape:
        pre, h = _pre_and_post(layer, x)
        value = keras.ops.mean(layer.penalty(pre, h))
    grad_kernel = tape.gradient(value, layer.kernel)
    # Only through h: the kernel enters the penalty as a constant, so d/dW comes from h alone.
    with tf.GradientTape() as tape:
        pre, h = _pre_and_post(layer, x)
        column_norms = tf.constant(np.sum(kernel**2, axis=0), dtype=tf.float32)
        reference = keras.ops.mean(keras.ops.sum(((h * (1 - h)) ** 2) * column_norms, axis=-1))
    assert np.allclose(np.asarray(grad_kernel), np.asarray(tape.gradient(reference, layer.kernel)),
                       rtol=1e-5, atol=1e-7)
    default = ContractiveDense(4, contractive=1.0, activation="relu")
    default.build((None, 6))
    default.set_weights(layer.get_weights())
    assert not np.allclose(np.asarray(default.penalty(*_pre_and_post(default, x))), expected)
    model = DenseAutoencoder(widths=mb24_widths(64), latent_dim=8, contractive_form="mb24", seed=1)
    assert model.layers[model.bottleneck_index].form == "mb24"
    clone = DenseAutoencoder.from_config(model.get_config())
    assert clone.layers[clone.bottleneck_index].form == "mb24"
    assert "contractive_form" not in DenseAutoencoder(widths=mb24_widths(64), latent_dim=8,
                                                      seed=1).get_config()
    with pytest.raises(ValueError, match="contractive_form must be one of"):
        DenseAutoencoder(widths=mb24_widths(64), latent_dim=8, contractive_form="sigmoid")


def _pre_and_post(layer, x):
    pre = keras.ops.matmul(x.astype("float32"), layer.kernel) + layer.bias
    return pre, layer.activation(pre)


def test_penalties_enter_the_training_loss():
    x = sample_inputs(mdwarf_zoo.create_model("dense_ae_tiny"), n=8)
    plain = DenseAutoencoder(widths=mb24_widths(64), latent_dim=8, l1=0.0, contractive=0.0, seed=2)
    penalised = DenseAutoencoder(
        widths=mb24_widths(64), latent_dim=8, l1=0.0, contractive=0.5, seed=2
    )
    hidden = keras.Model(penalised.input, penalised.layers[5].output)(x)
    bottleneck = penalised.layers[6]
    expected = 0.5 * float(
        np.asarray(
            keras.ops.mean(bottleneck.penalty(*_pre_and_post(bottleneck, np.asarray(hidden))))
        )
    )
    assert expected > 0
    difference = penalised.evaluate(x, x, verbose=0) - plain.evaluate(x, x, verbose=0)
    assert difference == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "name, overrides, pattern",
    [
        ("dense_ae_tiny", {"input_length": 0}, r"input_length must be a positive integer, got 0"),
        ("dense_ae_tiny", {"widths": [64, -3]}, r"widths\[1\] must be a positive integer, got -3"),
        ("dense_ae_tiny", {"l1": -1e-7}, r"l1 must be a number >= 0, got -1e-07"),
        ("dense_ae_tiny", {"activation": "gelu"}, r"activation must be one of .*'gelu'"),
        ("dense_ae_tiny", {"learning_rate": 0}, r"learning_rate must be > 0, got 0"),
        ("dense_ae_tiny", {"seed": -1}, r"seed must be None or an integer >= 0, got -1"),
        ("conv_ae_tiny", {"strides": 1.5}, r"strides must be a positive integer, got 1.5"),
        ("vae_tiny", {"kl_weight": float("nan")}, r"kl_weight must be a number >= 0, got nan"),
        ("latent_cnn", {"nf1": "64"}, r"nf1 must be a positive integer, got '64'"),
        ("latent_mlp", {"hidden": "256"}, r"hidden must be a list of positive integers"),
        ("spectrum_cnn", {"input_length": 10}, r"input_length must be at least .* got 10"),
    ],
)
def test_bad_constructor_arguments(name, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        mdwarf_zoo.create_model(name, **overrides)


def test_every_constructor_argument_has_a_check():
    # A new argument must get a rule in ARGUMENT_CHECKS before it can pass unchecked.
    def __init__(self, depth: int = 3, **kwargs):
        super().__init__(**kwargs)

    with pytest.raises(TypeError, match=r"__init__ has unchecked arguments \['depth'\]"):
        zoo_constructor(__init__)


def test_other_windows_and_latent_sizes():
    model = mdwarf_zoo.create_model("dense_ae_tiny", input_length=4001, latent_dim=16)
    assert model.input_shape == (None, 4001) and model.encoder.output_shape == (None, 16)
    conv = mdwarf_zoo.create_model("conv_ae_tiny", input_length=1000)
    assert conv.output_shape == (None, 1000)


def test_vae_is_deterministic_at_inference_and_samples_in_training():
    model = mdwarf_zoo.create_model("vae_tiny", seed=0)
    x = sample_inputs(model)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
    # A large log-variance makes training-mode samples differ from the mean path.
    model.get_layer("latent_log_var").bias.assign(np.zeros(model.latent_dim, "float32"))
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x)))


def test_seeded_models_are_identical_and_seeds_matter():
    a = mdwarf_zoo.create_model("dense_ae_tiny", seed=7).get_weights()
    b = mdwarf_zoo.create_model("dense_ae_tiny", seed=7).get_weights()
    c = mdwarf_zoo.create_model("dense_ae_tiny", seed=8).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=False))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("name", ["dense_ae_tiny", "vae_tiny", "conv_ae_tiny"])
def test_mixed_bfloat16_training_keeps_float32_penalties(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = mdwarf_zoo.create_model(name, seed=0)
        x = sample_inputs(model, n=16)
        loss = model.train_on_batch(x, x)
        model(x, training=True)
        loss_dtypes = {keras.backend.standardize_dtype(term.dtype) for term in model.losses}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(loss)
    assert loss_dtypes == {"float32"}
    weighted = next(layer for layer in model.layers if layer.weights)
    assert weighted.compute_dtype == "bfloat16"
    assert weighted.kernel.dtype == "float32"


def test_mixed_bfloat16_precision_trains_deterministically_with_float32_weights():
    def train():
        keras.utils.set_random_seed(0)
        model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0, precision="mixed_bfloat16")
        x = sample_inputs(model, n=32)
        history = model.fit(x, x, batch_size=16, epochs=2, verbose=0, shuffle=False)
        return model, history.history["loss"]

    model, losses = train()
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.dtype_policy.name == "mixed_bfloat16"
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense and all(layer.compute_dtype == "bfloat16" for layer in dense)
    assert all(w.dtype == "float32" for w in model.weights)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    again, losses_again = train()
    assert losses_again == losses
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A float32 model of the same config reads the weights (what save/load gives).
    plain = mdwarf_zoo.create_model("dense_ae_tiny", seed=0)
    plain.set_weights(model.get_weights())
    x = sample_inputs(model, n=4)
    np.testing.assert_allclose(plain.predict(x, verbose=0),
                               np.asarray(model.predict(x, verbose=0), "float32"), atol=0.02)


def test_unknown_precision_names_the_model_and_the_choices():
    with pytest.raises(ValueError, match=r"create_model\('dense_ae_tiny'\): precision='bf16' "
                                         r"is not one of float32, mixed_bfloat16, mixed_float16"):
        mdwarf_zoo.create_model("dense_ae_tiny", precision="bf16")
