"""Observed-spectrum readers on the real files in shared/data and on files written in each
layout, the CARACAL writer, and the Spectrum type."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import shared_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mdwarf_zoo.spectra.grid import MB24_GRID, Spectrum, WavelengthGrid
from mdwarf_zoo.spectra.observed import merge_orders, read_spectrum, write_caracal

HPF = "observed/hpf/"


# -- the Spectrum type -----------------------------------------------------------------------
def test_spectrum_rejects_bad_arrays_naming_the_source():
    w = np.array([1.0, 2.0, 3.0])
    meta = {"source": "x.fits"}
    with pytest.raises(ValueError, match="x.fits: flux has 1 non-finite.*index 1"):
        Spectrum(w, [1.0, np.nan, 1.0], metadata=meta)
    with pytest.raises(ValueError, match="x.fits: flux has 1 non-finite"):
        Spectrum(w, [1.0, np.inf, 1.0], metadata=meta)
    with pytest.raises(ValueError, match="duplicate at index 1: 2.0 then 2.0"):
        Spectrum([1.0, 2.0, 2.0], [1, 1, 1], metadata=meta)
    with pytest.raises(ValueError, match="unsorted"):
        Spectrum([1.0, 3.0, 2.0], [1, 1, 1], metadata=meta)
    with pytest.raises(ValueError, match="empty"):
        Spectrum([], [], metadata=meta)
    with pytest.raises(ValueError, match="flux has 2 points but wavelength has 3"):
        Spectrum(w, [1, 1], metadata=meta)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        Spectrum(w, [1, 1, 1], [0.1, -1, 0.1], metadata=meta)
    assert len(MB24_GRID) == 3501 and MB24_GRID.wavelength[-1] == pytest.approx(8835.0)
    assert WavelengthGrid.from_dict(MB24_GRID.to_dict()) == MB24_GRID


def test_spectrum_accepts_a_specutils_spectrum():
    specutils = pytest.importorskip("specutils")
    import astropy.units as u
    from astropy.nddata import StdDevUncertainty

    wave = np.linspace(880.0, 883.5, 100) * u.nm
    flux = np.linspace(1, 2, 100) * u.Unit("erg / (s cm2 AA)")
    spectrum = specutils.Spectrum(flux=flux, spectral_axis=wave,
                                  uncertainty=StdDevUncertainty(np.full(100, 0.1)))
    converted = Spectrum.coerce(spectrum)
    assert converted.wavelength[0] == pytest.approx(8800.0)
    np.testing.assert_allclose(converted.sigma, 0.1)
    np.testing.assert_allclose(converted.flux, flux.value)
    with pytest.raises(ValueError, match="expected a mdwarf_zoo Spectrum"):
        Spectrum.coerce(np.ones(3))


# -- real files ------------------------------------------------------------------------------
def test_carmenes_nir_merged_table():
    path = shared_file("observed/carmenes/car-20160325T05h28m38s-sci-gtoc-nir_A_tell.fits")
    spectrum = read_spectrum(path)
    assert len(spectrum) == 108553
    assert spectrum.wavelength[0] == pytest.approx(9603.57, abs=0.01)
    assert spectrum.metadata["object"] == "J17578+046"
    assert spectrum.metadata["berv"] == pytest.approx(26.264166)
    assert spectrum.metadata["resolving_power"] == 80400.0
    assert spectrum.metadata["medium"] == "vacuum"
    assert 0.7 < np.median(spectrum.flux) < 0.85


def test_hpf_named_extensions_order_and_window():
    path = shared_file(HPF + "GJ_699_Slope-20190319T114849_R01.optimal.fits")
    spectrum = read_spectrum(path, flux_ext="Sci Flux", wave_ext="Sci Wavl", order=6)
    assert spectrum.metadata["orders"] == [6] and spectrum.metadata["object"] == "GJ_699"
    assert spectrum.wavelength[0] < 8795 and spectrum.wavelength[-1] > 8840
    assert 2000 < len(spectrum) <= 2048  # NaN edge pixels removed
    by_window = read_spectrum(path, window=(8795.0, 8840.0))
    assert by_window.metadata["orders"] == [6]
    assert by_window.sigma is not None and np.all(by_window.sigma > 0)
    np.testing.assert_array_equal(by_window.flux, spectrum.flux)
    merged = read_spectrum(path)
    assert merged.metadata["orders"] == list(range(28))
    assert merged.wavelength[0] < 8100 and merged.wavelength[-1] > 12700
    # A window that straddles two orders merges them.
    straddle = read_spectrum(path, window=(8890.0, 8915.0))
    assert straddle.metadata["orders"] == [6, 7]
    with pytest.raises(ValueError, match="no order reaches the window 5000-5100 A"):
        read_spectrum(path, window=(5000.0, 5100.0))
    with pytest.raises(ValueError, match="order=40 but the file has 28 orders"):
        read_spectrum(path, order=40)


def test_hpf_gj273_needs_the_lfc_wavelength_file():
    path = shared_file(HPF + "GJ_273_Slope-20180302T021512_R01.optimal.fits")
    wavecal = shared_file(HPF + "LFC_wavecal_scifiber_v2.fits")
    with pytest.raises(ValueError, match="no wavelength .* wave_file="):
        read_spectrum(path, order=6)
    spectrum = read_spectrum(path, flux_ext="Sci Flux", wave_file=wavecal, order=6)
    assert spectrum.metadata["object"] == "GJ_273"
    assert spectrum.wavelength[0] == pytest.approx(8781.9, abs=0.1)


def test_odusseas_linear_1d_and_unknown_layout():
    path = shared_file("observed/odusseas_1d/HARPS_GJ163.fits")
    spectrum = read_spectrum(path)
    header = fits.getheader(path)
    assert spectrum.wavelength[0] == pytest.approx(header["CRVAL1"])
    assert np.diff(spectrum.wavelength[:10]) == pytest.approx(0.01)
    assert spectrum.metadata["medium"] == "unknown"
    assert read_spectrum(path, medium="air").metadata["medium"] == "air"
    wavecal = shared_file(HPF + "LFC_wavecal_scifiber_v2.fits")
    with pytest.raises(ValueError, match=r"unknown FITS layout; found \[0\] PRIMARY PrimaryHDU "
                       r"shape=\(28, 2048\)"):
        read_spectrum(wavecal)


# -- files written in each layout ------------------------------------------------------------
def _echelle(n_orders=3, n_pixels=400):
    starts = 8780.0 + 25.0 * np.arange(n_orders)
    wave = starts[:, None] + 0.1 * np.arange(n_pixels)[None, :]
    flux = 1.0 - 0.3 * np.exp(-0.5 * ((wave - 8817.0) / 0.2) ** 2)
    return wave, flux


def test_caracal_writer_round_trip(tmp_path):
    wave, flux = _echelle()
    header = {"OBJECT": "J17578+046", "DATE-OBS": "2016-03-25T05:28:38",
              "CARACAL BERV": 26.26, "CARACAL BJD": 2457472.73}
    path = write_caracal(tmp_path / "car-20160325T05h28m38s-sci-gtoc-vis_A.fits", wave, flux,
                         sigma=0.01 * flux, continuum=np.ones_like(flux), header=header)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SPEC", "CONT", "SIG", "WAVE"]
        assert hdul["SPEC"].data.shape == (3, 400) and hdul["WAVE"].data.dtype == ">f8"
        assert "HIERARCH CARACAL BERV = 26.26" in str(hdul[0].header)
    spectrum = read_spectrum(path, window=(8830.0, 8850.0))
    assert spectrum.metadata["layout"] == "caracal" and spectrum.metadata["orders"] == [2]
    assert spectrum.metadata["berv"] == pytest.approx(26.26)
    assert spectrum.metadata["resolving_power"] == 94600.0
    merged = read_spectrum(path)
    assert np.all(np.diff(merged.wavelength) > 0)
    assert merged.wavelength[0] == wave[0, 0] and merged.wavelength[-1] == wave[-1, -1]
    with pytest.raises(FileExistsError):
        write_caracal(path, wave, flux)
    with pytest.raises(ValueError, match="SPEC has shape"):
        write_caracal(tmp_path / "b.fits", wave, flux[:, :10])


def test_serval_template_with_ln_lambda(tmp_path):
    wave, flux = _echelle(2)
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(flux, name="SPEC"),
            fits.ImageHDU(0.01 * flux, name="SIG"), fits.ImageHDU(np.log(wave), name="WAVE"),
            fits.ImageHDU(np.zeros_like(flux), name="QMAP")]
    fits.HDUList(hdus).writeto(tmp_path / "tpl.fits")
    spectrum = read_spectrum(tmp_path / "tpl.fits", order=1)
    assert spectrum.metadata["layout"] == "serval"
    np.testing.assert_allclose(spectrum.wavelength, wave[1], rtol=1e-12)


def test_tables_and_1d_images(tmp_path):
    wave, flux = _echelle(1)
    table = fits.BinTableHDU.from_columns([
        fits.Column("WAVELENGTH", "D", array=wave[0]),
        fits.Column("FLUX", "D", array=flux[0]),
        fits.Column("ERR", "D", array=np.full(400, 0.02)),
    ])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "t.fits")
    spectrum = read_spectrum(tmp_path / "t.fits")
    np.testing.assert_array_equal(spectrum.wavelength, wave[0])
    np.testing.assert_allclose(spectrum.sigma, 0.02)
    image = fits.PrimaryHDU(flux[0])
    image.header.update(CRVAL1=8780.0, CDELT1=0.1, CRPIX1=1.0, CUNIT1="Angstrom",
                        AIRORVAC="air")
    image.writeto(tmp_path / "l.fits")
    linear = read_spectrum(tmp_path / "l.fits")
    np.testing.assert_allclose(linear.wavelength, wave[0])
    assert linear.metadata["medium"] == "air"
    nm = fits.PrimaryHDU(flux[0])
    nm.header.update(CRVAL1=878.0, CDELT1=0.01, CUNIT1="nm")
    nm.writeto(tmp_path / "nm.fits")
    np.testing.assert_allclose(read_spectrum(tmp_path / "nm.fits").wavelength, wave[0])
    # Named echelle extensions of any instrument.
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(flux, name="FLUXES"),
                  fits.ImageHDU(wave, name="WAVES")]).writeto(tmp_path / "e.fits")
    named = read_spectrum(tmp_path / "e.fits", flux_ext="FLUXES", wave_ext="WAVES")
    np.testing.assert_array_equal(named.flux, flux[0])
    with pytest.raises(ValueError, match="no extension named 'NOPE'.*FLUXES"):
        read_spectrum(tmp_path / "e.fits", flux_ext="NOPE", wave_ext="WAVES")


def test_nan_pixels_are_removed_and_missing_files_reported(tmp_path):
    wave, flux = _echelle(1)
    flux[0, 100:110] = np.nan
    path = write_caracal(tmp_path / "car-x-vis_A.fits", wave, flux)
    spectrum = read_spectrum(path)
    assert len(spectrum) == 390 and np.all(np.isfinite(spectrum.flux))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_spectrum(tmp_path / "missing.fits")
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all")
    with pytest.raises(ValueError, match="junk.fits"):
        read_spectrum(tmp_path / "junk.fits")


def test_merge_orders_keeps_each_overlap_once():
    wave = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])
    flux = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    w, f, _, used = merge_orders(wave, flux)
    assert used == [0, 1] and np.all(np.diff(w) > 0)
    np.testing.assert_array_equal(w, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(f, [1, 1, 1, 2, 2, 2])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flux=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 30)),
                elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
    step=st.floats(-1.0, 1.0),
)
def test_caracal_round_trip_with_arbitrary_arrays(tmp_path_factory, flux, step):
    """Any array either raises a clear ValueError or reads back as a clean Spectrum."""
    wave = 8800.0 + step * np.arange(flux.size).reshape(flux.shape)
    path = tmp_path_factory.mktemp("h") / "car-h-vis_A.fits"
    try:
        write_caracal(path, wave, flux)
    except ValueError as error:
        assert "write_caracal" in str(error)
        return
    try:
        spectrum = read_spectrum(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert np.all(np.isfinite(spectrum.flux)) and np.all(np.diff(spectrum.wavelength) > 0)
