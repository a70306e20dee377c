"""`mdwarf-zoo predict` with the bundled demo pipeline on CARACAL-layout files, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from mdwarf_zoo.cli import main
from mdwarf_zoo.pipeline.gap import scale_factors
from mdwarf_zoo.pipeline.pretrained import load_pipeline
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.observed import write_caracal
from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra

DEMO = "mb24_quickstart_demo"
LABELS = np.array([[3000.0, 5.0, 0.0, 3.0], [3500.0, 4.9, -0.2, 5.0], [3800.0, 4.8, 0.3, 2.0]])


@pytest.fixture(scope="module")
def caracal_files(tmp_path_factory) -> list[Path]:
    """Simulated observed-domain spectra written in the CARMENES CARACAL layout, with a
    blaze-like continuum in counts (so the pipeline's continuum normalisation has work)."""
    folder = tmp_path_factory.mktemp("caracal")
    grid = WavelengthGrid(8780.0, 8855.0, 0.01)
    flux = observe(synthetic_spectra(LABELS, grid), LABELS, snr=150, seed=3, grid=grid)
    x = (grid.wavelength - grid.wavelength.mean()) / (grid.wavelength[-1] - grid.wavelength[0])
    continuum = 5000.0 * (1.0 - 1.5 * x**2)
    paths = []
    for i, row in enumerate(flux):
        path = folder / f"car-20200101T0{i}h00m00s-sci-gtoc-vis_A.fits"
        write_caracal(
            path,
            grid.wavelength,
            row * continuum,
            continuum=continuum,
            header={"OBJECT": f"SIM-{i}", "CARACAL BERV": 0.0},
        )
        paths.append(path)
    return paths


def test_demo_pipeline_is_a_published_offline_entry():
    import mdwarf_zoo
    from mdwarf_zoo.hub import get_pretrained

    assert DEMO in mdwarf_zoo.list_pretrained()
    entry = get_pretrained(DEMO)
    folder = entry.bundled_folder()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 5_000_000
    card = (entry.card_path).read_text()
    assert "simulated spectra" in card and "not for science" in card
    model = mdwarf_zoo.from_pretrained(DEMO)
    assert model.kind == "autoencoder" and model.input_shape == (None, 3501)


def test_predict_caracal_files_with_the_demo_pipeline(tmp_path: Path, caracal_files, capsys):
    out = tmp_path / "estimates.ecsv"
    args = [
        "predict",
        "--model",
        DEMO,
        *map(str, caracal_files),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    table = Table.read(out)
    assert list(table["id"]) == ["SIM-0", "SIM-1", "SIM-2"]
    for name in ("teff", "logg", "mh", "vsini"):
        assert np.all(np.isfinite(table[name]))
        assert np.all(table[f"{name}_err_lower"] >= 0) and np.all(table[f"{name}_err_upper"] >= 0)
    assert np.all((table["teff"] > 2300) & (table["teff"] < 4600))
    # The velocity was corrected against the pipeline's template, and recorded.
    assert list(table["rv_flag"]) == ["ok"] * 3
    assert np.all(np.abs(table["rv"]) < 1.5) and np.all(table["rv_error"] > 0)
    assert np.all(table["berv"] == 0.0) and list(table["berv_source"]) == ["header"] * 3
    np.testing.assert_allclose(table["barycentric_rv"], table["rv"])
    # Never overwrites the output.
    assert main(args) == 1
    assert "never overwritten" in capsys.readouterr().err


def test_predict_error_model_flag_widens_the_errors(tmp_path: Path, caracal_files, capsys):
    tables, printed = {}, {}
    for model in ("spread", "spread+validation", "spread+validation+gap"):
        out = tmp_path / f"{model}.ecsv"
        common = ["predict", "--model", DEMO, *map(str, caracal_files), "--no-progress",
                  "--no-rv"]
        assert main([*common, "--error-model", model, "--out", str(out)]) == 0
        tables[model] = Table.read(out)
        printed[model] = capsys.readouterr().out
    spread, both = tables["spread"], tables["spread+validation"]
    gap = tables["spread+validation+gap"]
    assert np.all(np.isnan(spread["rv"])) and spread["rv_flag"][0].startswith("not measured")
    assert both.meta["error_model"] == "spread+validation"
    scatter = both.meta["validation_scatter"]["teff"]
    assert scatter > 0
    assert np.allclose(both["teff"], spread["teff"])
    assert np.allclose(both["teff_err_lower"], np.hypot(spread["teff_err_lower"], scatter))
    # The gap model: the demo records the gap it measured; the ECSV keeps the meta.
    recorded = load_pipeline(DEMO).manifest["ensemble"]["gap"]["teff"]
    factor = load_pipeline(DEMO).manifest["ensemble"]["error_scale"]["teff"]
    assert gap.meta["error_model"] == "spread+validation+gap"
    assert gap.meta["gap"]["teff"] == pytest.approx(recorded)
    assert gap.meta["gap_source"]["teff"].startswith("measured on the simulator")
    factor = scale_factors(factor, np.asarray(gap["teff"]))  # its estimate's bin's factor
    assert np.allclose(gap["teff_err_lower"], factor * np.hypot(both["teff_err_lower"], recorded))
    assert gap.meta["error_scale"]["teff"] == load_pipeline(DEMO).manifest["ensemble"][
        "error_scale"]["teff"]  # the profile survives the ECSV file
    assert "errors: spread\n" in printed["spread"]
    assert f"errors: spread+validation+gap (gap teff {recorded:g} K" in printed[
        "spread+validation+gap"
    ]


def test_predict_with_transfer_on_the_files(tmp_path: Path, caracal_files):
    out = tmp_path / "estimates.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                DEMO,
                *map(str, caracal_files),
                "--transfer",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(Table.read(out)) == 3


def test_predict_refuses_unknown_model(tmp_path: Path, caracal_files, capsys):
    assert (
        main(
            [
                "predict",
                "--model",
                "no_such_entry",
                str(caracal_files[0]),
                "--out",
                str(tmp_path / "x.ecsv"),
            ]
        )
        == 1
    )
    assert "no published weights entry" in capsys.readouterr().err


def test_predict_without_a_template_stops_and_names_both_fixes(tmp_path: Path, caracal_files,
                                                              capsys):
    """A pipeline made before radial-velocity templates (no rv_template) never skips the
    correction in silence."""
    import json
    import shutil

    import mdwarf_zoo

    folder = tmp_path / "old_pipeline"
    shutil.copytree(Path(mdwarf_zoo.__file__).parent / "data" / "weights" / DEMO, folder)
    manifest = json.loads((folder / "pipeline.json").read_text())
    del manifest["rv_template"]
    (folder / "pipeline.json").write_text(json.dumps(manifest))
    out = tmp_path / "t.ecsv"
    args = ["predict", "--model", str(folder), str(caracal_files[0]), "--out", str(out)]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "no radial-velocity template" in error and "--template" in error
    assert "--no-rv" in error and not out.exists()
    # A damaged template is refused, not used.
    manifest["rv_template"] = {"file": "rv_template.fits", "sha256": "0" * 64}
    (folder / "pipeline.json").write_text(json.dumps(manifest))
    assert main(args) == 1
    assert "refusing to use it" in capsys.readouterr().err
