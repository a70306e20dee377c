"""Continuum normalisation, resampling, gaps, scaling, the Preprocessor, and radial velocities."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mdwarf_zoo.spectra.broadening import instrumental_broadening, vacuum_to_air
from mdwarf_zoo.spectra.grid import MB24_GRID, Spectrum, WavelengthGrid
from mdwarf_zoo.spectra.observed import read_spectrum
from mdwarf_zoo.spectra.preprocess import (
    GapWarning,
    Preprocessor,
    continuum_normalize,
    resample,
    scale,
)
from mdwarf_zoo.spectra.rv import C_KMS, doppler_shift, radial_velocity, to_rest_frame

RNG = np.random.default_rng(7)
LINES = RNG.uniform(8780, 8860, 80)
DEPTHS = RNG.uniform(0.1, 0.7, 80)


def absorption(wave: np.ndarray, width: float = 0.05) -> np.ndarray:
    profile = np.ones_like(wave)
    for line, depth in zip(LINES, DEPTHS, strict=True):
        profile *= 1 - depth * np.exp(-0.5 * ((wave - line) / width) ** 2)
    return profile


def test_continuum_normalize_recovers_a_sloped_continuum():
    wave = np.arange(8795.0, 8840.0, 0.01)
    continuum = 3e13 * (1 + 0.004 * (wave - 8795))
    normalised, estimate = continuum_normalize(wave, continuum * absorption(wave))
    # Away from the ends the envelope sits on the true continuum within a couple of per cent.
    inner = (wave > 8800) & (wave < 8835)
    assert np.median(np.abs(estimate[inner] / continuum[inner] - 1)) < 0.02
    assert np.percentile(normalised, 95) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(ValueError, match="not positive everywhere"):
        continuum_normalize(wave, -np.ones_like(wave))
    with pytest.raises(ValueError, match="at least 4 pixels"):
        continuum_normalize(wave[:3], wave[:3])


def test_resample_refuses_short_coverage_and_gaps_unless_asked():
    wave = np.arange(8790.0, 8830.0, 0.01)
    spectrum = Spectrum(wave, np.ones_like(wave), metadata={"source": "short.fits"})
    with pytest.raises(ValueError, match=r"'short.fits' covers 8790.000-8829.990 A but the grid "
                       r"8800-8835 A needs 8800.000-8835.000 A"):
        resample(spectrum, MB24_GRID)
    full = np.arange(8790.0, 8845.0, 0.01)
    hole = (full < 8810) | (full > 8812)
    gappy = Spectrum(full[hole], np.ones(hole.sum()), metadata={"source": "gappy.fits"})
    with pytest.raises(ValueError, match=r"gappy.fits' has 1 gap\(s\).*8809.99.*fill_gaps=True"):
        resample(gappy, MB24_GRID)
    with pytest.warns(GapWarning, match="interpolating across 1 gap"):
        filled = resample(gappy, MB24_GRID, fill_gaps=True)
    assert len(filled) == 3501 and filled.metadata["filled_gaps"]
    linear = Spectrum(full, full - 8000.0)
    np.testing.assert_allclose(resample(linear, MB24_GRID).flux, MB24_GRID.wavelength - 8000)


def test_scale_methods():
    flux = np.array([[0.2, 1.05, -0.1], [0.5, 0.9, 1.0]])
    assert scale(flux, "clip").max() == 1.0 and scale(flux, "clip").min() == 0.0
    np.testing.assert_allclose(scale(flux, "minmax")[1], [0, 0.8, 1])
    np.testing.assert_allclose(scale(flux, "max")[1], [0.5, 0.9, 1])
    with pytest.raises(ValueError, match="one of"):
        scale(flux, "zscore")
    with pytest.raises(ValueError, match="constant"):
        scale(np.ones(4), "minmax")


def test_preprocessor_config_round_trip_and_validation():
    prep = Preprocessor(WavelengthGrid(8800, 8835, 0.02), margin=4.0, resolving_power=94600,
                        normalisation_options={"smoothing": 0.08}, scaling="max", fill_gaps=True)
    assert Preprocessor.from_json(prep.to_json()) == prep
    assert Preprocessor.from_dict(json.loads(prep.to_json())) == prep
    assert prep.span == (8796.0, 8839.0)
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocessor.from_dict({**prep.to_dict(), "sigma_clip": 3})
    with pytest.raises(ValueError, match="resolving_power must be > 0"):
        Preprocessor(resolving_power=-5)
    with pytest.raises(ValueError, match="unknown normalisation_options"):
        Preprocessor(normalisation_options={"order": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        Preprocessor.from_json("{nope")


def test_preprocessor_same_path_for_synthetic_and_observed():
    fine = np.arange(8780.0, 8860.0, 0.005)
    synthetic = Spectrum(fine, 2e13 * absorption(fine, 0.02))
    observed_wave = np.arange(8790.0, 8850.0, 0.03)
    # The observed star: the same lines seen through a R = 94,600 spectrograph, other units,
    # coarser sampling, a sloped continuum.
    seen = np.interp(observed_wave, fine,
                     instrumental_broadening(fine, absorption(fine, 0.02), 94600.0))
    observed = Spectrum(observed_wave, 1e4 * seen * (1 + 0.001 * (observed_wave - 8790)),
                        metadata={"resolving_power": 94600.0, "source": "obs"})
    prep = Preprocessor(resolving_power=94600)
    a, b = prep(synthetic), prep(observed)
    assert len(a) == len(b) == 3501 and a.flux.min() >= 0 and a.flux.max() <= 1
    # Same star, different units, sampling and slope: the same model input.
    assert np.sqrt(np.mean((a.flux - b.flux) ** 2)) < 0.03
    assert json.loads(a.metadata["preprocessing"]) == prep.to_dict()
    rotated = prep(synthetic, vsini=20.0)
    assert np.min(rotated.flux) > np.min(a.flux) + 0.05   # rotation fills the line cores
    air = Spectrum(vacuum_to_air(fine), 2e13 * absorption(fine, 0.02),
                   metadata={"medium": "air"})
    np.testing.assert_allclose(prep(air).flux, a.flux, atol=2e-3)
    unknown = Spectrum(fine, 2e13 * absorption(fine, 0.02), metadata={"medium": "unknown"})
    with pytest.warns(UserWarning, match="medium is 'unknown'"):
        prep(unknown)
    with pytest.raises(ValueError, match="plus 5 A margin needs 8795.000-8840.000 A"):
        prep(Spectrum(np.arange(8797.0, 8850.0, 0.01), np.ones(5300)))


def test_preprocessor_on_a_real_hpf_spectrum():
    path = shared_file("observed/hpf/GJ_699_Slope-20190319T114849_R01.optimal.fits")
    prep = Preprocessor(resolving_power=94600)
    spectrum = read_spectrum(path, window=prep.span)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prep(spectrum)
    assert len(prepared) == 3501 and np.all(np.isfinite(prepared.flux))
    assert 0 <= prepared.flux.min() < 0.8 and prepared.flux.max() == 1.0
    assert np.median(prepared.flux) > 0.9
    assert prepared.sigma is not None and np.all(prepared.sigma > 0)


@settings(max_examples=60, deadline=None)
@given(
    flux=arrays(np.float64, st.integers(0, 200),
                elements=st.floats(allow_nan=True, allow_infinity=True)
                | st.floats(-1e30, 1e30)),
    step=st.floats(0.001, 2.0),
)
def test_preprocessing_arbitrary_arrays_error_or_valid(flux, step):
    """Arbitrary flux: a ValueError with a message, or a finite result in [0, 1]."""
    grid = WavelengthGrid(8800.0, 8800.0 + 0.5 * max(flux.size, 2) * step, step)
    prep = Preprocessor(grid, margin=0.1, resolving_power=None)
    wave = 8799.0 + step * np.arange(flux.size)
    try:
        result = prep(Spectrum(wave, flux))
    except ValueError as error:
        assert str(error)
        return
    assert np.all(np.isfinite(result.flux))
    assert result.flux.min() >= 0 and result.flux.max() <= 1


# -- radial velocities -----------------------------------------------------------------------
def test_radial_velocity_recovers_an_injected_shift_and_uses_berv():
    template_wave = np.arange(8770.0, 8870.0, 0.01)
    template = Spectrum(template_wave, absorption(template_wave, 0.06), metadata={"source": "tpl"})
    wave = np.arange(8795.0, 8840.0, 0.015)
    rng = np.random.default_rng(3)
    for rv in (-41.7, 0.0, 17.25):
        flux = absorption(wave / (1 + rv / C_KMS), 0.06) + rng.normal(0, 0.005, wave.size)
        observed = Spectrum(wave, flux, metadata={"berv": 12.5, "source": "obs"})
        result = radial_velocity(observed, template, rv_min=-100, rv_max=100, rv_step=0.2)
        assert result.rv == pytest.approx(rv, abs=0.05)
        assert 0 < result.uncertainty < 0.1
        assert result.barycentric_rv == pytest.approx(result.rv + 12.5)
        rest, _ = to_rest_frame(observed, template, rv_min=-100, rv_max=100)
        assert rest.metadata["rv"] == pytest.approx(rv, abs=0.05)
        np.testing.assert_allclose(rest.flux, absorption(rest.wavelength, 0.06), atol=0.05)
    shifted = doppler_shift(template, 30.0)
    back = doppler_shift(shifted, 30.0, to_rest=True)
    np.testing.assert_allclose(back.wavelength, template.wavelength, rtol=1e-14)
    # One broad line 90 km/s away from the template's: the CCF rises to the edge of +-20 km/s.
    single = Spectrum(template_wave, 1 - 0.5 * np.exp(-0.5 * ((template_wave - 8817) / 0.5) ** 2))
    far = Spectrum(wave, 1 - 0.5 * np.exp(-0.5 * ((wave / (1 + 90 / C_KMS) - 8817) / 0.5) ** 2))
    with pytest.raises(ValueError, match="peaks at the edge"):
        radial_velocity(far, single, rv_min=-20, rv_max=20)
    with pytest.raises(ValueError, match="overlap in 0 pixels"):
        radial_velocity(Spectrum(wave + 500, np.ones(wave.size)), template)
