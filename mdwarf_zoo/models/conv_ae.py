"""A 1-D convolutional autoencoder: strided ``Conv1D`` encoder, dense bottleneck, mirrored
``Conv1DTranspose`` decoder. Same flat-layer conventions as the MB24 dense autoencoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import Autoencoder, ContractiveDense, initializer, zoo_constructor
from mdwarf_zoo.models._blocks import chain, conv, conv_stack, dense
from mdwarf_zoo.registry import register_model


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class ConvAutoencoder(Autoencoder):
    """1-D convolutional autoencoder for spectra.

    Layers: ``InputLayer`` -> ``Reshape`` to (pixels, 1) -> one strided ``Conv1D`` per entry of
    ``filters`` -> ``Flatten`` -> bottleneck (``ContractiveDense``, ``latent_dim`` units) ->
    ``Dense`` -> ``Reshape`` -> one ``Conv1DTranspose`` per filter, in reverse ->
    ``Conv1D`` (1 filter, sigmoid) -> ``Cropping1D`` -> ``Flatten`` (pixels,).

    Args:
        input_length: pixels per spectrum.
        filters: filters of the encoder convolutions, first to last.
        kernel_size: kernel width of every convolution, pixels.
        strides: stride of every encoder convolution (and decoder transposed convolution).
        latent_dim: bottleneck size.
        activation: hidden activation.
        contractive: contractive-penalty weight on the bottleneck; 0 switches it off.
        learning_rate: Adam learning rate of the default compilation.
        seed: seed of the weight initialisers.

    Raises:
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> model = mdwarf_zoo.create_model("conv_ae_tiny")
        >>> model.output_shape
        (None, 3501)
    """

    @zoo_constructor
    def __init__(
        self,
        input_length: int = 3501,
        filters: Sequence[int] = (16, 32, 64),
        kernel_size: int = 9,
        strides: int = 4,
        latent_dim: int = 32,
        activation: str = "relu",
        contractive: float = 1e-4,
        learning_rate: float = 1e-4,
        seed: int | None = None,
        **kwargs,
    ):
        n = len(filters)
        reduced = input_length
        for _ in filters:
            reduced = math.ceil(reduced / strides)
        convs = {"strides": strides, "activation": activation, "seed": seed}

        # === Layers ===
        encoder_layers = [
            keras.layers.Reshape((input_length, 1), name="to_channels"),
            *conv_stack(filters, kernel_size, "encoder_conv", **convs),
            keras.layers.Flatten(name="encoder_flatten"),
        ]
        bottleneck = ContractiveDense(
            latent_dim,
            contractive=contractive,
            activation=activation,
            kernel_initializer=initializer(seed, n),
            name="bottleneck",
        )
        decoder_layers = [
            dense(
                reduced * filters[-1],
                "decoder_dense",
                activation=activation,
                seed=seed,
                offset=n + 1,
            ),
            keras.layers.Reshape((reduced, filters[-1]), name="decoder_reshape"),
            *conv_stack(
                filters[::-1], kernel_size, "decoder_conv", offset=n + 2, transpose=True, **convs
            ),
            conv(
                1,
                kernel_size,
                "reconstruction_conv",
                activation="sigmoid",
                seed=seed,
                offset=2 * n + 2,
            ),
            keras.layers.Cropping1D((0, reduced * strides**n - input_length), name="crop"),
            keras.layers.Flatten(name="reconstruction"),
        ]

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        outputs = chain(spectrum, [*encoder_layers, bottleneck, *decoder_layers])
        super().__init__(inputs=spectrum, outputs=outputs, **kwargs)


@register_model("autoencoder")
def conv_ae(**overrides) -> ConvAutoencoder:
    """1-D convolutional autoencoder, filters 16-32-64, stride 4, 32-d latent."""
    return ConvAutoencoder(**{"name": "conv_ae", **overrides})


@register_model("autoencoder")
def conv_ae_tiny(**overrides) -> ConvAutoencoder:
    """Small 1-D convolutional autoencoder (filters 4-8-8, 8-d latent) for tests and demos."""
    return ConvAutoencoder(
        **{"filters": (4, 8, 8), "latent_dim": 8, "name": "conv_ae_tiny", **overrides}
    )
