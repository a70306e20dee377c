"""Spectrum tooling: wavelength grids, PHOENIX-ACES grids, observed formats, preprocessing.

This subpackage never imports Keras, TensorFlow or any higher layer of mdwarf_zoo.
"""

from mdwarf_zoo.spectra.datasets import (
    SpectrumSet,
    build_training_set,
    load_labels,
    read_set,
    write_set,
)
from mdwarf_zoo.spectra.grid import MB24_GRID, Spectrum, WavelengthGrid
from mdwarf_zoo.spectra.observed import (
    SpectrumFileError,
    merge_orders,
    read_spectrum,
    subtract_hpf_sky,
    write_caracal,
)
from mdwarf_zoo.spectra.phoenix import (
    GridPoint,
    PhoenixGrid,
    download_grid,
    phoenix_filename,
    read_phoenix_spectrum,
    required_points,
    write_phoenix_spectrum,
    write_phoenix_wavelength,
)
from mdwarf_zoo.spectra.preprocess import (
    Preprocessor,
    continuum_normalize,
    resample,
    scale,
)
from mdwarf_zoo.spectra.rv import (
    RadialVelocity,
    RadialVelocityError,
    RadialVelocityWarning,
    doppler_shift,
    radial_velocity,
    to_rest_frame,
)

__all__ = [
    "MB24_GRID",
    "GridPoint",
    "PhoenixGrid",
    "Preprocessor",
    "RadialVelocity",
    "RadialVelocityError",
    "RadialVelocityWarning",
    "Spectrum",
    "SpectrumFileError",
    "SpectrumSet",
    "WavelengthGrid",
    "build_training_set",
    "continuum_normalize",
    "doppler_shift",
    "download_grid",
    "load_labels",
    "merge_orders",
    "phoenix_filename",
    "radial_velocity",
    "read_phoenix_spectrum",
    "read_set",
    "read_spectrum",
    "required_points",
    "resample",
    "scale",
    "subtract_hpf_sky",
    "to_rest_frame",
    "write_caracal",
    "write_phoenix_spectrum",
    "write_phoenix_wavelength",
    "write_set",
]
