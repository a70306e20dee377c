"""The domain-gap scale: the prior recomputed from the real tables, and measure_gap."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table, join
from conftest import shared_file

from mdwarf_zoo.pipeline.gap import (
    COVERAGE_LEVEL,
    GAP_PRIOR,
    check_error_scale,
    check_gap,
    coverage_profile,
    coverage_scale,
    measure_gap,
    scale_factors,
)
from mdwarf_zoo.spectra.simulate import GapConfig, observe, synthetic_spectra

TABLES = "tables/carmenes_params"
LABELS = np.array(
    [
        [3000.0, 5.0, 0.0, 3.0],
        [3300.0, 4.9, -0.2, 5.0],
        [3600.0, 4.8, 0.3, 2.0],
        [3900.0, 4.7, 0.1, 8.0],
    ]
)


def test_gap_prior_is_the_cnn_minus_mb24_rms_over_the_carmenes_stars():
    """GAP_PRIOR, to its printed digits: the rms of (Passegger+2020 CNN, the *_MODE columns of
    lit_dl.csv) - (MB24) over the stars matched on karmn; v sin i only where the literature
    value (VSINI_VERA) is a measurement above its 1.5 km/s upper-limit flag."""
    cnn = Table.read(shared_file(f"{TABLES}/lit_dl.csv"), format="ascii.csv")
    mb24 = Table.read(
        shared_file(f"{TABLES}/masbuitrago2024_final_estimations.csv"), format="ascii.csv"
    )
    cnn.rename_column("KARMN", "karmn")
    both = join(cnn, mb24, keys="karmn")
    assert len(both) == 286
    measured = np.ma.filled(both["VSINI_VERA"], 0.0) > 1.5
    assert measured.sum() == 39
    columns = {
        "teff": ("TEFF", "Teff"),
        "logg": ("LOGG", "logg"),
        "mh": ("ZETA", "[M/H]"),
        "vsini": ("VSINI", "vsini"),
    }
    digits = {"teff": 1, "logg": 3, "mh": 3, "vsini": 2}
    for name, (theirs, ours) in columns.items():
        difference = np.asarray(both[f"{theirs}_MODE"], float) - np.asarray(both[ours], float)
        if name == "vsini":
            difference = difference[measured]
        rms = float(np.sqrt(np.mean(difference**2)))
        assert round(rms, digits[name]) == GAP_PRIOR[name], (name, rms)


def test_check_gap_accepts_known_parameters_and_refuses_the_rest():
    assert check_gap({"teff": 60, "vsini": np.float32(1.5)}, "here") == {"teff": 60.0, "vsini": 1.5}
    assert check_gap({}, "here") == {}
    with pytest.raises(ValueError, match=r"here: gap names unknown parameter 'feh'"):
        check_gap({"feh": 0.1}, "here")
    with pytest.raises(ValueError, match=r"here: gap\['logg'\] = -0.1; expected a finite"):
        check_gap({"logg": -0.1}, "here")


def linear_predictor(flux: np.ndarray) -> dict[str, np.ndarray]:
    """A deterministic toy: Teff and [M/H] as fixed linear functions of the flux."""
    weights = np.linspace(-1.0, 1.0, flux.shape[1])
    return {"teff": 3000.0 + 500.0 * flux @ weights / flux.shape[1], "mh": flux.mean(axis=1)}


def test_measure_gap_excess_is_the_squared_error_the_observed_twins_add():
    flux = synthetic_spectra(LABELS)
    weights = np.linspace(-1.0, 1.0, flux.shape[1])

    def predictor(spectra):  # exact on the synthetic spectra, linear in what observe changes
        change = spectra - flux
        return {
            "teff": LABELS[:, 0] + 500.0 * change @ weights / flux.shape[1],
            "mh": LABELS[:, 2] + change.mean(axis=1),
        }

    excess = measure_gap(predictor, flux, LABELS, snr=150, seed=3)
    # Independently: the synthetic errors are 0, so the excess is the observed twins' rms error.
    change = observe(flux, LABELS, snr=150, seed=3) - flux
    expected = {
        "teff": np.sqrt(np.mean((500.0 * change @ weights / flux.shape[1]) ** 2)),
        "mh": np.sqrt(np.mean(change.mean(axis=1) ** 2)),
    }
    assert excess == pytest.approx(expected, rel=1e-9)
    assert min(excess.values()) > 0
    # A predictor worse on the synthetic spectra than on their twins adds nothing: floored at 0.
    worse = measure_gap(
        lambda f: {"mh": LABELS[:, 2] + 10.0 * (f is flux)}, flux, LABELS, snr=150, seed=3
    )
    assert worse == {"mh": 0.0}
    with pytest.raises(ValueError, match="kind must be 'excess' or 'shift', got 'rms'"):
        measure_gap(predictor, flux, LABELS, kind="rms")


def test_measure_gap_shift_is_the_rms_shift_of_the_predictions_under_observe():
    flux = synthetic_spectra(LABELS)
    shift = measure_gap(linear_predictor, flux, LABELS, snr=150, seed=3, kind="shift")
    # Independently: the observed twins, then the linear map of their difference.
    observed = observe(flux, LABELS, snr=150, seed=3)
    weights = np.linspace(-1.0, 1.0, flux.shape[1])
    difference = observed - flux
    expected_teff = np.sqrt(np.mean((500.0 * difference @ weights / flux.shape[1]) ** 2))
    expected_mh = np.sqrt(np.mean(difference.mean(axis=1) ** 2))
    assert shift == pytest.approx({"teff": expected_teff, "mh": expected_mh}, rel=1e-10)
    assert shift["teff"] > 0 and shift["mh"] > 0
    # No gap and no noise: the observed twins are the synthetic spectra, nothing moves.
    none = measure_gap(linear_predictor, flux, LABELS, snr=None, gap=GapConfig.none(), kind="shift")
    assert none == pytest.approx({"teff": 0.0, "mh": 0.0}, abs=1e-9)


def test_measure_gap_refuses_a_bad_predictor():
    flux = synthetic_spectra(LABELS[:2])
    with pytest.raises(ValueError, match="must return a non-empty dict"):
        measure_gap(lambda f: f.mean(axis=1), flux, LABELS[:2])
    with pytest.raises(ValueError, match="unknown parameter 'Teff'"):
        measure_gap(lambda f: {"Teff": f.mean(axis=1)}, flux, LABELS[:2])
    with pytest.raises(
        ValueError,
        match="predictions of 'teff' for the synthetic spectra must be 2 finite values, got shape",
    ):
        measure_gap(lambda f: {"teff": f.mean(axis=1)[:1]}, flux, LABELS[:2])


@pytest.mark.parametrize("draw", ["gaussian", "student_t"])
def test_coverage_scale_makes_the_errors_cover_68_percent_of_a_fresh_draw(draw):
    """Errors that are each star's true scale times 2 (too wide): ``c`` is the 68.27 %
    quantile of |z| of the residuals' distribution divided by 2, and the rescaled errors cover
    68 % of a new draw from the same distribution. Student-t with 3 degrees of freedom is the
    heavy-tailed case where rms-based errors over-cover."""
    rng = np.random.default_rng(4)

    def residuals_and_errors(n):
        width = rng.uniform(0.5, 2.0, n)  # a per-star scale, known up to the factor 2
        z = rng.normal(size=n) if draw == "gaussian" else rng.standard_t(3, size=n)
        return width * z, 2.0 * width

    residuals, sigma = residuals_and_errors(20000)
    c = coverage_scale(residuals, sigma)
    quantile = {"gaussian": 1.0, "student_t": 1.1969}[draw]  # |z| at 68.27 %: N(0,1), t(3)
    assert c == pytest.approx(quantile / 2, rel=0.03)
    assert np.mean(np.abs(residuals) <= c * sigma) == pytest.approx(COVERAGE_LEVEL, abs=1e-3)
    fresh, fresh_sigma = residuals_and_errors(20000)
    assert np.mean(np.abs(fresh) <= c * fresh_sigma) == pytest.approx(0.6827, abs=0.01)
    # The rms-based scale (what the validation term is) over-covers the heavy-tailed draw.
    rms = np.sqrt(np.mean((residuals / sigma) ** 2))
    coverage_of_rms = np.mean(np.abs(fresh) <= rms * fresh_sigma)
    assert coverage_of_rms > (0.75 if draw == "student_t" else 0.66)


def test_coverage_scale_uses_the_error_on_the_side_of_the_truth():
    """Estimates above the truth (residual > 0) are judged by the lower error, those below by
    the upper one, as a coverage of [value - lower, value + upper] counts them."""
    residuals = np.concatenate([np.full(50, 2.0), np.full(50, -1.0)])
    lower, upper = np.full(100, 4.0), np.full(100, 1.0)
    # Ratios: 0.5 for the 50 estimates above the truth, 1.0 for the 50 below.
    assert coverage_scale(residuals, np.stack([lower, upper]), level=0.4) == 0.5
    assert coverage_scale(residuals, np.stack([lower, upper]), level=0.6) == 1.0
    # Swapped sides: 2.0 above, 0.25 below.
    assert coverage_scale(residuals, np.stack([upper, lower]), level=0.4) == 0.25


@pytest.mark.parametrize(
    ("residuals", "sigma", "level", "match"),
    [
        (
            np.ones(29),
            np.ones(29),
            0.6827,
            r"residuals must be \(n,\) with n >= 30 stars, got "
            r"shape \(29,\)",
        ),
        (np.ones((40, 2)), np.ones(40), 0.6827, r"residuals must be \(n,\).*\(40, 2\)"),
        (
            np.ones(40),
            np.ones(39),
            0.6827,
            r"sigma must be \(40,\) errors or \(2, 40\) lower "
            r"and upper errors for the 40 residuals, got shape \(39,\)",
        ),
        (np.r_[np.ones(39), np.nan], np.ones(40), 0.6827, r"residuals\[39\] = nan, not finite"),
        (
            np.ones(40),
            np.r_[np.ones(39), 0.0],
            0.6827,
            r"sigma\[39\] = 0.0; expected finite "
            r"errors > 0",
        ),
        (
            np.ones(40),
            np.stack([np.ones(40), np.r_[np.inf, np.ones(39)]]),
            0.6827,
            r"sigma\[1, 0\] = inf; expected finite errors > 0",
        ),
        (np.ones(40), np.ones(40), 1.0, r"level = 1.0; expected a number in \(0, 1\)"),
        (np.ones(40), np.ones(40), True, r"level = True; expected a number in \(0, 1\)"),
    ],
)
def test_coverage_scale_refuses_bad_input(residuals, sigma, level, match):
    with pytest.raises(ValueError, match="coverage_scale: " + match):
        coverage_scale(residuals, sigma, level=level)


def test_check_error_scale_accepts_positive_factors_and_refuses_the_rest():
    assert check_error_scale({"teff": 0.8, "mh": np.float32(1.5)}, "here") == {
        "teff": 0.8,
        "mh": 1.5,
    }
    with pytest.raises(ValueError, match=r"here: error_scale names unknown parameter 'feh'"):
        check_error_scale({"feh": 1.0}, "here")
    for bad in (0.0, -1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"here: error_scale\['teff'\] = .*; expected a fin"):
            check_error_scale({"teff": bad}, "here")
    with pytest.raises(ValueError, match="here: error_scale must be a dict parameter -> factor"):
        check_error_scale([1.0], "here")


def _heteroscedastic(rng, n):
    """Estimates over 0-30 (km/s, say) whose residuals grow with the estimate, while the
    errors are the same for every star: what v sin i's population-scale errors look like."""
    estimates = rng.uniform(0, 30, n)
    return estimates, rng.normal(0, 0.1 * estimates + 0.2), np.ones(n)


