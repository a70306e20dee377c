"""Regressors on autoencoder latents: the MB24 latent CNN and a plain MLP baseline."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import ZooModel, zoo_constructor
from mdwarf_zoo.models._blocks import chain, conv_stack, regression_head
from mdwarf_zoo.registry import register_model


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class LatentCNN(ZooModel):
    """The latent 1-D CNN of MB24, one per stellar parameter.

    The latent vector is reshaped to (latent_dim, 1) -> ``Conv1D(nf1, 2, same, ReLU)`` ->
    ``Conv1D(nf2, 2, same, ReLU)`` -> ``Flatten`` -> ``Dense(256, ReLU)`` ->
    ``Dense(128, ReLU)`` -> ``Dense(nu, ReLU)`` -> ``Dense(n_outputs)`` (linear).

    Args:
        latent_dim: size of the latent vector (MB24: 32).
        nf1: filters of the first convolution (MB24 Teff: 64).
        nf2: filters of the second convolution (MB24 Teff: 32).
        nu: units of the last hidden layer (MB24 Teff: 64).
        n_outputs: outputs (MB24: 1, one network per parameter).
        learning_rate: Adam learning rate of the default compilation (MB24 Teff: 0.01).
        seed: seed of the weight initialisers.

    Raises:
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.create_model("latent_cnn").output_shape
        (None, 1)

    Reference:
        Mas-Buitrago et al. 2024, A&A 687, A205, Sect. 3.3.
    """

    kind = "regressor"

    @zoo_constructor
    def __init__(
        self,
        latent_dim: int = 32,
        nf1: int = 64,
        nf2: int = 32,
        nu: int = 64,
        n_outputs: int = 1,
        learning_rate: float = 0.01,
        seed: int | None = None,
        **kwargs,
    ):
        # === Layers ===
        layers = [
            keras.layers.Reshape((latent_dim, 1), name="to_channels"),
            *conv_stack((nf1, nf2), 2, "conv", seed=seed),
            keras.layers.Flatten(name="flatten"),
            *regression_head((256, 128, nu), n_outputs, seed=seed, offset=2),
        ]

        # === Functional model ===
        latent = keras.Input((latent_dim,), name="latent")
        super().__init__(inputs=latent, outputs=chain(latent, layers), **kwargs)


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class LatentMLP(ZooModel):
    """A plain multilayer perceptron on the latent vector, the baseline for the latent CNN.

    Args:
        latent_dim: size of the latent vector.
        hidden: widths of the ReLU hidden layers.
        n_outputs: outputs.
        learning_rate: Adam learning rate of the default compilation.
        seed: seed of the weight initialisers.

    Raises:
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.create_model("latent_mlp", n_outputs=4).output_shape
        (None, 4)
    """

    kind = "regressor"

    @zoo_constructor
    def __init__(
        self,
        latent_dim: int = 32,
        hidden: Sequence[int] = (256, 128, 64),
        n_outputs: int = 1,
        learning_rate: float = 1e-3,
        seed: int | None = None,
        **kwargs,
    ):
        # === Functional model ===
        latent = keras.Input((latent_dim,), name="latent")
        outputs = chain(latent, regression_head(hidden, n_outputs, seed=seed))
        super().__init__(inputs=latent, outputs=outputs, **kwargs)


@register_model("regressor")
def latent_cnn(**overrides) -> LatentCNN:
    """MB24 latent CNN (Conv1D 64-32, Dense 256-128-64-1), one per parameter."""
    return LatentCNN(**{"name": "latent_cnn", **overrides})


@register_model("regressor")
def latent_mlp(**overrides) -> LatentMLP:
    """Latent MLP baseline (Dense 256-128-64-1)."""
    return LatentMLP(**{"name": "latent_mlp", **overrides})
