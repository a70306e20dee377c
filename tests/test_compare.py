"""`mdwarf-zoo compare` on a tiny recipe: the table, the figure, shared data and seeds, resume
without retraining, and refusals."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import pytest
from recipe_builder import write_recipe

from mdwarf_zoo.cli import main
from mdwarf_zoo.recipes.compare import COLUMNS

ARCHITECTURES = ["dense_ae_tiny", "conv_ae_tiny"]

# The tiny recipe as a two-architecture grid with both baselines.
COMPARE = {
    "recipe": {"name": "tiny_compare", "seed": 3},
    "data.synthetic": {"n": 80},
    "data.synthetic.label_ranges": None,
    "autoencoders": {"members": None, "epochs": 2, "batch_size": 16},
    "autoencoders.grid": {"architecture": ARCHITECTURES, "widths": None, "activation": None},
    "ensemble": None,
    "compare": {"baselines": ["no_transfer", "spectrum_cnn"]},
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    recipe = write_recipe(folder, COMPARE)
    out = folder / "out"
    assert main(["compare", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return recipe, out


def test_outputs_and_rows(comparison):
    _, out = comparison
    for name in ("comparison.csv", "comparison.md", "comparison.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = _rows(out / "comparison.csv")
    assert [r["model"] for r in rows] == [
        *ARCHITECTURES,
        *(f"{a} [no transfer]" for a in ARCHITECTURES),
        "spectrum_cnn",
    ]
    accuracy = [f"{p}_{a}" for p in ("teff", "logg") for a in ("bias", "rms", "coverage")]
    assert list(rows[0]) == [*COLUMNS, *accuracy]
    numeric = [c for c in (*COLUMNS, *accuracy) if c not in ("model", "kind", "architecture")]
    for row in rows[:2]:
        assert row["kind"] == "transfer"
        for column in numeric:
            assert math.isfinite(float(row[column])), (row["model"], column)
    for row in rows[2:]:
        for column in ("parameters", "inference_spectra_per_second", *accuracy):
            assert math.isfinite(float(row[column])), (row["model"], column)
        assert row["mse_observed_after"] == ""
    for row in rows:
        assert 0.0 <= float(row["teff_coverage"]) <= 1.0
        assert float(row["parameters"]) > 0
    # Transfer lowers the observed reconstruction error of its own training spectra or
    # leaves it about the same; a sign error in before/after would flip it.
    markdown = (out / "comparison.md").read_text()
    assert "dense_ae_tiny [no transfer]" in markdown and "comparison.png" in markdown


def test_same_data_and_seeds(comparison):
    _, out = comparison
    runs = sorted(p for p in out.iterdir() if p.is_dir() and p.name[:2].isdigit())
    assert [p.name for p in runs] == ["00_dense_ae_tiny", "01_conv_ae_tiny"]
    for name in ("synthetic.h5", "observed.h5"):
        assert len({_sha(run / "data" / name) for run in runs}) == 1
    texts = [(run / "recipe.toml").read_text() for run in runs]
    for text, architecture in zip(texts, ARCHITECTURES, strict=True):
        assert f'architecture = "{architecture}"' in text
        assert "seed = 3" in text
    # The recipes differ in the grid only.
    stripped = [
        "\n".join(
            line
            for line in t.splitlines()
            if "architecture" not in line and "grid point" not in line
        )
        for t in texts
    ]
    assert stripped[0] == stripped[1]
    assert (runs[0] / "members" / "member_000" / "pretrained").is_dir()
    assert not (runs[0] / "members" / "member_001").exists()


def test_rerun_resumes_without_training(comparison):
    recipe, out = comparison
    models = sorted(out.glob("*/members/member_000/*/model.weights.h5")) + sorted(
        out.glob("spectrum_cnn/seed_*/model.weights.h5")
    )
    assert len(models) == 2 * 2 + 2
    before = {p: p.stat().st_mtime_ns for p in models}
    table = _sha(out / "comparison.csv")
    assert main(["compare", str(recipe), "--out", str(out), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in models} == before
    assert _sha(out / "comparison.csv") == table


def test_refuses_foreign_folders(comparison, tmp_path, capsys):
    recipe, out = comparison
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["compare", str(recipe), "--out", str(foreign), "--no-progress"]) == 1
    assert "not a compare folder" in capsys.readouterr().err
    other = write_recipe(tmp_path, COMPARE, {"recipe": {"seed": 4}}, name="other.toml")
    assert main(["compare", str(other), "--out", str(out), "--no-progress"]) == 1
    assert "belongs to recipe" in capsys.readouterr().err


def test_recipe_without_architectures(tmp_path, capsys):
    no_grid = {"autoencoders.grid": {"architecture": None}}
    recipe = write_recipe(tmp_path, COMPARE, no_grid, name="none.toml")
    assert main(["compare", str(recipe), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "[autoencoders.grid]" in error and "architecture" in error
    assert not (tmp_path / "o").exists()