def test_coverage_profile_covers_each_range_of_estimates_where_one_factor_cannot():
    rng = np.random.default_rng(5)
    profile = coverage_profile(*_heteroscedastic(rng, 5000), bins=5)
    assert len(profile["edges"]) == 4 and len(profile["factors"]) == 5
    assert profile["edges"] == pytest.approx([6, 12, 18, 24], abs=0.6)  # equal-count bins
    assert np.all(np.diff(profile["factors"]) > 0)  # wider residuals, larger factor
    single = coverage_scale(*_heteroscedastic(np.random.default_rng(5), 5000)[1:])
    estimates, residuals, sigma = _heteroscedastic(rng, 5000)  # a fresh draw
    by_profile = np.abs(residuals) <= scale_factors(profile, estimates) * sigma
    by_single = np.abs(residuals) <= scale_factors(single, estimates) * sigma
    low, high = estimates < 6, estimates >= 24
    for part in np.array_split(np.argsort(estimates), 5):
        assert np.mean(by_profile[part]) == pytest.approx(COVERAGE_LEVEL, abs=0.04)
    # One factor covers the whole draw 68 % of the time, but not its ends.
    assert np.mean(by_single) == pytest.approx(COVERAGE_LEVEL, abs=0.02)
    assert np.mean(by_single[low]) > 0.95 and np.mean(by_single[high]) < 0.5


