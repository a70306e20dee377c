"""`mdwarf-zoo train`/`plan`/`predict` on tiny recipes: resume after a kill, determinism,
member jobs, refusal to overwrite, and predictions for CARACAL-layout files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mdwarf_zoo.cli import main

TINY = """
[recipe]
name = "tiny"
seed = 5

[data.synthetic]
source = "simulator"
n = {n_synthetic}

[data.synthetic.label_ranges]
teff = [2800.0, 3800.0]
logg = [4.8, 5.2]
mh = [-0.3, 0.3]
vsini = [2.0, 6.0]

[data.observed]
source = "simulator"
n = 12

[preprocessing]
window = [8800.0, 8810.0, 0.02]
normalisation = "gisic"

[autoencoders]
members = 2
epochs = {epochs}
batch_size = {batch}
learning_rate = 1e-3

[autoencoders.grid]
architecture = "dense_ae_tiny"
widths = [[16, 12, 8, 4, 2]]
activation = "elu"

[transfer]
epochs = 2
batch_size = 4
learning_rate = 1e-3

[regressors]
parameters = ["teff", "logg"]
seeds = 2
epochs = 2
learning_rate = 1e-3
batch_size = 16

[regressors.overrides]
nf1 = 4
nf2 = 4
nu = 8

[ensemble]
best = 3

[outputs]
plots = false
"""


def write_recipe(folder: Path, *, n_synthetic=200, epochs=4, batch=2, name="tiny.toml") -> Path:
    path = folder / name
    path.write_text(TINY.format(n_synthetic=n_synthetic, epochs=epochs, batch=batch))
    return path


def weights(folder: Path) -> dict[str, np.ndarray]:
    """Every array of every model.weights.h5 below ``folder``, keyed by path."""
    arrays = {}
    for file in sorted(folder.rglob("model.weights.h5")):
        with h5py.File(file, "r") as handle:

            def visit(name, item, file=file):
                if isinstance(item, h5py.Dataset):
                    arrays[f"{file.relative_to(folder)}:{name}"] = item[()]

            handle.visititems(visit)
    return arrays


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys() and first
    for key in first:
        assert np.array_equal(first[key], second[key]), key


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mdwarf_zoo.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny recipe run once, uninterrupted, in this process: (recipe, run folder)."""
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(folder)
    assert main(["train", str(recipe), "--out", str(folder / "run"), "--no-progress"]) == 0
    return recipe, folder / "run"


def test_train_runs_all_stages_and_is_deterministic(tmp_path: Path, reference_run, capsys):
    recipe, run = reference_run
    for member in ("member_000", "member_001"):
        for part in ("pretrained", "transferred", "regressors/teff_seed0", "regressors/logg_seed1"):
            assert (run / "members" / member / part / "mdwarf_zoo.json").is_file()
    assert (run / "predictions.ecsv").is_file() and (run / "diagnostics.json").is_file()
    assert (run / "pipeline.json").is_file()
    report = (run / "report.md").read_text()
    assert "sha256" in report and 'name = "tiny"' in report and "Accuracy" in report
    # Resuming a finished run does nothing and changes nothing.
    before = weights(run)
    assert main(["train", str(recipe), "--out", str(run), "--no-progress"]) == 0
    assert "predictions:" in capsys.readouterr().out
    after = weights(run)
    assert after.keys() == before.keys()
    assert all(np.array_equal(before[key], after[key]) for key in before)
    # Member jobs, then the gathering stages, reproduce the one-process run bit for bit.
    jobs = tmp_path / "b"
    assert main(["train", str(recipe), "--out", str(jobs), "--stage", "sets", "--no-progress"]) == 0
    assert (
        main(["train", str(recipe), "--out", str(jobs), "--stage", "ensemble", "--no-progress"])
        == 1
    )
    assert "members [0, 1] are not finished" in capsys.readouterr().err
    for member in ("1", "0"):
        assert (
            main(["train", str(recipe), "--out", str(jobs), "--member", member, "--no-progress"])
            == 0
        )
    for stage in ("ensemble", "report"):
        assert (
            main(["train", str(recipe), "--out", str(jobs), "--stage", stage, "--no-progress"]) == 0
        )
    assert_same_weights(run, jobs)
    assert (run / "predictions.ecsv").read_text() == (jobs / "predictions.ecsv").read_text()


