"""Tests of the spectrum simulator (mdwarf_zoo.spectra.simulate): trends, determinism, knobs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace

import numpy as np
import pytest

from mdwarf_zoo.spectra.grid import MB24_GRID, WavelengthGrid
from mdwarf_zoo.spectra.simulate import (
    ATOMIC_LINES,
    LABEL_RANGES,
    GapConfig,
    line_list,
    observe,
    synthetic_spectra,
    validate_labels,
)

BASE = (3300.0, 5.0, 0.0, 2.0)


def depth(flux: np.ndarray) -> np.ndarray:
    """Mean absorption of each spectrum, 1 - <flux>."""
    return 1.0 - flux.mean(axis=-1)


def vary(column: int, values) -> np.ndarray:
    labels = np.tile(BASE, (len(values), 1))
    labels[:, column] = values
    return labels


@pytest.fixture(scope="module")
def base_flux() -> np.ndarray:
    return synthetic_spectra(
        [BASE, (2600.0, 5.2, -0.3, 3.0), (4200.0, 4.7, 0.4, 15.0)],
    )


BASE_LABELS = np.array([BASE, (2600.0, 5.2, -0.3, 3.0), (4200.0, 4.7, 0.4, 15.0)])


def test_shape_range_and_grid(base_flux):
    assert base_flux.shape == (3, 3501)
    assert base_flux.dtype == np.float64
    assert np.all(np.isfinite(base_flux))
    assert base_flux.min() > 0.05 and base_flux.max() <= 1.0 + 1e-12
    # Real strong lines show: Fe I 8824.22 A (air) = 8826.64 A (vacuum) is a deep line.
    wavelength = MB24_GRID.wavelength
    core = np.abs(wavelength - 8826.64) < 0.05
    assert base_flux[0, core].min() < 0.6
    other = WavelengthGrid(8700.0, 8900.0, 0.02)
    assert synthetic_spectra([BASE], other).shape == (1, len(other))


def test_line_list_has_real_lines_and_is_seeded():
    species = {line.species for line in ATOMIC_LINES}
    assert {"Fe I", "Mg I", "Al I"} <= species
    assert all(8750 < line.wavelength < 8860 for line in ATOMIC_LINES)
    assert line_list(0) == line_list(0)
    assert line_list(0) != line_list(1)
    # The simulator's list is the table fitted to PHOENIX-ACES (tests/test_simulator_phoenix.py).
    lines = line_list(3)
    assert {line.origin for line in lines} == {"phoenix"}
    assert {line.species for line in lines} <= {"atomic", "molecular", "band"}
    assert [line.wavelength for line in lines] == [line.wavelength for line in line_list(0)]
    # The fit never saw a line identification, yet PHOENIX's strongest feature is the real
    # Fe I 8824 (air) line, and the fitted temperature sensitivity follows the excitation
    # energy: high-excitation lines (Mg I 8807, Fe I 8838 air; 4.3-5.0 eV) strengthen towards
    # hot stars more than low-excitation ones (Fe I 8804, 8824; 2.2-2.3 eV), as Boltzmann says.
    fitted = [line for line in line_list(0) if line.species != "band"]
    wavelength = np.array([line.wavelength for line in fitted])
    strength = 10.0 ** np.array([line.log_gf for line in fitted])
    chi = np.array([line.excitation for line in fitted])
    per_bin = np.histogram(wavelength, np.arange(8780.0, 8855.0, 0.2), weights=strength)[0]

    def near(real):
        mask = np.abs(wavelength - real.wavelength) < 0.1
        return strength[mask].sum(), np.average(chi[mask], weights=strength[mask])

    fe_8824, mg_8807, fe_8838, fe_8804 = (
        near(next(line for line in ATOMIC_LINES if abs(line.wavelength - w) < 0.05))
        for w in (8826.64, 8809.18, 8840.86, 8807.04))
    assert fe_8824[0] > np.percentile(per_bin, 99)
    assert min(mg_8807[1], fe_8838[1]) > max(fe_8824[1], fe_8804[1])


def test_metal_rich_is_more_absorbed():
    flux = synthetic_spectra(vary(2, [-1.0, -0.5, 0.0, 0.4, 0.8]))
    assert np.all(np.diff(depth(flux)) > 0.005)


def test_cool_stars_have_stronger_molecular_absorption():
    teff = [2300.0, 2700.0, 3100.0, 3500.0, 3900.0, 4500.0]
    flux = synthetic_spectra(vary(0, teff))
    assert np.all(np.diff(depth(flux)) < 0)
    assert depth(flux)[0] - depth(flux)[-1] > 0.15
    # Cool and warm spectra differ clearly, pixel by pixel.
    assert np.sqrt(np.mean((flux[0] - flux[-1]) ** 2)) > 0.1


def test_boltzmann_and_saha_trends():
    """Low-excitation neutral lines weaken relative to high-excitation ones as Teff falls."""
    from mdwarf_zoo.spectra import simulate

    layer = simulate._layer(vary(0, [2500.0, 4500.0]))
    low = simulate.Line("Ti I", 8810.0, 0.8, -1.5)
    high = simulate.Line("Fe I", 8810.0, 4.6, -1.5)
    ratio = simulate._line_strength(high, layer) / simulate._line_strength(low, layer)
    assert ratio[1] > 10 * ratio[0]
    # Saha: more Ca is ionised at 4500 K than at 2500 K, so Ca II gains on Ca I.
    ion = simulate._line_strength(simulate.Line("Ca II", 8810.0, 1.7, -1.0), layer)
    neutral = simulate._line_strength(simulate.Line("Ca I", 8810.0, 1.7, -1.0), layer)
    assert (ion / neutral)[1] > 100 * (ion / neutral)[0]


def test_pressure_damping_grows_with_logg():
    """The lines' van der Waals (Lorentz) part grows with log g: the profile's Fourier
    transform, exp(-2 pi^2 sigma^2 f^2 - 2 pi gamma f), falls faster at high log g."""
    from mdwarf_zoo.spectra import simulate

    layer = simulate._layer(vary(1, [4.0, 5.5]))
    frequency = np.array([0.0, 2.0, 4.0])
    transfer = simulate.line_transfer(frequency, 8817.0, layer, 1.0)
    assert np.allclose(transfer[:, 0], 1.0)
    # The Gaussian part cancels in ln T(4) - 4 ln T(2) = 8 pi gamma (gamma: Lorentz HWHM, A).
    gamma = (np.log(transfer[:, 2]) - 4.0 * np.log(transfer[:, 1])) / (8.0 * np.pi)
    assert gamma[1] > 5.0 * gamma[0] > 0


def test_vsini_smooths():
    flux = synthetic_spectra(vary(3, [0.0, 5.0, 20.0, 60.0]))
    roughness = np.abs(np.diff(flux, n=2, axis=1)).mean(axis=1)
    assert np.all(np.diff(roughness) < 0)
    assert np.all(np.diff(flux.std(axis=1)) < 0)
    # Broadening redistributes absorption: the mean depth changes little.
    assert np.ptp(depth(flux)) < 0.01


@pytest.mark.parametrize("column, step", [(0, 10.0), (1, 0.02), (2, 0.02), (3, 0.2)])
def test_smooth_in_every_label(column, step):
    values = BASE[column] + step * np.arange(5) + (2.0 if column == 3 else 0.0)
    flux = synthetic_spectra(vary(column, values))
    differences = np.abs(np.diff(flux, axis=0)).max(axis=1)
    assert differences.max() < 0.03
    # Nearly linear over small steps: second differences much smaller than first.
    assert np.abs(np.diff(flux, n=2, axis=0)).max() < 0.3 * differences.max()


def test_deterministic_and_independent_of_chunking_and_workers():
    labels = np.array([BASE, (2900.0, 4.9, 0.2, 8.0)] * 70)  # 140 rows: two chunks
    first = synthetic_spectra(labels)
    assert np.array_equal(first, synthetic_spectra(labels))
    assert np.array_equal(first[:2], synthetic_spectra(labels[:2]))
    assert np.array_equal(first, synthetic_spectra(labels, workers=2))
    assert not np.array_equal(first[:2], synthetic_spectra(labels[:2], seed=1))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([[3300, 5.0, np.nan, 2.0]], r"row 0: metallicity = nan"),
        ([BASE, [5200, 5.0, 0.0, 2.0]], r"row 1: teff = 5200\.0 is outside .* 2300\.\.4600 K"),
        ([BASE, BASE, [3300, 5.0, 0.0, -1.0]], r"row 2: vsini = -1\.0"),
        ([[3300, 7.0, 0.0, 2.0]], r"logg = 7\.0"),
        ([[3300, 5.0, 0.0]], r"shape \(n, 4\)"),
    ],
)
def test_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        synthetic_spectra(labels)
    with pytest.raises(ValueError, match=message):
        validate_labels(labels)


def test_required_label_ranges_are_covered():
    assert LABEL_RANGES["teff"][0] <= 2300 and LABEL_RANGES["teff"][1] >= 4500
    assert LABEL_RANGES["logg"][0] <= 4.0 and LABEL_RANGES["logg"][1] >= 5.5
    assert LABEL_RANGES["metallicity"][0] <= -1.0 and LABEL_RANGES["metallicity"][1] >= 0.8
    assert LABEL_RANGES["vsini"][0] <= 0.0 and LABEL_RANGES["vsini"][1] >= 60.0
    corners = [
        [t, g, m, v] for t in (2300, 4500) for g in (4.0, 5.5) for m in (-1, 0.8) for v in (0, 60)
    ]
    assert np.all(np.isfinite(synthetic_spectra(corners)))


# ------------------------------------------------------------------------------------------
# The observed domain


def test_observe_is_deterministic(base_flux):
    first = observe(base_flux, BASE_LABELS, seed=5)
    assert np.array_equal(first, observe(base_flux, BASE_LABELS, seed=5))
    assert not np.array_equal(first, observe(base_flux, BASE_LABELS, seed=6))
    # Row i uses default_rng([seed, i]): the same row in a longer set gets the same noise.
    doubled = observe(np.vstack([base_flux, base_flux]), np.vstack([BASE_LABELS] * 2), seed=5)
    assert np.array_equal(doubled[:3], first)


def test_no_gap_and_no_noise_is_identity(base_flux):
    result = observe(base_flux, BASE_LABELS, snr=None, gap=GapConfig.none())
    assert np.array_equal(result, base_flux)


def test_noise_has_the_requested_snr(base_flux):
    flat = np.full((3, 3501), 1.0)
    noisy = observe(flat, BASE_LABELS, snr=150, seed=2, gap=GapConfig.none())
    assert np.std(noisy - flat) == pytest.approx(1 / 150, rel=0.05)
    noisy = observe(flat, BASE_LABELS, snr=50, seed=2, gap=GapConfig.none())
    assert np.std(noisy - flat) == pytest.approx(1 / 50, rel=0.05)


# Each knob alone (on top of no gap, no noise), and what it must and must not change.
KNOBS = {
    "missing_lines": 40,
    "loggf_scatter": 0.15,
    "loggf_bias": 0.1,
    "damping_scale": 1.5,
    "molecular_scale": 1.25,
    "resolving_power_scale": 0.8,
    "rv_residual": 2.0,
    "continuum_error": 0.02,
    "continuum_offset": -0.02,
    "telluric_depth": 0.05,
    "bad_pixel_fraction": 0.01,
    "cosmic_rays": 5.0,
}


def test_every_knob_is_tested():
    knob_names = {f.name for f in fields(GapConfig)} - {"line_list_seed"}
    assert set(KNOBS) == knob_names


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_each_knob_changes_the_spectrum(base_flux, knob):
    neutral = GapConfig.none()
    result = observe(
        base_flux, BASE_LABELS, snr=None, seed=1, gap=replace(neutral, **{knob: KNOBS[knob]})
    )
    difference = result - base_flux
    assert np.all(np.isfinite(result))
    assert np.abs(difference).max() > 1e-3, f"{knob} changed nothing"
    mean_change = difference.mean(axis=1)
    changed_pixels = (np.abs(difference) > 1e-9).mean(axis=1)
    if knob in {"missing_lines", "loggf_bias", "molecular_scale"}:
        assert np.all(mean_change < -1e-4)  # more absorption
    if knob == "continuum_offset":
        np.testing.assert_allclose(result, base_flux / 0.98, rtol=1e-12)
    if knob == "continuum_error":
        ratio = result / base_flux
        assert np.abs(np.diff(ratio, n=3, axis=1)).max() < 1e-9  # a smooth quadratic factor
    if knob == "bad_pixel_fraction":
        zeros = (result == 0.0) & (base_flux != 0.0)
        assert 0.003 < zeros.mean() < 0.03
        assert np.array_equal(result[~zeros], base_flux[~zeros])  # nothing else changed
    if knob == "cosmic_rays":
        assert np.all(difference >= 0)  # spikes only add
        assert 0 < changed_pixels.max() < 0.01
    if knob == "telluric_depth":
        assert np.all(difference <= 1e-15)  # absorption only
        assert np.abs(difference).max() < 0.06
    if knob in {"resolving_power_scale", "rv_residual"}:
        # Redistributes flux, adds no absorption (away from the edges the shift uncovers).
        assert np.abs(difference[:, 50:-50].mean(axis=1)).max() < 2e-4
    if knob == "resolving_power_scale":
        assert np.all(result.std(axis=1) < base_flux.std(axis=1))


def test_physics_knobs_match_a_recomputed_spectrum(base_flux):
    """For simulator flux, the physics knobs give exactly the perturbed spectrum."""
    gap = replace(GapConfig.none(), damping_scale=2.0)
    once = observe(base_flux, BASE_LABELS, snr=None, gap=gap)
    # Laid on other flux, the same difference is added.
    shifted = observe(base_flux * 0.99, BASE_LABELS, snr=None, gap=gap)
    np.testing.assert_allclose(shifted - once, base_flux * 0.99 - base_flux, atol=1e-12)


def test_default_gap_makes_observed_spectra_more_absorbed(base_flux):
    observed = observe(base_flux, BASE_LABELS, seed=0)
    assert np.all(depth(observed) > depth(base_flux))
    rms = np.sqrt(np.mean((observed - base_flux) ** 2, axis=1))
    assert np.all((rms > 0.01) & (rms < 0.2))


def test_observe_rejects_bad_input(base_flux):
    with pytest.raises(ValueError, match="unknown gap knob.*damping"):
        observe(base_flux, BASE_LABELS, dampin_scale=2.0)
    with pytest.raises(ValueError, match="rv_residual must be a number in"):
        observe(base_flux, BASE_LABELS, rv_residual=-1.0)
    with pytest.raises(ValueError, match="snr must be"):
        observe(base_flux, BASE_LABELS, snr=0)
    with pytest.raises(ValueError, match=r"shape .* \(3, 3501\)"):
        observe(base_flux[:, :100], BASE_LABELS)
    with pytest.raises(ValueError, match="row 1 contains a non-finite"):
        observe(np.where(np.arange(3)[:, None] == 1, np.nan, base_flux), BASE_LABELS)
    with pytest.raises(ValueError, match="row 0: teff"):
        observe(base_flux, [[9000, 5, 0, 2]] * 3)


def test_knob_defaults_are_documented():
    doc = GapConfig.__doc__
    for field in fields(GapConfig):
        assert field.name in doc
        assert f"default {field.default}" in doc.replace("default 5e-4", "default 0.0005"), (
            field.name
        )


def test_spectra_subpackage_does_not_import_keras():
    """The simulator runs without Keras/TensorFlow (imported without the package __init__)."""
    root = str(__import__("mdwarf_zoo").__path__[0])
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('mdwarf_zoo'); pkg.__path__ = [sys.argv[1]]\n"
        "sys.modules['mdwarf_zoo'] = pkg\n"
        "import mdwarf_zoo.spectra.simulate\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code, root], check=True)
