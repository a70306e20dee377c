"""The model families; importing this package registers every variant."""

from mdwarf_zoo.models._base import Autoencoder, ContractiveDense, GaussianSampling, ZooModel
from mdwarf_zoo.models.conv_ae import ConvAutoencoder
from mdwarf_zoo.models.dense_ae import DenseAutoencoder, mb24_widths
from mdwarf_zoo.models.latent import LatentCNN, LatentMLP
from mdwarf_zoo.models.spectrum_cnn import SpectrumCNN
from mdwarf_zoo.models.vae import VariationalAutoencoder

__all__ = [
    "Autoencoder",
    "ContractiveDense",
    "ConvAutoencoder",
    "DenseAutoencoder",
    "GaussianSampling",
    "LatentCNN",
    "LatentMLP",
    "SpectrumCNN",
    "VariationalAutoencoder",
    "ZooModel",
    "mb24_widths",
]