def test_run_folder_is_never_overwritten(tmp_path: Path, capsys):
    recipe = write_recipe(tmp_path)
    other = write_recipe(tmp_path, epochs=3, name="other.toml")
    folder = tmp_path / "run"
    assert (
        main(["train", str(recipe), "--out", str(folder), "--stage", "sets", "--no-progress"]) == 0
    )
    assert main(["train", str(other), "--out", str(folder), "--no-progress"]) == 1
    assert "belongs to recipe 'tiny'" in capsys.readouterr().err
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    assert main(["train", str(recipe), "--out", str(user), "--no-progress"]) == 1
    assert "is not a run folder" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "keep me"


def test_invalid_recipe_fails_before_anything_is_written(tmp_path: Path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(
        TINY.format(n_synthetic=60, epochs=2, batch=16).replace(
            'architecture = "dense_ae_tiny"', 'architecture = "dense_ae_tinny"'
        )
    )
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 1
    assert "Did you mean dense_ae_tiny" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_plan_lists_members(tmp_path: Path, capsys):
    assert main(["plan", str(write_recipe(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "member   0: dense_ae_tiny" in out and "member   1" in out and "seed 6" in out


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, reference_run):
    """Kill `mdwarf-zoo train` (SIGKILL) in the middle of pretraining, restart it, and compare
    every weight and the predictions with the uninterrupted run."""
    reference_recipe, reference = reference_run
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(reference_recipe.read_text())
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdwarf_zoo.cli",
            "train",
            str(recipe),
            "--out",
            str(killed),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "members" / "member_000" / "pretrain.ckpt.npz"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.1)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run was not killed during pretraining"
    assert not (killed / "members" / "member_000" / "pretrained").exists()
    with np.load(checkpoint) as saved:
        assert 1 <= int(saved["epoch"]) < 4
    resumed = cli("train", str(recipe), "--out", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert_same_weights(killed, reference)
    assert (killed / "predictions.ecsv").read_text() == (reference / "predictions.ecsv").read_text()


def test_mirrored_strategy_trains_through_fit_distributed(tmp_path: Path):
    text = TINY.format(n_synthetic=40, epochs=2, batch=8).replace(
        "seed = 5", 'seed = 5\nstrategy = "mirrored"'
    )
    recipe = tmp_path / "mirrored.toml"
    recipe.write_text(text)
    run = tmp_path / "run"
    args = ["train", str(recipe), "--out", str(run), "--member", "0", "--no-progress"]
    assert main([*args, "--stage", "sets"]) == 1  # sets is a whole-run stage
    assert main(["train", str(recipe), "--out", str(run), "--stage", "sets", "--no-progress"]) == 0
    assert main([*args, "--stage", "pretrain"]) == 0
    member = run / "members" / "member_000"
    assert (member / "pretrained" / "mdwarf_zoo.json").is_file()
    assert not (member / "pretrain.ckpt").exists() and not (member / "transferred").exists()


def test_predict_with_a_run_folder(tmp_path: Path, reference_run):
    from astropy.table import Table

    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.observed import write_caracal
    from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra

    _, run = reference_run
    labels = np.array([[3100.0, 5.0, 0.0, 3.0], [3600.0, 4.9, 0.2, 4.0]])
    grid = WavelengthGrid(8790.0, 8820.0, 0.01)
    flux = observe(synthetic_spectra(labels, grid), labels, snr=200, seed=1, grid=grid)
    files = []
    for i, row in enumerate(flux):
        path = tmp_path / f"car-20200101T0{i}h00m00s-sci-gtoc-vis_A.fits"
        write_caracal(path, grid.wavelength, 4000.0 * row, header={"OBJECT": f"STAR-{i}"})
        files.append(str(path))
    out = tmp_path / "estimates.fits"
    assert main(["predict", "--model", str(run), *files, "--out", str(out), "--no-progress"]) == 0
    table = Table.read(out)
    assert list(table["id"]) == ["STAR-0", "STAR-1"] and str(table["teff"].unit) == "K"
    assert np.all(np.isfinite(table["teff"])) and np.all(np.isfinite(table["logg"]))
