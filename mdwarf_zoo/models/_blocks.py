"""Layer stacks the model families share: seeded dense and 1-D convolution layers, chained.

Kernel ``offset`` of a model is seeded with ``seed + offset`` (``_base.initializer``); the
builders take the offset of their first layer, so a family's layers keep the seeds, and the
construction order, they have always had (with ``seed=None`` the order decides the weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import ActivityL1, initializer


def chain(inputs, layers: Sequence[keras.layers.Layer]):
    """Apply ``layers`` one after the other to ``inputs``."""
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def dense(
    units: int,
    name: str,
    *,
    seed: int | None,
    offset: int,
    activation: str | None = None,
    l1: float = 0.0,
) -> keras.layers.Dense:
    """A Glorot-initialised ``Dense`` layer, with L1 activity regularisation when ``l1 > 0``."""
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=initializer(seed, offset),
        activity_regularizer=ActivityL1(l1) if l1 > 0 else None,
        name=name,
    )


def dense_stack(
    widths: Sequence[int],
    prefix: str,
    *,
    activation: str,
    seed: int | None,
    offset: int = 0,
    l1: float = 0.0,
    l1_from: int = 0,
) -> list[keras.layers.Dense]:
    """One ``Dense`` layer per width, ``{prefix}_1`` ...; L1 ``l1`` from layer index ``l1_from``."""
    return [
        dense(
            width,
            f"{prefix}_{i + 1}",
            activation=activation,
            seed=seed,
            offset=offset + i,
            l1=l1 if i >= l1_from else 0.0,
        )
        for i, width in enumerate(widths)
    ]


def dense_decoder(
    input_length: int, widths: Sequence[int], *, activation: str, seed: int | None, l1: float = 0.0
) -> list[keras.layers.Dense]:
    """The mirror of a dense encoder of ``widths`` and its one-layer bottleneck.

    ``decoder_1`` ... (the widths reversed), then the sigmoid ``reconstruction`` layer of
    ``input_length`` pixels; seeded after the encoder and the bottleneck.
    """
    n = len(widths)
    return [
        *dense_stack(
            widths[::-1], "decoder", activation=activation, seed=seed, offset=n + 1, l1=l1
        ),
        dense(input_length, "reconstruction", activation="sigmoid", seed=seed, offset=2 * n + 1),
    ]


def regression_head(
    hidden: Sequence[int], n_outputs: int, *, seed: int | None, offset: int = 0
) -> list[keras.layers.Dense]:
    """ReLU layers ``dense_1`` ... of widths ``hidden``, then the linear ``output`` layer."""
    return [
        *dense_stack(hidden, "dense", activation="relu", seed=seed, offset=offset),
        dense(n_outputs, "output", seed=seed, offset=offset + len(hidden)),
    ]


def conv(
    filters: int,
    kernel_size: int,
    name: str,
    *,
    seed: int | None,
    offset: int,
    activation: str = "relu",
    strides: int = 1,
    transpose: bool = False,
) -> keras.layers.Layer:
    """A Glorot-initialised, ``"same"``-padded ``Conv1D`` (or ``Conv1DTranspose``)."""
    layer = keras.layers.Conv1DTranspose if transpose else keras.layers.Conv1D
    return layer(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        kernel_initializer=initializer(seed, offset),
        name=name,
    )


def conv_stack(
    filters: Sequence[int],
    kernel_size: int,
    prefix: str,
    *,
    seed: int | None,
    offset: int = 0,
    **options,
) -> list[keras.layers.Layer]:
    """One :func:`conv` per entry of ``filters``, ``{prefix}_1`` ...; ``options`` as ``conv``."""
    return [
        conv(n, kernel_size, f"{prefix}_{i + 1}", seed=seed, offset=offset + i, **options)
        for i, n in enumerate(filters)
    ]
