"""Calibration on stars with known parameters (issue 16): mdwarf_zoo.calibrate, the saved
file, `mdwarf-zoo calibrate`, `predict --calibration` and the recipe's [calibration]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

import mdwarf_zoo
from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.calibration import Calibration, calibrate

RANGES = {"teff": (2600.0, 4000.0), "logg": (4.7, 5.3), "mh": (-0.6, 0.6), "vsini": (1.5, 10.0)}


def _truth(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(*RANGES[p], n) for p in PARAMETERS])


def _estimates(predicted: np.ndarray, error: np.ndarray | float) -> Table:
    """An estimate table as predict() makes it (units, errors, an id column)."""
    import astropy.units as u

    n = len(predicted)
    table = Table()
    table["id"] = [f"star_{i:03d}" for i in range(n)]
    units = {"teff": u.K, "logg": u.dex, "mh": u.dex, "vsini": u.km / u.s}
    error = np.broadcast_to(np.asarray(error, dtype=float), predicted.shape)
    for j, p in enumerate(PARAMETERS):
        table[p] = predicted[:, j] * units[p]
        table[f"{p}_err_lower"] = error[:, j] * units[p]
        table[f"{p}_err_upper"] = error[:, j] * units[p]
    table.meta["pipeline"] = "test-pipeline"
    return table


def _labels(table: Table, truth: np.ndarray, rows, parameters=PARAMETERS) -> Table:
    labels = Table({"id": np.asarray(table["id"])[rows]})
    for p in parameters:
        labels[p] = truth[rows, PARAMETERS.index(p)]
    return labels


def test_public_name():
    assert mdwarf_zoo.calibrate is calibrate
    assert mdwarf_zoo.Calibration is Calibration


def test_a_known_linear_distortion_is_recovered():
    truth = _truth(200)
    rng = np.random.default_rng(1)
    predicted = truth.copy()
    predicted[:, 0] = 0.8 * truth[:, 0] + 300.0 + rng.normal(0, 2.0, 200)
    predicted[:, 2] = truth[:, 2] - 0.15 + rng.normal(0, 0.005, 200)
    table = _estimates(predicted, [2.0, 0.01, 0.005, 0.1])
    calibration = calibrate(table, None, _labels(table, truth, slice(0, 40), ("teff", "mh")))
    assert calibration.parameters == ["teff", "mh"] and calibration.n_stars == 40
    teff = calibration.corrections["teff"]
    assert teff.kind in ("linear", "linear_all")
    terms = teff.physical_map()
    assert terms["teff"] == pytest.approx(1.25, abs=0.01)
    assert terms["intercept"] == pytest.approx(-375.0, abs=20.0)
    corrected = calibration.apply(table)
    held_out = slice(40, None)
    mh = np.asarray(corrected["mh"])[held_out] - truth[held_out, 2]
    assert abs(np.mean(mh)) < 0.003 and np.std(mh) < 0.01
    before = np.sqrt(np.mean((np.asarray(table["teff"])[held_out] - truth[held_out, 0]) ** 2))
    after = np.sqrt(np.mean((np.asarray(corrected["teff"])[held_out] - truth[held_out, 0]) ** 2))
    assert before > 100.0 and after < 5.0
    assert teff.cv_rms_after < 0.05 * teff.cv_rms_before
    # Uncalibrated parameters are left alone.
    assert np.array_equal(np.asarray(corrected["logg"]), np.asarray(table["logg"]))
    meta = corrected.meta["calibration"]
    assert meta["n_stars"] == 40 and set(meta["parameters"]) == {"teff", "mh"}
    assert meta["parameters"]["teff"]["cv_rms_after"] < meta["parameters"]["teff"]["cv_rms_before"]
    assert corrected["teff"].unit == table["teff"].unit
    assert "Calibration(40 stars" in repr(calibration) and "teff: linear" in repr(calibration)


def test_identity_is_chosen_when_the_predictions_are_right():
    truth = _truth(30, seed=2)
    rng = np.random.default_rng(3)
    sigma = np.array([30.0, 0.03, 0.03, 0.5])
    table = _estimates(truth + rng.normal(0, 1, truth.shape) * sigma, sigma)
    calibration = calibrate(table, None, _labels(table, truth, slice(None)))
    for p, correction in calibration.corrections.items():
        assert correction.kind == "identity", (p, correction)
        assert correction.cv_rms_after == correction.cv_rms_before
    corrected = calibration.apply(table)
    for p in PARAMETERS:
        assert np.array_equal(np.asarray(corrected[p]), np.asarray(table[p]))
        # The table's errors already explain the scatter: only the sampling noise of the
        # scatter of 30 stars is added.
        assert np.all(np.asarray(corrected[f"{p}_err_upper"])
                      <= 1.3 * np.asarray(table[f"{p}_err_upper"]))


def test_small_samples_fall_back_to_an_offset():
    truth = _truth(6, seed=4)
    predicted = truth.copy()
    predicted[:, 0] = 0.9 * truth[:, 0] + 100.0
    calibration = calibrate(_estimates(predicted, 1.0), None, truth)
    assert calibration.corrections["teff"].kind == "offset"


def test_the_errors_grow_by_the_calibration_uncertainty():
    truth = _truth(60, seed=5)
    rng = np.random.default_rng(6)
    predicted = truth.copy()
    predicted[:, 0] = 0.9 * truth[:, 0] + 200.0 + rng.normal(0, 40.0, 60)
    table = _estimates(predicted, 5.0)
    calibration = calibrate(table, None, _labels(table, truth, slice(0, 30), ("teff",)))
    correction = calibration.corrections["teff"]
    assert correction.kind != "identity"
    # The cross-validated scatter beyond the table's own 5 K errors.
    assert correction.scatter > 30.0
    corrected = calibration.apply(table)
    _, sigma = correction.correct({p: np.asarray(table[p]) for p in PARAMETERS})
    assert np.all(sigma > correction.scatter)  # the coefficients' uncertainty on top
    for side in ("lower", "upper"):
        before = np.asarray(table[f"teff_err_{side}"])
        after = np.asarray(corrected[f"teff_err_{side}"])
        np.testing.assert_allclose(after**2, before**2 + sigma**2, rtol=1e-10)
    # The coefficient term is larger far from the calibrators' mean prediction.
    far = np.argmax(np.abs(predicted[:, 0] - np.mean(predicted[:30, 0])))
    near = np.argmin(np.abs(predicted[:, 0] - np.mean(predicted[:30, 0])))
    assert sigma[far] > sigma[near]


def test_save_load_round_trip(tmp_path: Path):
    truth = _truth(40, seed=7)
    predicted = truth * np.array([0.95, 1.0, 1.0, 1.1]) + np.array([100.0, 0.02, -0.1, 0.0])
    table = _estimates(predicted, [10.0, 0.01, 0.02, 0.2])
    calibration = calibrate(table, None, _labels(table, truth, slice(0, 20)))
    path = calibration.save(tmp_path / "calibration.json")
    loaded = Calibration.load(path)
    assert repr(loaded) == repr(calibration)
    assert loaded.identifiers == calibration.identifiers == list(table["id"][:20])
    a, b = calibration.apply(table), loaded.apply(table)
    for name in a.colnames[1:]:
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        calibration.save(path)
    calibration.save(path, overwrite=True)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match=r"bad\.json.*mdwarf_zoo\.Calibration/1"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"format": "mdwarf_zoo.Calibration/1", "n_stars": 3, '
                                          '"corrections": {"teff": {"kind": "cubic"}}}')
    with pytest.raises(ValueError, match=r"broken\.json"):
        Calibration.load(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Calibration.load(tmp_path / "missing.json")


def test_bad_labels_are_refused_with_their_names(tmp_path: Path):
    truth = _truth(10, seed=8)
    table = _estimates(truth + 10.0, 1.0)
    labels = _labels(table, truth, slice(0, 5))
    labels["id"][2] = "nobody"
    with pytest.raises(ValueError, match="nobody"):
        calibrate(table, None, labels)
    labels = _labels(table, truth, slice(0, 5))
    labels["mh"][3] = np.nan
    with pytest.raises(ValueError, match=r"'mh' is NaN.*star_003"):
        calibrate(table, None, labels)
    # An empty cell of a CSV file is a missing label, not a zero.
    (tmp_path / "holes.csv").write_text("id,teff\nstar_000,3000\nstar_001,\nstar_002,3100\n")
    with pytest.raises(ValueError, match=r"'teff' is NaN.*star_001"):
        calibrate(table, None, str(tmp_path / "holes.csv"))
    with pytest.raises(ValueError, match="at least 3"):
        calibrate(table, None, _labels(table, truth, slice(0, 2)))
    with pytest.raises(ValueError, match="9 label rows for 10 estimates and no identifier column"):
        calibrate(table, None, truth[:9])
    with pytest.raises(ValueError, match="spectra must be None"):
        calibrate(table, np.zeros((10, 5)), truth)
    with pytest.raises(ValueError, match="PretrainedPipeline"):
        calibrate("not a pipeline", np.zeros((10, 5)), truth)
    calibration = calibrate(table, None, {p: truth[:, j] for j, p in enumerate(PARAMETERS)})
    with pytest.raises(ValueError, match="already calibrated"):
        calibration.apply(calibration.apply(table))
    with pytest.raises(ValueError, match=r"no column\(s\) \['teff'"):
        calibration.apply(table[["id", "logg", "mh", "vsini"]])


def test_recipe_calibration_section(tmp_path: Path):
    from mdwarf_zoo.recipes import RecipeError, parse_recipe
    from mdwarf_zoo.recipes.run import Run

    base = (Path(__file__).parent.parent / "training_recipes" / "quickstart.toml").read_text()
    truth = _truth(12, seed=9)
    table = _estimates(truth * 1.02 + 5.0, 1.0)
    labels = _labels(table, truth, slice(0, 10), ("teff", "logg"))
    labels.rename_column("id", "star")
    labels.write(tmp_path / "known.csv", format="ascii.csv")
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text(base + '\n[calibration]\nlabels = "known.csv"\nid_column = "star"\n')
    recipe = parse_recipe(recipe_path.read_text(), source=recipe_path, check_models=False)
    assert recipe.calibration.labels == tmp_path / "known.csv"
    assert recipe.calibration.id_column == "star"
    corrected = Run(recipe, tmp_path / "run", progress=False)._calibrated(table)
    assert corrected.meta["calibration"]["n_stars"] == 10
    assert set(corrected.meta["calibration"]["parameters"]) == {"teff", "logg"}
    assert (tmp_path / "run" / "calibration.json").is_file()
    for bad, match in (
        ('labels = "absent.csv"', "no such file"),
        ('labels = "known.csv"\nparameters = ["teff", "radius"]', "distinct names"),
        ('labels = "known.csv"\nstrength = 3', "unknown key 'strength'"),
    ):
        with pytest.raises(RecipeError, match=match):
            parse_recipe(base + f"\n[calibration]\n{bad}\n", source=recipe_path,
                         check_models=False)
    # A bad labels table stops the recipe before any training.
    with pytest.raises(RecipeError, match=r"\[calibration\].*no id_column 'id'"):
        parse_recipe(base + '\n[calibration]\nlabels = "known.csv"\n', source=recipe_path,
                     check_models=False)
    labels["teff"][1] = np.nan
    labels.write(tmp_path / "holes.csv", format="ascii.csv")
    with pytest.raises(RecipeError, match=r"'teff' is NaN or missing for star\(s\) \['star_001'"):
        parse_recipe(base + '\n[calibration]\nlabels = "holes.csv"\nid_column = "star"\n',
                     source=recipe_path, check_models=False)
    # At run time, stars the observed set does not have are named.
    labels = _labels(table, truth, slice(0, 10), ("teff",))
    labels["id"][0] = "ghost"
    labels.write(tmp_path / "other.csv", format="ascii.csv")
    recipe = parse_recipe(base + '\n[calibration]\nlabels = "other.csv"\n', source=recipe_path,
                          check_models=False)
    with pytest.raises(ValueError, match=r"\[calibration\].*'ghost'"):
        Run(recipe, tmp_path / "run2", progress=False)._calibrated(table)


def test_cli_calibrate_and_predict_with_calibration(tmp_path: Path, capsys):
    from mdwarf_zoo.cli import main
    from mdwarf_zoo.pipeline.pretrained import load_pipeline
    from mdwarf_zoo.spectra.datasets import SpectrumSet, write_set
    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra

    pipeline = load_pipeline("mb24_quickstart_demo")
    preprocessor = pipeline.preprocessor()
    low, high = preprocessor.span
    grid = WavelengthGrid(low, high, preprocessor.grid.step)
    truth = _truth(5, seed=10)
    flux = observe(synthetic_spectra(truth, grid), truth, snr=150, seed=1, grid=grid)
    flux = np.stack([preprocessor.finish(grid.wavelength, row)[0] for row in flux])
    ids = [f"SIM-{i}" for i in range(5)]
    spectra = write_set(tmp_path / "observed.h5", SpectrumSet(
        flux=flux.astype(np.float32), wavelength=preprocessor.grid.wavelength, labels=None,
        identifiers=ids, preprocessing=preprocessor, provenance={}, kind="observed"))
    estimates = tmp_path / "estimates.ecsv"
    assert main(["predict", str(spectra), "--model", "mb24_quickstart_demo", "--out",
                 str(estimates), "--no-rv", "--no-progress"]) == 0
    labels = Table({"id": ids[:4], "teff": truth[:4, 0], "mh": truth[:4, 2]})
    labels.write(tmp_path / "known.csv", format="ascii.csv")
    saved = tmp_path / "calibration.json"
    assert main(["calibrate", "--estimates", str(estimates), "--labels",
                 str(tmp_path / "known.csv"), "--out", str(saved)]) == 0
    assert "Calibration(4 stars" in capsys.readouterr().out
    # The same calibration from the pipeline itself (it predicts the flux first).
    direct = calibrate(pipeline, flux.astype(np.float32), labels, identifiers=ids)
    assert repr(direct) == repr(Calibration.load(saved))
    calibrated = tmp_path / "calibrated.ecsv"
    assert main(["predict", str(spectra), "--model", "mb24_quickstart_demo", "--out",
                 str(calibrated), "--no-rv", "--no-progress", "--calibration", str(saved)]) == 0
    assert "calibrated with" in capsys.readouterr().out
    expected = Calibration.load(saved).apply(Table.read(estimates))
    result = Table.read(calibrated)
    assert result.meta["calibration"]["n_stars"] == 4
    for name in ("teff", "teff_err_upper", "mh", "logg"):
        np.testing.assert_allclose(np.asarray(result[name]), np.asarray(expected[name]),
                                   rtol=1e-6)
    # Bad input names the argument, the file and what was expected.
    (tmp_path / "not.json").write_text("[1, 2]")
    assert main(["predict", str(spectra), "--model", "mb24_quickstart_demo", "--out",
                 str(tmp_path / "x.ecsv"), "--no-rv", "--calibration",
                 str(tmp_path / "not.json")]) == 1
    assert "--calibration: calibration file" in capsys.readouterr().err
    assert main(["calibrate", "--estimates", str(estimates), "--labels",
                 str(tmp_path / "none.csv"), "--out", str(tmp_path / "c2.json")]) == 1
    assert "--labels table" in capsys.readouterr().err
    assert main(["calibrate", "--estimates", str(estimates), "--labels",
                 str(tmp_path / "known.csv"), "--out", str(saved)]) == 1
    assert "never overwritten" in capsys.readouterr().err
