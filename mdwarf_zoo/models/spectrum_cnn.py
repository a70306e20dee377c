"""A direct spectrum-to-parameters CNN with no autoencoder, after StarNet (Fabbro et al. 2018):
the "no transfer" baseline."""

from __future__ import annotations

import keras

from mdwarf_zoo.models._base import (
    ZooModel,
    check_positive_float,
    check_positive_int,
    check_seed,
    initializer,
)
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
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.create_model("spectrum_cnn").output_shape
        (None, 4)

    Reference:
        Fabbro et al. 2018, MNRAS 475, 2978 (StarNet); Passegger et al. 2020, A&A 642, A22.
    """

    kind = "regressor"

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
        owner = type(self).__name__
        input_length = check_positive_int(owner, "input_length", input_length)
        n_outputs = check_positive_int(owner, "n_outputs", n_outputs)
        filters_1 = check_positive_int(owner, "filters_1", filters_1)
        filters_2 = check_positive_int(owner, "filters_2", filters_2)
        kernel_size = check_positive_int(owner, "kernel_size", kernel_size)
        pool_size = check_positive_int(owner, "pool_size", pool_size)
        learning_rate = check_positive_float(owner, "learning_rate", learning_rate)
        seed = check_seed(owner, seed)
        if input_length < kernel_size * pool_size:
            raise ValueError(
                f"{owner}: input_length must be at least kernel_size * pool_size = "
                f"{kernel_size * pool_size}, got {input_length}"
            )

        # === Layers ===
        layers = [
            keras.layers.Reshape((input_length, 1), name="to_channels"),
            keras.layers.Conv1D(
                filters_1,
                kernel_size,
                padding="same",
                activation="relu",
                kernel_initializer=initializer(seed, 0),
                name="conv_1",
            ),
            keras.layers.Conv1D(
                filters_2,
                kernel_size,
                padding="same",
                activation="relu",
                kernel_initializer=initializer(seed, 1),
                name="conv_2",
            ),
            keras.layers.MaxPooling1D(pool_size, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(
                256, activation="relu", kernel_initializer=initializer(seed, 2), name="dense_1"
            ),
            keras.layers.Dense(
                128, activation="relu", kernel_initializer=initializer(seed, 3), name="dense_2"
            ),
            keras.layers.Dense(n_outputs, kernel_initializer=initializer(seed, 4), name="output"),
        ]

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        x = spectrum
        for layer in layers:
            x = layer(x)
        super().__init__(inputs=spectrum, outputs=x, **kwargs)

        # === Config ===
        self.store_config(
            input_length=input_length,
            n_outputs=n_outputs,
            filters_1=filters_1,
            filters_2=filters_2,
            kernel_size=kernel_size,
            pool_size=pool_size,
            learning_rate=learning_rate,
            seed=seed,
        )
        self.compile_default()


@register_model("regressor")
def spectrum_cnn(**overrides) -> SpectrumCNN:
    """StarNet-like direct spectrum CNN (no autoencoder): the no-transfer baseline."""
    return SpectrumCNN(**{"name": "spectrum_cnn", **overrides})
