"""A 1-D convolutional autoencoder: strided ``Conv1D`` encoder, dense bottleneck, mirrored
``Conv1DTranspose`` decoder. Same flat-layer conventions as the MB24 dense autoencoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import (
    ACTIVATIONS,
    Autoencoder,
    ContractiveDense,
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_widths,
    initializer,
)
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
        owner = type(self).__name__
        input_length = check_positive_int(owner, "input_length", input_length)
        filters = check_widths(owner, "filters", filters)
        kernel_size = check_positive_int(owner, "kernel_size", kernel_size)
        strides = check_positive_int(owner, "strides", strides)
        latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        activation = check_choice(owner, "activation", activation, ACTIVATIONS)
        contractive = check_nonnegative_float(owner, "contractive", contractive)
        learning_rate = check_positive_float(owner, "learning_rate", learning_rate)
        seed = check_seed(owner, seed)
        reduced = input_length
        for _ in filters:
            reduced = math.ceil(reduced / strides)
        restored = reduced * strides ** len(filters)

        # === Layers ===
        offset = iter(range(4 * len(filters) + 8))
        encoder_layers = [keras.layers.Reshape((input_length, 1), name="to_channels")]
        encoder_layers += [
            keras.layers.Conv1D(
                n_filters,
                kernel_size,
                strides=strides,
                padding="same",
                activation=activation,
                kernel_initializer=initializer(seed, next(offset)),
                name=f"encoder_conv_{i + 1}",
            )
            for i, n_filters in enumerate(filters)
        ]
        encoder_layers.append(keras.layers.Flatten(name="encoder_flatten"))
        bottleneck = ContractiveDense(
            latent_dim,
            contractive=contractive,
            activation=activation,
            kernel_initializer=initializer(seed, next(offset)),
            name="bottleneck",
        )
        decoder_layers = [
            keras.layers.Dense(
                reduced * filters[-1],
                activation=activation,
                kernel_initializer=initializer(seed, next(offset)),
                name="decoder_dense",
            ),
            keras.layers.Reshape((reduced, filters[-1]), name="decoder_reshape"),
        ]
        decoder_layers += [
            keras.layers.Conv1DTranspose(
                n_filters,
                kernel_size,
                strides=strides,
                padding="same",
                activation=activation,
                kernel_initializer=initializer(seed, next(offset)),
                name=f"decoder_conv_{i + 1}",
            )
            for i, n_filters in enumerate(reversed(filters))
        ]
        decoder_layers += [
            keras.layers.Conv1D(
                1,
                kernel_size,
                padding="same",
                activation="sigmoid",
                kernel_initializer=initializer(seed, next(offset)),
                name="reconstruction_conv",
            ),
            keras.layers.Cropping1D((0, restored - input_length), name="crop"),
            keras.layers.Flatten(name="reconstruction"),
        ]

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        x = spectrum
        for layer in [*encoder_layers, bottleneck, *decoder_layers]:
            x = layer(x)
        super().__init__(inputs=spectrum, outputs=x, **kwargs)

        # === Config ===
        self.store_config(
            input_length=input_length,
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            latent_dim=latent_dim,
            activation=activation,
            contractive=contractive,
            learning_rate=learning_rate,
            seed=seed,
        )
        self._bottleneck_index = len(encoder_layers) + 1
        self._decoder_start = self._bottleneck_index + 1
        self.compile_default()


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
