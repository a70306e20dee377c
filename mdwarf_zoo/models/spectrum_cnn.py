"""A direct spectrum-to-parameters CNN with no autoencoder, after StarNet (Fabbro et al. 2018):
the "no transfer" baseline."""

from __future__ import annotations

import keras

from mdwarf_zoo.models._base import ZooModel, zoo_constructor
from mdwarf_zoo.models._blocks import chain, conv_stack, regression_head
from mdwarf_zoo.registry import register_model


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class SpectrumCNN(ZooModel):
    """StarNet-like CNN from spectrum to stellar parameters.

    ``Reshape`` to (pixels, 1) -> ``Conv1D(filters_1, kernel_size, ReLU)`` ->
    ``Conv1D(filters_2, kernel_size, ReLU)`` -> ``MaxPooling1D(pool_size)`` -> ``Flatten`` ->
    ``Dense(256, ReLU)`` -> ``Dense(128, ReLU)`` -> ``Dense(n_outputs)`` (linear).

    Args:
        input_length: pixels per spectrum.
        n_outputs: parameters predicted together (default 4: Teff, log g, [M/H], v sin i,
            standardised by the caller).
        filters_1: filters of the first convolution (StarNet: 4).
        filters_2: filters of the second convolution (StarNet: 16).
        kernel_size: convolution kernel width, pixels (StarNet: 8).
        pool_size: max-pooling size (StarNet: 4).
        learning_rate: Adam learning rate of the default compilation.
        seed: seed of the weight initialisers.

    Raises:
        ValueError: for an argument outside its allowed values, or ``input_length`` below
            ``kernel_size * pool_size``; the message names the argument.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.create_model("spectrum_cnn").output_shape
        (None, 4)

    Reference:
        Fabbro et al. 2018, MNRAS 475, 2978 (StarNet); Passegger et al. 2020, A&A 642, A22.
    """

    kind = "regressor"

    @zoo_constructor
    def __init__(
        self,
        input_length: int = 3501,
        n_outputs: int = 4,
        filters_1: int = 4,
        filters_2: int = 16,
        kernel_size: int = 8,
        pool_size: int = 4,
        learning_rate: float = 1e-3,
        seed: int | None = None,
        **kwargs,
    ):
        if input_length < kernel_size * pool_size:
            raise ValueError(
                f"{type(self).__name__}: input_length must be at least kernel_size * pool_size = "
                f"{kernel_size * pool_size}, got {input_length}"
            )

        # === Layers ===
        layers = [
            keras.layers.Reshape((input_length, 1), name="to_channels"),
            *conv_stack((filters_1, filters_2), kernel_size, "conv", seed=seed),
            keras.layers.MaxPooling1D(pool_size, name="pool"),
            keras.layers.Flatten(name="flatten"),
            *regression_head((256, 128), n_outputs, seed=seed, offset=2),
        ]

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        super().__init__(inputs=spectrum, outputs=chain(spectrum, layers), **kwargs)


@register_model("regressor")
def spectrum_cnn(**overrides) -> SpectrumCNN:
    """StarNet-like direct spectrum CNN (no autoencoder): the no-transfer baseline."""
    return SpectrumCNN(**{"name": "spectrum_cnn", **overrides})
