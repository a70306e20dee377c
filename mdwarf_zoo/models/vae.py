"""A dense variational autoencoder (Kingma & Welling 2014) with the MB24 layer conventions."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import (
    ACTIVATIONS,
    Autoencoder,
    GaussianSampling,
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_widths,
    initializer,
)
from mdwarf_zoo.models.dense_ae import mb24_widths
from mdwarf_zoo.registry import register_model


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class VariationalAutoencoder(Autoencoder):
    """Dense VAE with a Gaussian latent.

    Layers: ``InputLayer`` -> dense encoder (``widths``) -> ``latent_mean`` (the bottleneck,
    what ``model.encoder`` returns) -> ``latent_log_var`` -> ``GaussianSampling`` (draws while
    training, the mean otherwise) -> mirrored dense decoder -> sigmoid output.

    Args:
        input_length: pixels per spectrum.
        widths: encoder widths, first to last; the decoder mirrors them.
        latent_dim: size of the Gaussian latent.
        activation: hidden activation.
        kl_weight: weight of the KL term against the per-pixel MSE (a beta-VAE weight).
        learning_rate: Adam learning rate of the default compilation.
        seed: seed of the initialisers and of the sampling noise.

    Raises:
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> vae = mdwarf_zoo.create_model("vae_tiny")
        >>> vae.encoder.output_shape
        (None, 8)
    """

    def __init__(
        self,
        input_length: int = 3501,
        widths: Sequence[int] = (1024, 768, 512, 256, 128),
        latent_dim: int = 32,
        activation: str = "relu",
        kl_weight: float = 1e-5,
        learning_rate: float = 1e-4,
        seed: int | None = None,
        **kwargs,
    ):
        owner = type(self).__name__
        input_length = check_positive_int(owner, "input_length", input_length)
        widths = check_widths(owner, "widths", widths)
        latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        activation = check_choice(owner, "activation", activation, ACTIVATIONS)
        kl_weight = check_nonnegative_float(owner, "kl_weight", kl_weight)
        learning_rate = check_positive_float(owner, "learning_rate", learning_rate)
        seed = check_seed(owner, seed)
        n = len(widths)

        # === Layers ===
        encoder_layers = [
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer=initializer(seed, i),
                name=f"encoder_{i + 1}",
            )
            for i, width in enumerate(widths)
        ]
        # Start the log-variance small so early samples stay close to the mean.
        latent_mean = keras.layers.Dense(
            latent_dim, kernel_initializer=initializer(seed, n), name="latent_mean"
        )
        latent_log_var = keras.layers.Dense(
            latent_dim,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(-6.0),
            name="latent_log_var",
        )
        sampling = GaussianSampling(kl_weight=kl_weight, seed=seed, name="sampling")
        decoder_layers = [
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer=initializer(seed, n + 1 + i),
                name=f"decoder_{i + 1}",
            )
            for i, width in enumerate(reversed(widths))
        ]
        decoder_layers.append(
            keras.layers.Dense(
                input_length,
                activation="sigmoid",
                kernel_initializer=initializer(seed, 2 * n + 1),
                name="reconstruction",
            )
        )

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        x = spectrum
        for layer in encoder_layers:
            x = layer(x)
        mean = latent_mean(x)
        log_var = latent_log_var(x)
        x = sampling([mean, log_var])
        for layer in decoder_layers:
            x = layer(x)
        super().__init__(inputs=spectrum, outputs=x, **kwargs)

        # === Config ===
        self.store_config(
            input_length=input_length,
            widths=widths,
            latent_dim=latent_dim,
            activation=activation,
            kl_weight=kl_weight,
            learning_rate=learning_rate,
            seed=seed,
        )
        names = [layer.name for layer in self.layers]
        self._bottleneck_index = names.index("latent_mean")
        self._decoder_start = names.index("sampling") + 1
        self.compile_default()


@register_model("autoencoder")
def vae_1024(**overrides) -> VariationalAutoencoder:
    """Dense variational autoencoder with the MB24 widths (n = 1024), 32-d Gaussian latent."""
    return VariationalAutoencoder(**{"widths": mb24_widths(1024), "name": "vae_1024", **overrides})


@register_model("autoencoder")
def vae_tiny(**overrides) -> VariationalAutoencoder:
    """Small dense variational autoencoder (n = 64, 8-d latent) for tests and demos."""
    return VariationalAutoencoder(
        **{"widths": mb24_widths(64), "latent_dim": 8, "name": "vae_tiny", **overrides}
    )