def test_coverage_profile_keeps_fifty_stars_per_bin_and_places_an_edge_in_the_bin_above():
    rng = np.random.default_rng(6)
    estimates, residuals, sigma = _heteroscedastic(rng, 160)
    profile = coverage_profile(estimates, residuals, sigma, bins=5)
    assert len(profile["factors"]) == 3  # 160 stars fill 3 bins of >= 50
    few = coverage_profile(estimates[:99], residuals[:99], sigma[:99], bins=5)
    assert few == {"edges": [], "factors": [coverage_scale(residuals[:99], sigma[:99])]}
    # The same bins on both sides: a star on an edge counts in the bin above it.
    edge = profile["edges"][0]
    assert scale_factors(profile, np.array([edge - 1e-9, edge]))[1] == profile["factors"][1]
    # Ties that empty a bin (140 stars at 0, every inner quantile but one at 0): fewer bins,
    # here one, rather than a bin of fewer than 30 stars.
    tied = coverage_profile(np.r_[np.zeros(140), np.arange(60.0)], np.ones(200), np.ones(200),
                            bins=4)
    assert tied == {"edges": [], "factors": [1.0]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bins": 0}, r"coverage_profile: bins = 0; expected an integer >= 1"),
        ({"bins": 2.5}, r"coverage_profile: bins = 2.5; expected an integer >= 1"),
        ({"estimates": np.ones(99)}, r"estimates must be 100 finite values .*shape \(99,\)"),
        ({"estimates": np.r_[np.nan, np.ones(99)]}, r"estimates must be 100 finite values"),
    ],
)
def test_coverage_profile_refuses_bad_input(kwargs, match):
    arguments = {"estimates": np.arange(100.0), "residuals": np.ones(100),
                 "sigma": np.ones(100), **kwargs}
    with pytest.raises(ValueError, match=match):
        coverage_profile(**arguments)


def test_check_error_scale_accepts_profiles_and_refuses_broken_ones():
    profile = {"edges": [3, np.float32(10.0)], "factors": [0.2, 0.5, 1.2]}
    assert check_error_scale({"vsini": profile, "teff": 0.4}, "here") == {
        "vsini": {"edges": [3.0, 10.0], "factors": [0.2, 0.5, 1.2]},
        "teff": 0.4,
    }
    bad = {
        "keys": ({"edges": [1.0], "factors": [1, 2], "n": 3}, "exactly the keys"),
        "count": ({"edges": [1.0, 2.0], "factors": [1, 2]}, "2 edges and 2 factors"),
        "order": ({"edges": [2.0, 1.0], "factors": [1, 2, 3]}, "strictly increasing"),
        "factor": ({"edges": [1.0], "factors": [1, 0]}, r"factors \[1.0, 0.0\]; expected"),
        "text": ({"edges": ["a"], "factors": [1, 2]}, "lists of numbers"),
    }
    for value, match in bad.values():
        with pytest.raises(ValueError, match=r"here: error_scale\['vsini'\].*" + match):
            check_error_scale({"vsini": value}, "here")
