"""A dense variational autoencoder (Kingma & Welling 2014) with the MB24 layer conventions."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import Autoencoder, GaussianSampling, zoo_constructor
from mdwarf_zoo.models._blocks import chain, dense, dense_decoder, dense_stack
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

    bottleneck_name = "latent_mean"
    encoder_end_name = "sampling"

    @zoo_constructor
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
        # === Layers ===
        encoder_layers = dense_stack(widths, "encoder", activation=activation, seed=seed)
        latent_mean = dense(latent_dim, "latent_mean", seed=seed, offset=len(widths))
        # Start the log-variance small so early samples stay close to the mean.
        latent_log_var = keras.layers.Dense(
            latent_dim,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(-6.0),
            name="latent_log_var",
        )
        sampling = GaussianSampling(kl_weight=kl_weight, seed=seed, name="sampling")
        decoder_layers = dense_decoder(input_length, widths, activation=activation, seed=seed)

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        x = chain(spectrum, encoder_layers)
        x = sampling([latent_mean(x), latent_log_var(x)])
        super().__init__(inputs=spectrum, outputs=chain(x, decoder_layers), **kwargs)


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
