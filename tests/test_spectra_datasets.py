"""HDF5 sets, label tables, the resumable parallel training-set builder and the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table
from test_spectra_phoenix import WAVE, linear_flux, make_grid

from mdwarf_zoo.cli import main
from mdwarf_zoo.spectra.datasets import (
    SpectrumSet,
    build_training_set,
    load_labels,
    read_set,
    write_set,
)
from mdwarf_zoo.spectra.grid import MB24_GRID
from mdwarf_zoo.spectra.observed import write_caracal
from mdwarf_zoo.spectra.phoenix import GridPoint, PhoenixGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor
from mdwarf_zoo.spectra.rv import C_KMS

LABELS = np.array([
    [3025.0, 4.7, -0.3, 1.5],
    [3025.0, 4.7, -0.3, 10.0],
    [3150.0, 5.0, 0.0, 2.0],
    [3100.0, 4.6, -0.1, 30.0],
    [3025.0, 4.7, -0.3, 4.0],
    [3190.0, 4.9, -0.45, 0.0],
])


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> Path:
    return make_grid(tmp_path_factory.mktemp("phoenix"))


def test_write_and_read_a_set(tmp_path):
    prep = Preprocessor(resolving_power=94600)
    flux = np.random.default_rng(0).uniform(0, 1, (4, 3501))
    original = SpectrumSet(flux, MB24_GRID.wavelength, labels=LABELS[:4],
                           identifiers=list("abcd"), preprocessing=prep,
                           provenance={"source": "test"}, sigma=0.01 * flux)
    path = write_set(tmp_path / "s.h5", original)
    again = read_set(path)
    np.testing.assert_array_equal(again.flux, original.flux)
    np.testing.assert_array_equal(again.labels, LABELS[:4])
    assert again.label_names == ("teff", "logg", "metallicity", "vsini")
    assert again.label_units == ("K", "dex", "dex", "km/s")
    assert again.identifiers == list("abcd") and again.preprocessing == prep
    assert again.provenance == {"source": "test"} and again.sigma.shape == flux.shape
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_set(path, original)
    with pytest.raises(ValueError, match="non-finite"):
        SpectrumSet(np.full((1, 3501), np.nan), MB24_GRID.wavelength)
    with pytest.raises(ValueError, match="labels must be"):
        SpectrumSet(flux, MB24_GRID.wavelength, labels=LABELS[:2])


def test_label_tables(tmp_path, shared_data):
    mb24 = load_labels(shared_data / "tables/carmenes_params/"
                       "masbuitrago2024_phoenix_grid_params_ph_pars.npy")
    assert mb24.shape == (22933, 4)
    assert mb24[:, 0].min() == 2325 and mb24[:, 0].max() == 4475
    table = Table(LABELS, names=("Teff", "logg", "[M/H]", "vsini"))
    table.write(tmp_path / "l.ecsv")
    table.write(tmp_path / "l.csv")
    np.testing.assert_array_equal(load_labels(tmp_path / "l.ecsv"), LABELS)
    np.testing.assert_array_equal(load_labels(tmp_path / "l.csv"), LABELS)
    Table(LABELS, names=("a", "b", "c", "d")).write(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"no column for teff .*found \['a', 'b', 'c', 'd'\]"):
        load_labels(tmp_path / "bad.csv")
    bad = LABELS.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2 has non-finite labels"):
        load_labels(bad)
    bad[2, 1], bad[3, 3] = 5.0, -1.0
    with pytest.raises(ValueError, match="row 3 has v sin i = -1.0"):
        load_labels(bad)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        load_labels(LABELS[:, :3])


def test_build_matches_the_preprocessor_and_resumes(tmp_path, grid_dir):
    prep = Preprocessor(resolving_power=94600)
    out = build_training_set(grid_dir, LABELS, tmp_path / "train.h5", preprocessor=prep,
                             workers=2, progress=False)
    built = read_set(out)
    assert built.flux.shape == (6, 3501) and np.all(np.isfinite(built.flux))
    assert built.preprocessing == prep
    assert "PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte03100-5.00-0.0" in " ".join(
        built.provenance["grid_points_used"])
    # Each row is what the Preprocessor makes of the interpolated spectrum.
    grid = PhoenixGrid(grid_dir)
    for row in (0, 3, 5):
        spectrum = grid.interpolate(LABELS[row], prep.span[0] - 2, prep.span[1] + 2)
        expected = prep(spectrum, vsini=LABELS[row, 3]).flux
        np.testing.assert_allclose(built.flux[row], expected, atol=2e-3)
    assert built.flux[1].min() > built.flux[0].min()   # 10 km/s fills the line more than 1.5
    # Interrupt: forget rows 2..5, then run the same command again.
    with h5py.File(out, "r+") as handle:
        handle["done"][2:] = False
        handle["flux"][2:] = 0.0
        handle.attrs["complete"] = False
    with pytest.raises(ValueError, match="unfinished build \\(2 of 6 rows done\\)"):
        read_set(out)
    build_training_set(grid_dir, LABELS, out, preprocessor=prep, workers=1, progress=False)
    np.testing.assert_array_equal(read_set(out).flux, built.flux)
    with pytest.raises(FileExistsError, match="finished training set"):
        build_training_set(grid_dir, LABELS, out, preprocessor=prep, progress=False)


def test_build_refuses_bad_labels_before_any_work(tmp_path, grid_dir):
    with pytest.raises(ValueError, match=r"Teff = 3300 lies outside"):
        build_training_set(grid_dir, np.array([[3300.0, 5.0, 0.0, 2.0]]), tmp_path / "x.h5",
                           progress=False)
    assert not (tmp_path / "x.h5").exists()
    (tmp_path / "other.h5").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="not a spectrum set|exists"):
        build_training_set(grid_dir, LABELS, tmp_path / "other.h5", progress=False)
    assert (tmp_path / "other.h5").read_bytes() == b"user data"


def test_cli_build_set_and_prepare_observed(tmp_path, grid_dir, capsys):
    Table(LABELS, names=("teff", "logg", "feh", "vsini")).write(tmp_path / "labels.csv")
    out = tmp_path / "cli.h5"
    code = main(["build-set", "--phoenix", str(grid_dir), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(out), "--workers", "2", "--no-progress",
                 "--window", "8805", "8830", "0.02", "--resolving-power", "80000"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    built = read_set(out)
    assert built.flux.shape == (6, 1251)
    assert built.preprocessing.resolving_power == 80000.0
    assert main(["build-set", "--phoenix", str(grid_dir), "--labels",
                 str(tmp_path / "labels.csv"), "--out", str(out), "--no-progress"]) == 1
    assert "finished training set" in capsys.readouterr().err

    # An observed star 12 km/s redshifted, as a CARACAL file; the template is a grid file.
    rv = 12.0
    wave = np.arange(8785.0, 8850.0, 0.02)[None, :]
    flux = np.interp(wave / (1 + rv / C_KMS), WAVE, linear_flux(3000, 5.0, 0.0)) / 1e13
    car = write_caracal(tmp_path / "car-20200101T00h00m00s-sci-gtoc-vis_A.fits", wave, flux,
                        sigma=0.01 * flux, header={"OBJECT": "Test star", "CARACAL BERV": -3.0})
    template = grid_dir / GridPoint(3000, 5.0, 0.0).relative_path
    observed_out = tmp_path / "obs.h5"
    # Neither a template nor --no-rv: the velocity is never skipped in silence.
    assert main(["prepare-observed", str(car), "--out", str(observed_out)]) == 1
    assert "--no-rv" in capsys.readouterr().err and not observed_out.exists()
    code = main(["prepare-observed", str(car), "--out", str(observed_out),
                 "--template", str(template), "--rv-range", "-50", "50", "0.5"])
    assert code == 0
    observed = read_set(observed_out)
    assert observed.kind == "observed" and observed.labels is None
    assert observed.identifiers == ["Test star"] and observed.flux.shape == (1, 3501)
    record = observed.provenance["spectra"][0]
    assert record["rv"] == pytest.approx(rv, abs=0.3)
    assert record["barycentric_rv"] == pytest.approx(record["rv"] - 3.0)
    assert record["rv_flag"] == "ok" and record["berv_source"] == "header"
    # Shifted back to rest, the star matches the preprocessed template.
    prep = observed.preprocessing
    grid = PhoenixGrid(grid_dir)
    # The CARACAL file says R = 94,600 (VIS), so it is not broadened; neither is this.
    template_spectrum = grid.interpolate((3000, 5.0, 0.0), prep.span[0] - 1, prep.span[1] + 1)
    expected = prep(template_spectrum.replace(metadata={"resolving_power": 94600.0}))
    np.testing.assert_allclose(observed.flux[0], expected.flux, atol=0.02)


def test_spectra_never_imports_a_higher_layer():
    """Workers and light users rely on the spectra modules importing no Keras/TensorFlow."""
    forbidden = ("keras", "tensorflow", "mdwarf_zoo.models", "mdwarf_zoo.hub",
                 "mdwarf_zoo.training", "mdwarf_zoo.pipeline", "mdwarf_zoo.registry")
    folder = Path(__file__).resolve().parents[1] / "mdwarf_zoo" / "spectra"
    for name in ("grid", "phoenix", "observed", "preprocess", "rv", "barycentric", "datasets",
                 "__init__"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                assert not module.startswith(forbidden), f"spectra/{name}.py imports {module}"
