"""Ensemble: best-K selection, KDE mode and asymmetric errors, the results table and writing."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from mdwarf_zoo.pipeline.ensemble import (
    NO_ERROR_SCALE,
    describe_errors,
    ensemble_table,
    kde_estimate,
    kde_estimates,
    select_best,
    write_table,
)
from mdwarf_zoo.pipeline.gap import GAP_PRIOR, GAP_PRIOR_SOURCE


def split_normal(rng, n, mode, sigma_low, sigma_high):
    """Samples of a two-piece normal: mode ``mode``, widths ``sigma_low`` / ``sigma_high``."""
    low = rng.random(n) < sigma_low / (sigma_low + sigma_high)
    return np.where(
        low, mode - np.abs(rng.normal(0, sigma_low, n)), mode + np.abs(rng.normal(0, sigma_high, n))
    )


def test_select_best_keeps_lowest_mse_stable_on_ties():
    mse = [0.5, 0.1, 0.3, 0.1, 0.9, 0.2]
    assert select_best(mse, 3).tolist() == [1, 3, 5]
    assert select_best(mse, 1).tolist() == [1]
    assert select_best(mse, 10).tolist() == [1, 3, 5, 2, 0, 4]
    rng = np.random.default_rng(0)
    mse = rng.uniform(0, 1, 130)
    best = select_best(mse, 80)
    assert len(best) == 80 and mse[best].max() <= np.sort(mse)[79]
    for bad, pattern in (([], "non-empty"), ([0.1, np.nan], "not finite")):
        with pytest.raises(ValueError, match=pattern):
            select_best(bad, 1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        select_best([0.1], 0)


def test_kde_mode_and_errors_of_a_gaussian():
    rng = np.random.default_rng(1)
    samples = rng.normal(3300.0, 30.0, 20000)
    value, lower, upper = kde_estimate(samples)
    sigma = 30.0 * stats.norm.ppf(0.84)
    assert value == pytest.approx(3300.0, abs=3.0)
    assert value - lower == pytest.approx(3300.0 - sigma, abs=1.5)
    assert value + upper == pytest.approx(3300.0 + sigma, abs=1.5)
    assert lower + upper == pytest.approx(2 * sigma, rel=0.03)


def test_kde_mode_and_errors_of_a_skewed_two_piece_normal():
    # Mode 3300 K, sigma 20 K below and 60 K above: P(X < mode) = 1/4, so
    # P16 = mode + 20 * Phi^-1(0.32) and P84 = mode + 60 * Phi^-1(1 - 0.16 / 1.5).
    p16 = 3300.0 + 20.0 * stats.norm.ppf(0.16 / 0.5)
    p84 = 3300.0 + 60.0 * stats.norm.ppf(0.5 + (0.84 - 0.25) / 1.5)
    samples = split_normal(np.random.default_rng(2), 40000, 3300.0, 20.0, 60.0)
    value, lower, upper = kde_estimate(samples)
    # The KDE smooths the cusp at the mode toward the long tail by a fraction of a sigma.
    assert value == pytest.approx(3300.0, abs=8.0)
    assert value - lower == pytest.approx(p16, abs=1.5)
    assert value + upper == pytest.approx(p84, abs=2.0)
    assert upper > 3 * lower  # the long tail's side has the larger error


def test_kde_mode_of_a_gamma_distribution():
    samples = np.random.default_rng(3).gamma(3.0, 1.0, 30000)  # mode (k - 1) theta = 2
    value, lower, upper = kde_estimate(samples)
    low, high = stats.gamma(3.0).ppf([0.16, 0.84])
    assert value == pytest.approx(2.0, abs=0.15)
    assert value - lower == pytest.approx(low, abs=0.03)
    assert value + upper == pytest.approx(high, abs=0.05)


def test_kde_degenerate_and_small_samples():
    assert kde_estimate(np.full(80, 4.85)) == (4.85, 0.0, 0.0)
    assert kde_estimate([3.0]) == (3.0, 0.0, 0.0)
    value, lower, upper = kde_estimate([1.0, 2.0])
    assert value == pytest.approx(1.5, abs=1e-6)
    assert lower == pytest.approx(0.34) and upper == pytest.approx(0.34)
    # A clear mode: errors never negative even when the mode sits beyond a percentile.
    value, lower, upper = kde_estimate([0.0] * 70 + [10.0] * 10)
    assert value == pytest.approx(0.0, abs=0.2) and lower >= 0 and upper >= 0
    with pytest.raises(ValueError, match="no predictions"):
        kde_estimate([])
    with pytest.raises(ValueError, match="not finite"):
        kde_estimate([1.0, np.inf])
    with pytest.raises(ValueError, match="star 1"):
        kde_estimates(np.array([[1.0, 2.0], [1.5, np.nan]]))


def test_ensemble_table_best_k_units_and_identifiers():
    rng = np.random.default_rng(4)
    n_regressors, n_stars = 130, 3
    truth = np.array([3100.0, 3500.0, 3900.0])
    good = rng.normal(truth, 25.0, (n_regressors, n_stars))
    # The 50 worst regressors (by validation MSE) are biased by +500 K: best-80 drops them.
    mse_teff = np.concatenate([rng.uniform(0.01, 0.02, 80), rng.uniform(0.5, 0.6, 50)])
    good[80:] += 500.0
    predictions = {
        "teff": good,
        "logg": rng.normal(5.0, 0.04, (n_regressors, n_stars)),
        "mh": rng.normal(0.0, 0.05, (n_regressors, n_stars)),
        "vsini": rng.normal(3.0, 0.3, (n_regressors, n_stars)),
    }
    table = ensemble_table(
        predictions,
        ["J00051+457 ", "J00067-075", "J23492+024"],
        validation_mse={"teff": mse_teff},
        keep=80,
    )
    assert table.colnames == [
        "id",
        "teff", "teff_err_lower", "teff_err_upper",
        "logg", "logg_err_lower", "logg_err_upper",
        "mh", "mh_err_lower", "mh_err_upper",
        "vsini", "vsini_err_lower", "vsini_err_upper",
    ]
    assert list(table["id"]) == ["J00051+457", "J00067-075", "J23492+024"]
    assert [str(table[c].unit) for c in ("teff", "logg", "mh", "vsini")] == [
        "K", "dex", "dex", "km / s",
    ]
    assert str(table["teff_err_upper"].unit) == "K"
    assert np.all(np.abs(table["teff"] - truth) < 20.0)
    assert table.meta["n_regressors"] == {"teff": 80, "logg": 130, "mh": 130, "vsini": 130}
    assert "P16" in table.meta["errors"]
    # Without the selection the biased regressors pull the spread up.
    everything = ensemble_table({"teff": good})
    assert np.all(everything["teff_err_upper"] > table["teff_err_upper"])
    assert list(everything["id"]) == ["star_0", "star_1", "star_2"]


def test_ensemble_table_errors():
    with pytest.raises(ValueError, match="unknown parameter"):
        ensemble_table({"feh": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="has 3 stars"):
        ensemble_table({"teff": np.zeros((3, 2)) + [1, 2], "logg": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="1 identifiers for 2 stars"):
        ensemble_table({"teff": np.ones((3, 2))}, ["a"])
    with pytest.raises(ValueError, match="2 values for 3 regressors"):
        ensemble_table({"teff": np.ones((3, 2))}, validation_mse={"teff": [1, 2]})


def test_ensemble_table_spread_plus_validation_adds_the_kept_regressors_scatter():
    rng = np.random.default_rng(7)
    predictions = {"teff": rng.normal(3300.0, 10.0, (6, 4)), "mh": rng.normal(0, 0.01, (6, 4))}
    mse = {"teff": [0.1, 0.2, 0.3, 0.9, 0.8, 0.7], "mh": [0.1] * 6}
    # The three worst regressors (dropped by best-3) have a huge rms: it must not count.
    rms = {"teff": [30.0, 40.0, 50.0, 900.0, 900.0, 900.0], "mh": [0.02] * 6}
    spread = ensemble_table(predictions, validation_mse=mse, keep=3)
    both = ensemble_table(predictions, validation_mse=mse, keep=3,
                          error_model="spread+validation", validation_rms=rms)
    scatter = np.sqrt(np.mean(np.square([30.0, 40.0, 50.0])))
    assert both.meta["validation_scatter"]["teff"] == pytest.approx(scatter)
    assert np.array_equal(both["teff"], spread["teff"])
    for side in ("lower", "upper"):
        assert np.allclose(both[f"teff_err_{side}"], np.hypot(spread[f"teff_err_{side}"], scatter))
        assert np.allclose(both[f"mh_err_{side}"], np.hypot(spread[f"mh_err_{side}"], 0.02))
    assert spread.meta["error_model"] == "spread" and both.meta["error_model"] != "spread"
    assert "quadrature" in both.meta["errors"] and "quadrature" not in spread.meta["errors"]
    with pytest.raises(ValueError, match=r"needs validation_rms\['mh'\]"):
        ensemble_table(predictions, error_model="spread+validation",
                       validation_rms={"teff": rms["teff"]})
    with pytest.raises(ValueError, match="must hold 6 finite values"):
        ensemble_table(predictions, error_model="spread+validation",
                       validation_rms={"teff": [1.0] * 5, "mh": [1.0] * 6})
    with pytest.raises(ValueError, match="error_model must be one of"):
        ensemble_table(predictions, error_model="bootstrap")


def test_ensemble_table_adds_the_alignment_error_per_star():
    rng = np.random.default_rng(8)
    predictions = {"teff": rng.normal(3300.0, 10.0, (6, 4)), "mh": rng.normal(0, 0.01, (6, 4))}
    rms = {"teff": [30.0] * 6, "mh": [0.02] * 6}
    extra = {"teff": np.array([0.0, 5.0, 50.0, 500.0])}  # per star; mh gets none
    base = ensemble_table(predictions, error_model="spread+validation", validation_rms=rms)
    wide = ensemble_table(predictions, error_model="spread+validation", validation_rms=rms,
                          alignment_error=extra)
    assert np.array_equal(wide["teff"], base["teff"])
    for side in ("lower", "upper"):
        np.testing.assert_allclose(wide[f"teff_err_{side}"],
                                   np.hypot(base[f"teff_err_{side}"], extra["teff"]))
        np.testing.assert_array_equal(wide[f"mh_err_{side}"], base[f"mh_err_{side}"])
    assert "alignment bootstrap" in wide["teff_err_upper"].description
    assert "alignment" in wide.meta["errors"] and "alignment" not in base.meta["errors"]
    for bad in ([1.0, 2.0, 3.0], [1.0, -1.0, 0.0, 0.0], [1.0, np.nan, 0.0, 0.0]):
        with pytest.raises(ValueError, match=r"alignment_error\['teff'\] must hold 4 finite, "
                                             "non-negative values"):
            ensemble_table(predictions, alignment_error={"teff": bad})


@pytest.mark.parametrize("suffix", [".ecsv", ".fits", ".csv"])
def test_write_table_formats_and_refuses_overwrite(tmp_path, suffix):
    rng = np.random.default_rng(5)
    table = ensemble_table(
        {"teff": rng.normal(3300, 30, (40, 2)), "vsini": rng.normal(2, 0.2, (40, 2))},
        ["GJ 699", "GJ 273"],
    )
    path = write_table(table, tmp_path / f"estimates{suffix}")
    back = Table.read(path)
    assert list(back["id"]) == ["GJ 699", "GJ 273"]
    assert np.allclose(np.asarray(back["teff"]), np.asarray(table["teff"]))
    if suffix != ".csv":
        assert str(back["teff"].unit) == "K" and str(back["vsini"].unit) == "km / s"
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_table(table, path)
    write_table(table[:1], path, overwrite=True)
    assert len(Table.read(path)) == 1


def test_write_table_unknown_format(tmp_path):
    table = ensemble_table({"teff": np.ones((2, 1))})
    with pytest.raises(ValueError, match="suffix"):
        write_table(table, tmp_path / "x.txt")
    with pytest.raises(ValueError, match="format must be"):
        write_table(table, tmp_path / "x.txt", format="votable")
    assert write_table(table, tmp_path / "x.txt", format="csv").is_file()


def test_ensemble_table_gap_model_adds_spread_validation_and_gap_in_quadrature():
    rng = np.random.default_rng(9)
    predictions = {"teff": rng.normal(3300.0, 10.0, (6, 4)), "mh": rng.normal(0, 0.01, (6, 4))}
    rms = {"teff": [30.0, 40.0, 50.0, 30.0, 40.0, 50.0], "mh": [0.02] * 6}
    spread = ensemble_table(predictions)
    prior = ensemble_table(predictions, error_model="spread+validation+gap", validation_rms=rms)
    scatter = np.sqrt(np.mean(np.square(rms["teff"])))
    assert np.array_equal(prior["teff"], spread["teff"])
    for side in ("lower", "upper"):
        # Written out: sqrt(spread**2 + s_val**2 + g**2) with the prior's g.
        expected = np.sqrt(spread[f"teff_err_{side}"] ** 2 + scatter**2 + GAP_PRIOR["teff"] ** 2)
        np.testing.assert_allclose(prior[f"teff_err_{side}"], expected, rtol=1e-12)
        expected = np.sqrt(spread[f"mh_err_{side}"] ** 2 + 0.02**2 + GAP_PRIOR["mh"] ** 2)
        np.testing.assert_allclose(prior[f"mh_err_{side}"], expected, rtol=1e-12)
    assert prior.meta["error_model"] == "spread+validation+gap"
    assert prior.meta["gap"] == {"teff": GAP_PRIOR["teff"], "mh": GAP_PRIOR["mh"]}
    assert prior.meta["gap_source"] == {"teff": GAP_PRIOR_SOURCE, "mh": GAP_PRIOR_SOURCE}
    assert "domain-gap scale 50.6 K (prior:" in prior["teff_err_lower"].description
    assert "gap" not in spread.meta and "gap" not in spread["teff_err_lower"].description
    assert describe_errors(spread) == "spread"
    assert describe_errors(prior).startswith("spread+validation+gap (gap teff 50.6 K, mh 0.248 dex")

    # An explicit gap overrides the prior for the parameters it names, only those.
    given = ensemble_table(predictions, error_model="spread+validation+gap", validation_rms=rms,
                           gap={"teff": 120}, gap_source="measured on the simulator")
    for side in ("lower", "upper"):
        expected = np.sqrt(spread[f"teff_err_{side}"] ** 2 + scatter**2 + 120.0**2)
        np.testing.assert_allclose(given[f"teff_err_{side}"], expected, rtol=1e-12)
        np.testing.assert_array_equal(given[f"mh_err_{side}"], prior[f"mh_err_{side}"])
    assert given.meta["gap"] == {"teff": 120.0, "mh": GAP_PRIOR["mh"]}
    assert given.meta["gap_source"]["teff"] == "measured on the simulator"
    assert given.meta["gap_source"]["mh"] == GAP_PRIOR_SOURCE
    text = given["teff_err_upper"].description
    assert "domain-gap scale 120 K (measured on the simulator)" in text
    zero = ensemble_table(predictions, error_model="spread+validation+gap", validation_rms=rms,
                          gap={"teff": 0.0, "mh": 0.0})
    both = ensemble_table(predictions, error_model="spread+validation", validation_rms=rms)
    np.testing.assert_allclose(zero["teff_err_lower"], both["teff_err_lower"], rtol=1e-12)


@pytest.mark.parametrize(
    ("gap", "match"),
    [
        ({"Teff": 50.0}, r"gap names unknown parameter 'Teff'; expected names from \['teff'"),
        ({"teff": -1.0}, r"gap\['teff'\] = -1.0; expected a finite number >= 0"),
        ({"teff": float("nan")}, r"gap\['teff'\] = nan; expected a finite number >= 0"),
        ({"mh": float("inf")}, r"gap\['mh'\] = inf; expected a finite number >= 0"),
        ({"mh": "0.2"}, r"gap\['mh'\] = '0.2'; expected a finite number >= 0"),
        ({"mh": True}, r"gap\['mh'\] = True; expected a finite number >= 0"),
        ([50.0], r"gap must be a dict parameter -> scale, got list"),
    ],
)
def test_ensemble_table_refuses_a_bad_gap(gap, match):
    predictions = {"teff": np.arange(12.0).reshape(3, 4), "mh": np.ones((3, 4))}
    rms = {"teff": [30.0] * 3, "mh": [0.02] * 3}
    with pytest.raises(ValueError, match="ensemble_table: " + match):
        ensemble_table(predictions, error_model="spread+validation+gap", validation_rms=rms,
                       gap=gap)


def test_ensemble_table_refuses_a_gap_without_the_gap_model():
    predictions = {"teff": np.arange(12.0).reshape(3, 4)}
    with pytest.raises(ValueError, match=r"gap=\{'teff': 50.0\} is only used by error_model="
                                         r"'spread\+validation\+gap', got error_model='spread'"):
        ensemble_table(predictions, gap={"teff": 50.0})
    with pytest.raises(ValueError, match=r"error_model='spread\+validation\+gap' needs "
                                         r"validation_rms\['teff'\]"):
        ensemble_table(predictions, error_model="spread+validation+gap")


def test_ensemble_table_error_scale_multiplies_the_gap_models_errors_and_is_recorded():
    rng = np.random.default_rng(11)
    predictions = {"teff": rng.normal(3300.0, 10.0, (6, 4)), "mh": rng.normal(0, 0.01, (6, 4))}
    rms = {"teff": [30.0] * 6, "mh": [0.02] * 6}
    options = {"error_model": "spread+validation+gap", "validation_rms": rms, "gap": {"teff": 90}}
    plain = ensemble_table(predictions, **options)
    # Without a scale the errors are not rescaled, and the table says so.
    assert plain.meta["error_scale"] == {"teff": 1.0, "mh": 1.0}
    assert plain.meta["error_scale_source"] == NO_ERROR_SCALE
    assert describe_errors(plain).startswith("spread+validation+gap (gap teff 90 K")
    assert "errors x" not in describe_errors(plain)
    scaled = ensemble_table(predictions, **options, error_scale={"teff": 0.8},
                            error_scale_source="300 simulated twins")
    assert np.array_equal(scaled["teff"], plain["teff"])
    for side in ("lower", "upper"):
        np.testing.assert_allclose(scaled[f"teff_err_{side}"], 0.8 * plain[f"teff_err_{side}"],
                                   rtol=1e-12)
        np.testing.assert_array_equal(scaled[f"mh_err_{side}"], plain[f"mh_err_{side}"])
    assert scaled.meta["error_scale"] == {"teff": 0.8, "mh": 1.0}
    assert scaled.meta["error_scale_source"] == "300 simulated twins (c = 1 for mh: none given)"
    assert "all x error scale 0.8" in scaled["teff_err_lower"].description
    assert describe_errors(scaled).endswith(", errors x teff 0.8, mh 1 (300 simulated twins "
                                            "(c = 1 for mh: none given))")
    # The other models neither take a scale nor record one.
    both = ensemble_table(predictions, error_model="spread+validation", validation_rms=rms)
    assert "error_scale" not in both.meta
    with pytest.raises(ValueError, match=r"error_scale=\{'teff': 0.8\} is only used by "
                                         r"error_model='spread\+validation\+gap'"):
        ensemble_table(predictions, error_model="spread+validation", validation_rms=rms,
                       error_scale={"teff": 0.8})
    with pytest.raises(ValueError, match=r"ensemble_table: error_scale\['teff'\] = 0.0; "
                                         r"expected a finite number > 0"):
        ensemble_table(predictions, **options, error_scale={"teff": 0.0})
    with pytest.raises(ValueError, match="error_scale_source must be a non-empty string"):
        ensemble_table(predictions, **options, error_scale={"teff": 0.8}, error_scale_source=" ")


def test_ensemble_table_error_scale_profile_gives_each_star_the_factor_of_its_estimate():
    """A profile of factors in bins of the estimate (coverage_profile): each star's errors are
    multiplied by the factor of the bin its own estimate (the KDE mode) falls in."""
    rng = np.random.default_rng(12)
    centres = np.array([2.0, 5.0, 12.0, 28.0])
    predictions = {"vsini": centres + rng.normal(0, 0.05, (8, 4))}
    options = {"error_model": "spread+validation+gap", "validation_rms": {"vsini": [0.5] * 8},
               "gap": {"vsini": 1.0}}
    plain = ensemble_table(predictions, **options)
    profile = {"edges": [4.0, 20.0], "factors": [0.2, 0.4, 1.5]}
    scaled = ensemble_table(predictions, **options, error_scale={"vsini": profile},
                            error_scale_source="1000 twins")
    expected = np.array([0.2, 0.4, 0.4, 1.5])  # 2 -> bin 0, 5 and 12 -> bin 1, 28 -> bin 2
    for side in ("lower", "upper"):
        np.testing.assert_allclose(scaled[f"vsini_err_{side}"],
                                   expected * plain[f"vsini_err_{side}"], rtol=1e-12)
    assert scaled.meta["error_scale"] == {"vsini": profile}
    assert "0.2-1.5 in 3 bins of the estimate" in scaled["vsini_err_lower"].description
    assert describe_errors(scaled).endswith(
        ", errors x vsini 0.2-1.5 in 3 bins of the estimate (1000 twins)")
    with pytest.raises(ValueError, match=r"error_scale\['vsini'\]: edges \[20.0, 4.0\]"):
        ensemble_table(predictions, **options,
                       error_scale={"vsini": {"edges": [20.0, 4.0], "factors": [1, 1, 1]}})
