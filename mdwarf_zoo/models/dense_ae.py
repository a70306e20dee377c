"""The dense contractive autoencoder of Mas-Buitrago et al. 2024 (A&A 687, A205), MB24.

    3501 -> n -> 3n/4 -> n/2 -> n/4 -> n/8 -> 32 -> n/8 -> n/4 -> n/2 -> 3n/4 -> n -> 3501

ReLU everywhere, sigmoid output, L1 activity regularisation on the hidden layers except the
first encoder layer and the bottleneck, contractive penalty on the 32-d bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mdwarf_zoo.models._base import (
    Autoencoder,
    ContractiveDense,
    check_positive_int,
    initializer,
    zoo_constructor,
)
from mdwarf_zoo.models._blocks import chain, dense_decoder, dense_stack
from mdwarf_zoo.registry import register_model

MB24_INPUT_LENGTH = 3501
MB24_LATENT_DIM = 32


def mb24_widths(first_width: int) -> list[int]:
    """The encoder widths of MB24 for a first layer of ``first_width`` units: n, 3n/4 ... n/8."""
    check_positive_int("mb24_widths", "first_width", first_width)
    if first_width % 8:
        raise ValueError(f"mb24_widths: first_width must be divisible by 8, got {first_width!r}")
    return [first_width, 3 * first_width // 4, first_width // 2, first_width // 4, first_width // 8]


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class DenseAutoencoder(Autoencoder):
    """Dense contractive autoencoder with a flat layer list (MB24).

    ``layers[0]`` is the ``InputLayer``, ``layers[1:len(widths)+1]`` the encoder, the next layer
    the bottleneck, then the mirrored decoder and the sigmoid output layer.

    Args:
        input_length: pixels per spectrum (MB24: 3501).
        widths: encoder widths, first to last; the decoder mirrors them
            (MB24: ``mb24_widths(n)`` for n in 1024 ... 2048).
        latent_dim: bottleneck size (MB24: 32).
        activation: activation of every hidden layer and the bottleneck (MB24: ``"relu"``).
        l1: L1 activity-regularisation weight on the hidden layers except the first encoder
            layer and the bottleneck (MB24: 8e-8 ... 1.2e-7); 0 switches it off.
        contractive: weight of the contractive penalty on the bottleneck (MB24: 1e-4).
        contractive_form: ``"activation"`` (default: the Jacobian of the activation the
            bottleneck has) or ``"mb24"`` (MB24's script as written: the sigmoid derivative on
            the ReLU bottleneck, kernel without gradient; see ``ContractiveDense``).
        learning_rate: Adam learning rate of the default compilation (MB24: 1e-4).
        seed: seed of the weight initialisers; ``None`` uses Keras' global seed.

    Raises:
        ValueError: for an argument outside its allowed values; the message names it.

    Examples:
        >>> import mdwarf_zoo
        >>> model = mdwarf_zoo.create_model("dense_ae_1024")
        >>> [layer.name for layer in model.layers][:2]
        ['spectrum', 'encoder_1']

    Reference:
        Mas-Buitrago et al. 2024, A&A 687, A205 (arXiv:2405.08703).
    """

    config_omits_defaults = ("contractive_form",)

    @zoo_constructor
    def __init__(
        self,
        input_length: int = MB24_INPUT_LENGTH,
        widths: Sequence[int] = (1024, 768, 512, 256, 128),
        latent_dim: int = MB24_LATENT_DIM,
        activation: str = "relu",
        l1: float = 1e-7,
        contractive: float = 1e-4,
        learning_rate: float = 1e-4,
        seed: int | None = None,
        contractive_form: str = "activation",
        **kwargs,
    ):
        # === Layers ===
        encoder_layers = dense_stack(
            widths, "encoder", activation=activation, seed=seed, l1=l1, l1_from=1
        )
        bottleneck = ContractiveDense(
            latent_dim,
            contractive=contractive,
            activation=activation,
            form=contractive_form,
            kernel_initializer=initializer(seed, len(widths)),
            name="bottleneck",
        )
        decoder_layers = dense_decoder(
            input_length, widths, activation=activation, seed=seed, l1=l1
        )

        # === Functional model ===
        spectrum = keras.Input((input_length,), name="spectrum")
        outputs = chain(spectrum, [*encoder_layers, bottleneck, *decoder_layers])
        super().__init__(inputs=spectrum, outputs=outputs, **kwargs)


def _mb24(name: str, first_width: int, **overrides) -> DenseAutoencoder:
    return DenseAutoencoder(**{"widths": mb24_widths(first_width), "name": name, **overrides})


@register_model("autoencoder")
def dense_ae_1024(**overrides) -> DenseAutoencoder:
    """MB24 dense contractive autoencoder, n = 1024 (9,874,125 parameters)."""
    return _mb24("dense_ae_1024", 1024, **overrides)


@register_model("autoencoder")
def dense_ae_1280(**overrides) -> DenseAutoencoder:
    """MB24 dense contractive autoencoder, n = 1280."""
    return _mb24("dense_ae_1280", 1280, **overrides)


@register_model("autoencoder")
def dense_ae_1536(**overrides) -> DenseAutoencoder:
    """MB24 dense contractive autoencoder, n = 1536."""
    return _mb24("dense_ae_1536", 1536, **overrides)


@register_model("autoencoder")
def dense_ae_1792(**overrides) -> DenseAutoencoder:
    """MB24 dense contractive autoencoder, n = 1792."""
    return _mb24("dense_ae_1792", 1792, **overrides)


@register_model("autoencoder")
def dense_ae_2048(**overrides) -> DenseAutoencoder:
    """MB24 dense contractive autoencoder, n = 2048."""
    return _mb24("dense_ae_2048", 2048, **overrides)


@register_model("autoencoder")
def dense_ae_tiny(**overrides) -> DenseAutoencoder:
    """Small MB24-shaped dense autoencoder (n = 64, 8-d latent) for tests and demos."""
    return DenseAutoencoder(
        **{"widths": mb24_widths(64), "latent_dim": 8, "name": "dense_ae_tiny", **overrides}
    )
