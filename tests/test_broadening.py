"""Tests of mdwarf_zoo.spectra.broadening against PyAstronomy and basic invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdwarf_zoo.spectra.broadening import (
    air_to_vacuum,
    instrumental_broadening,
    rotational_broadening,
    vacuum_to_air,
)
from mdwarf_zoo.spectra.grid import MB24_GRID

pyasl = pytest.importorskip("PyAstronomy.pyasl")

# Agreement with PyAstronomy: both sample the same kernel, so only round-off differs.
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spectrum() -> tuple[np.ndarray, np.ndarray]:
    """A normalised spectrum with 150 Gaussian lines on a 0.005 A grid over 8790-8845 A."""
    wavelength = np.linspace(8790.0, 8845.0, 11001)
    rng = np.random.default_rng(1)
    centres = rng.uniform(8790.0, 8845.0, 150)
    depths = rng.uniform(0.05, 0.6, 150)
    absorption = (depths * np.exp(-(((wavelength[:, None] - centres) / 0.04) ** 2))).sum(axis=1)
    return wavelength, np.exp(-absorption)


@pytest.mark.parametrize("vsini", [0.3, 1.5, 2.5, 10.0, 30.0, 60.0])
@pytest.mark.parametrize("limb_darkening", [0.0, 0.6, 1.0])
def test_rotation_matches_pyastronomy(spectrum, vsini, limb_darkening):
    wavelength, flux = spectrum
    ours = rotational_broadening(wavelength, flux, vsini, limb_darkening)
    theirs = pyasl.fastRotBroad(wavelength, flux, limb_darkening, vsini)
    # PyAstronomy pads with zeros, we pad with the edge values: compare beyond one kernel width.
    edge = int(vsini / 299792.458 * wavelength.mean() / 0.005) + 2
    np.testing.assert_allclose(ours[edge:-edge], theirs[edge:-edge], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("resolving_power", [5000, 20000, 94600, 300000])
def test_instrumental_matches_pyastronomy(spectrum, resolving_power):
    wavelength, flux = spectrum
    ours = instrumental_broadening(wavelength, flux, resolving_power)
    theirs = pyasl.instrBroadGaussFast(wavelength, flux, resolving_power, edgeHandling="firstlast")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)


def test_stack_equals_rows(spectrum):
    wavelength, flux = spectrum
    stack = np.stack([flux, flux**2, 1 - 0.3 * (1 - flux)])
    for function, argument in ((rotational_broadening, 12.0), (instrumental_broadening, 50000)):
        together = function(wavelength, stack, argument)
        for row in range(3):
            np.testing.assert_allclose(
                together[row], function(wavelength, stack[row], argument), atol=1e-13
            )


@pytest.mark.parametrize("vsini", [2.0, 25.0])
def test_flux_is_conserved(spectrum, vsini):
    """An isolated line keeps its equivalent width; a flat spectrum stays flat at the edges."""
    wavelength, _ = spectrum
    line = 1.0 - 0.6 * np.exp(-(((wavelength - 8817.5) / 0.05) ** 2))
    width = np.sum(1.0 - line)
    for broadened in (
        rotational_broadening(wavelength, line, vsini),
        instrumental_broadening(wavelength, line, 94600 / vsini),
    ):
        assert np.sum(1.0 - broadened) == pytest.approx(width, rel=1e-10)
        assert broadened.min() > line.min()  # the line got shallower
    flat = np.full_like(wavelength, 0.8)
    np.testing.assert_allclose(rotational_broadening(wavelength, flat, 60.0), flat, rtol=1e-12)
    np.testing.assert_allclose(instrumental_broadening(wavelength, flat, 1000), flat, rtol=1e-12)


def test_line_centre_does_not_shift(spectrum):
    wavelength, _ = spectrum
    line = 1.0 - 0.6 * np.exp(-(((wavelength - 8817.5) / 0.05) ** 2))
    broadened = rotational_broadening(wavelength, line, 20.0)
    assert wavelength[np.argmin(broadened)] == pytest.approx(8817.5, abs=1e-9)


def test_zero_vsini_is_identity(spectrum):
    wavelength, flux = spectrum
    result = rotational_broadening(wavelength, flux, 0.0)
    np.testing.assert_array_equal(result, flux)
    assert result is not flux


def test_mb24_grid_is_accepted():
    wavelength = MB24_GRID.wavelength
    assert rotational_broadening(wavelength, np.ones(3501), 5.0).shape == (3501,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vsini": -1.0}, "vsini must be >= 0"),
        ({"vsini": float("nan")}, "vsini must be finite"),
        ({"vsini": 5.0, "limb_darkening": 1.5}, "limb_darkening"),
    ],
)
def test_rotation_rejects_bad_parameters(spectrum, kwargs, message):
    wavelength, flux = spectrum
    with pytest.raises(ValueError, match=message):
        rotational_broadening(wavelength, flux, **kwargs)


@pytest.mark.parametrize("resolving_power", [0, -5, float("nan"), float("inf")])
def test_instrumental_rejects_bad_resolving_power(spectrum, resolving_power):
    wavelength, flux = spectrum
    with pytest.raises(ValueError, match="resolving_power"):
        instrumental_broadening(wavelength, flux, resolving_power)


@pytest.mark.parametrize("function", [rotational_broadening, instrumental_broadening])
def test_bad_wavelength_and_flux(function):
    wavelength = np.linspace(8800.0, 8835.0, 3501)
    flux = np.ones(3501)
    argument = 5.0 if function is rotational_broadening else 94600
    with pytest.raises(ValueError, match="strictly increasing"):
        function(wavelength[::-1], flux, argument)
    uneven = wavelength.copy()
    uneven[100:] += 0.003
    with pytest.raises(ValueError, match="evenly spaced"):
        function(uneven, flux, argument)
    with pytest.raises(ValueError, match="non-finite"):
        function(np.where(np.arange(3501) == 7, np.nan, wavelength), flux, argument)
    with pytest.raises(ValueError, match=r"non-finite value nan at index \(12,\)"):
        function(wavelength, np.where(np.arange(3501) == 12, np.nan, flux), argument)
    with pytest.raises(ValueError, match="shape"):
        function(wavelength, np.ones(3500), argument)


def test_air_vacuum_matches_pyastronomy():
    vacuum = np.linspace(3000.0, 16900.0, 2001)
    np.testing.assert_allclose(vacuum_to_air(vacuum), pyasl.vactoair2(vacuum), rtol=0, atol=1e-9)
    air = np.linspace(3000.0, 16800.0, 2001)
    np.testing.assert_allclose(air_to_vacuum(air), pyasl.airtovac2(air), rtol=0, atol=1e-8)
    # The air-vacuum shift near 8800 A is about 2.4 A (n - 1 = 2.74e-4).
    assert air_to_vacuum(8806.757) - 8806.757 == pytest.approx(2.418, abs=0.01)
    assert isinstance(vacuum_to_air(8800.0), float)


@settings(max_examples=60, deadline=None)
@given(st.floats(3100.0, 16500.0, allow_nan=False))
def test_air_vacuum_round_trip(wavelength):
    assert air_to_vacuum(vacuum_to_air(wavelength)) == pytest.approx(wavelength, abs=1e-9)
    assert vacuum_to_air(air_to_vacuum(wavelength)) == pytest.approx(wavelength, abs=1e-9)


@pytest.mark.parametrize("function", [air_to_vacuum, vacuum_to_air])
def test_air_vacuum_rejects_out_of_range(function):
    with pytest.raises(ValueError, match="3000-16900 A"):
        function(np.array([8800.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        function(np.array([np.nan]))
