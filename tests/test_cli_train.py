"""`mdwarf-zoo train`/`plan`/`predict` on tiny recipes: resume after a kill, determinism,
member jobs, refusal to overwrite, and predictions for CARACAL-layout files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table
from recipe_builder import tiny_recipe, write_recipe

from mdwarf_zoo.cli import main
from mdwarf_zoo.pipeline.gap import check_error_scale, scale_factors

# The tiny recipe with fewer pretraining steps, for runs that are never killed in pretraining.
SMALL = {"data.synthetic": {"n": 120}, "autoencoders": {"epochs": 2, "batch_size": 16}}
# Fewer spectra still, for tests that stop at parsing or after a member's first stages.
SHORT = {"data.synthetic": {"n": 40}, "autoencoders": {"epochs": 2, "batch_size": 8}}


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


def train_and_kill(recipe: Path, out: Path, ready: Callable[[], bool], settle: float = 0.0) -> None:
    """Run `mdwarf-zoo train` in a subprocess and SIGKILL it ``settle`` seconds after
    ``ready()`` holds (or after 300 s, or after it ended by itself)."""
    train = ["train", str(recipe), "--out", str(out), "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mdwarf_zoo.cli", *train],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(settle)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny recipe run once, uninterrupted, in this process: (recipe, run folder)."""
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(folder)
    assert main(["train", str(recipe), "--out", str(folder / "run"), "--no-progress"]) == 0
    return recipe, folder / "run"


def test_the_run_measures_its_domain_gap_on_the_simulator(reference_run):
    """A simulated synthetic set: the default errors add the gap the ensemble stage measured
    on 300 simulated twins through the run's own pipeline and are rescaled by the coverage
    factor measured on the same twins, both recorded in pipeline.json and in the table."""
    _, run = reference_run
    ensemble = json.loads((run / "pipeline.json").read_text())["ensemble"]
    assert ensemble["error_model"] == "spread+validation+gap"
    assert ensemble["gap_source"].startswith("measured on the simulator: 300 held-out")
    gap = ensemble["gap"]
    assert set(gap) == {"teff", "logg"}  # the tiny recipe's parameters
    assert all(np.isfinite(v) and v >= 0 for v in gap.values()) and gap["teff"] > 0
    assert gap != {"teff": 50.6, "logg": 0.060}  # not the prior
    table = Table.read(run / "predictions.ecsv")
    assert table.meta["error_model"] == "spread+validation+gap"
    assert table.meta["gap"] == pytest.approx(gap)
    assert set(table.meta["gap_source"].values()) == {ensemble["gap_source"]}
    # The coverage factor: a profile in the default 5 bins of the estimate (60 twins each).
    factors = ensemble["error_scale"]
    assert set(factors) == {"teff", "logg"}
    assert check_error_scale(factors, "test") == factors
    assert all(len(profile["factors"]) == 5 for profile in factors.values())
    assert ensemble["error_scale_source"].startswith("measured on the simulator: 300 held-out")
    assert "in 5 bins of the estimate at most" in ensemble["error_scale_source"]
    assert table.meta["error_scale"] == factors
    assert table.meta["error_scale_source"] == ensemble["error_scale_source"]
    # Every error is at least its bin's c times the gap scale (in quadrature, then rescaled).
    for name, scale in gap.items():
        floor = scale_factors(factors[name], np.asarray(table[name])) * scale * (1 - 1e-9)
        assert np.all(np.asarray(table[f"{name}_err_lower"]) >= floor)


def test_an_export_of_fewer_members_drops_the_gap_and_factor_measured_on_the_whole(
    reference_run, tmp_path: Path, caplog
):
    """The gap and the coverage factor were measured through the run's whole ensemble; an
    export of one of its two members makes other estimates, so it must not carry them."""
    from mdwarf_zoo.pipeline.pretrained import export_pipeline, load_pipeline
    from mdwarf_zoo.spectra.datasets import read_set

    _, run = reference_run
    whole = json.loads((export_pipeline(run, tmp_path / "all") / "pipeline.json").read_text())
    assert whole["ensemble"]["error_scale"] and whole["ensemble"]["gap"]
    assert "dropped" not in whole["exported_from"]
    with caplog.at_level("WARNING"):
        part = export_pipeline(run, tmp_path / "one", members=[0])
    manifest = json.loads((part / "pipeline.json").read_text())
    for key in ("gap", "gap_source", "error_scale", "error_scale_source"):
        assert key not in manifest["ensemble"]
    assert "error_scale and gap" in manifest["exported_from"]["dropped"]
    assert "1 of its 2 members" in caplog.text
    table = load_pipeline(part).predict(
        read_set(run / "data" / "observed.h5").flux[:3], progress=False
    )
    assert table.meta["gap_source"]["teff"].startswith("prior")
    assert table.meta["error_scale"] == {"teff": 1.0, "logg": 1.0}


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
    other = write_recipe(tmp_path, {"autoencoders": {"epochs": 3}}, name="other.toml")
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
    bad = {"data.synthetic": {"n": 60}, "autoencoders.grid": {"architecture": "dense_ae_tinny"}}
    recipe = write_recipe(tmp_path, SMALL, bad, name="bad.toml")
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
    checkpoint = killed / "members" / "member_000" / "pretrain.ckpt.npz"
    train_and_kill(recipe, killed, checkpoint.exists, settle=0.1)  # into the next epoch
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
    mirrored = {"recipe": {"strategy": "mirrored"}}
    recipe = write_recipe(tmp_path, SHORT, mirrored, name="mirrored.toml")
    run = tmp_path / "run"
    args = ["train", str(recipe), "--out", str(run), "--member", "0", "--no-progress"]
    assert main([*args, "--stage", "sets"]) == 1  # sets is a whole-run stage
    assert main(["train", str(recipe), "--out", str(run), "--stage", "sets", "--no-progress"]) == 0
    assert main([*args, "--stage", "pretrain"]) == 0
    member = run / "members" / "member_000"
    assert (member / "pretrained" / "mdwarf_zoo.json").is_file()
    assert not (member / "pretrain.ckpt").exists() and not (member / "transferred").exists()


def test_predict_with_a_run_folder(tmp_path: Path, reference_run, capsys):
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
    # A run folder carries no radial-velocity template: predict says so instead of skipping
    # the correction; these simulated spectra are in the rest frame, which --no-rv declares.
    assert main(["predict", "--model", str(run), *files, "--out", str(out), "--no-progress"]) == 1
    assert "no radial-velocity template" in capsys.readouterr().err and not out.exists()
    assert (
        main(
            ["predict", "--model", str(run), *files, "--out", str(out), "--no-progress", "--no-rv"]
        )
        == 0
    )
    table = Table.read(out)
    assert list(table["id"]) == ["STAR-0", "STAR-1"] and str(table["teff"].unit) == "K"
    assert np.all(np.isfinite(table["teff"])) and np.all(np.isfinite(table["logg"]))


def test_default_error_model_and_the_recipe_gap_reach_pipeline_json_table_and_report(
    tmp_path: Path,
):
    """A recipe that names no error model gets "spread+validation+gap"; its [ensemble] gap
    goes into pipeline.json, so the run's table (made through the folder's predict) and its
    report use it, and the prior covers the parameters it leaves out."""
    import json

    from astropy.table import Table

    from mdwarf_zoo.pipeline.gap import GAP_PRIOR

    recipe = write_recipe(tmp_path, SMALL, {"ensemble": {"gap": {"teff": 75.0}}})
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run), "--no-progress"]) == 0
    source = "recipe tiny: [ensemble] gap"
    manifest = json.loads((run / "pipeline.json").read_text())
    assert manifest["ensemble"] == {
        "best": 3, "error_model": "spread+validation+gap", "gap": {"teff": 75.0},
        "gap_source": source,
    }
    table = Table.read(run / "predictions.ecsv")
    assert table.meta["error_model"] == "spread+validation+gap"
    assert table.meta["gap"] == {"teff": 75.0, "logg": GAP_PRIOR["logg"]}
    assert table.meta["gap_source"]["teff"] == source
    assert np.all(table["teff_err_lower"] >= 75.0) and np.all(table["logg_err_upper"] >= 0.06)
    report = (run / "report.md").read_text()
    assert f"errors: `spread+validation+gap (gap teff 75 K, logg 0.06 dex; {source}; prior:" in (
        report
    )


# Not MB24: standardised latents, CORAL-aligned observed latents and spread+validation errors,
# from the recipe through the run folder to PretrainedPipeline.predict and `mdwarf-zoo predict`.
ALIGNED = {
    # CORAL needs at least 2 x 8 (dense_ae_tiny's latent size) observed spectra.
    "data.observed": {"n": 24},
    "regressors": {"standardize_latents": True},
    "ensemble": {"error_model": "spread+validation", "latent_alignment": "coral"},
}


# What pipeline.json records of ALIGNED (the bootstrap is seeded with the recipe's seed, 5).
ALIGNMENT_SETTINGS = {"method": "coral", "neighbours": 20, "resamples": 30, "seed": 5}


def aligned_recipe_text(*changes) -> str:
    return tiny_recipe(SMALL, ALIGNED, *changes)


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("aligned")
    recipe = folder / "aligned.toml"
    recipe.write_text(aligned_recipe_text())
    assert main(["train", str(recipe), "--out", str(folder / "run"), "--no-progress"]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def aligned_observed(aligned_run):
    from mdwarf_zoo.spectra.datasets import read_set

    return read_set(aligned_run / "data" / "observed.h5")


def assert_same_estimates(got, expected) -> None:
    """Equal to float tolerance: the runner encodes in batches of 256 with direct calls,
    predict with Model.predict, and CORAL's whitening magnifies the last bits a little."""
    for name in ("teff", "logg"):
        scale = float(np.max(np.abs(expected[name])))
        for column in (name, f"{name}_err_lower", f"{name}_err_upper"):
            np.testing.assert_allclose(
                np.asarray(got[column]),
                np.asarray(expected[column]),
                rtol=1e-5,
                atol=1e-5 * scale,
                err_msg=column,
            )


def test_aligned_run_records_latent_scaling_alignment_and_error_model(aligned_run):
    import json

    from astropy.table import Table

    manifest = json.loads((aligned_run / "pipeline.json").read_text())
    assert manifest["ensemble"] == {"best": 3, "error_model": "spread+validation"}
    assert manifest["alignment"] == ALIGNMENT_SETTINGS
    for member in manifest["members"]:
        folder = aligned_run / "members" / member["name"]
        with np.load(folder / "latents.npz") as saved:
            synthetic = saved["synthetic"]
        scaling = member["latent_scaling"]
        assert scaling["kind"] == "standard"
        np.testing.assert_allclose(scaling["mean"], synthetic.mean(axis=0), rtol=1e-5, atol=1e-6)
        assert member["alignment_reference"] == f"members/{member['name']}/alignment_reference.npz"
        with np.load(aligned_run / member["alignment_reference"]) as reference:
            assert reference["synthetic_latents"].dtype == np.float32
            assert np.array_equal(reference["synthetic_latents"], synthetic)
            assert reference["synthetic_labels"].shape == (120, 2)
            assert list(reference["parameters"]) == ["teff", "logg"]
    table = Table.read(aligned_run / "predictions.ecsv")
    assert table.meta["latent_alignment"] == "coral"
    assert table.meta["error_model"] == "spread+validation"
    assert table.meta["n_regressors"] == {"teff": 3, "logg": 3}
    assert table.meta["alignment_resamples"] == 30
    assert "alignment bootstrap" in table.meta["errors"]
    report = (aligned_run / "report.md").read_text()
    assert "errors: `spread+validation`; latent standardisation: on; latent alignment: `coral`" in (
        report
    )


def test_pipeline_folder_of_an_aligned_run_reproduces_its_table(aligned_run, aligned_observed):
    from astropy.table import Table

    from mdwarf_zoo.pipeline.ensemble import ensemble_table
    from mdwarf_zoo.pipeline.pretrained import load_pipeline

    pipeline = load_pipeline(aligned_run)
    flux, names = aligned_observed.flux, list(aligned_observed.identifiers)
    table = Table.read(aligned_run / "predictions.ecsv")
    aligned = pipeline.predict(flux, names, progress=False)
    assert aligned.meta["latent_alignment"] == "coral"
    assert aligned.meta["error_model"] == "spread+validation"  # the pipeline's by default
    assert list(aligned["id"]) == list(table["id"])
    assert_same_estimates(aligned, table)
    # The alignment's bootstrap spread is part of those errors; without it they are narrower.
    bare = pipeline.predict(flux, names, progress=False, alignment_resamples=0)
    np.testing.assert_allclose(bare["teff"], table["teff"], rtol=1e-5)
    for side in ("lower", "upper"):
        wide, narrow = np.asarray(table[f"teff_err_{side}"]), np.asarray(bare[f"teff_err_{side}"])
        assert np.all(wide >= narrow * (1 - 1e-5)) and np.any(wide > narrow * 1.01)
    with pytest.raises(ValueError, match=r"alignment_resamples must be 0 \(no bootstrap\) or >= 2"):
        pipeline.predict(flux, names, progress=False, alignment_resamples=1)
    # Alignment off: the regressors stage's own (standardised, unaligned) predictions.
    unaligned = pipeline.predict(flux, names, progress=False, latent_alignment="none")
    assert unaligned.meta["latent_alignment"] == "none"
    assert not np.allclose(unaligned["teff"], table["teff"], rtol=1e-3)
    stage = {"teff": ([], []), "logg": ([], [])}
    for member in ("member_000", "member_001"):
        with np.load(aligned_run / "members" / member / "predictions.npz") as saved:
            for name, (observed, mse) in stage.items():
                observed.append(saved[f"{name}_observed"])
                mse.extend(saved[f"{name}_validation_mse"])
    std = {n: pipeline.manifest["label_scaling"][n]["std"] for n in stage}
    expected = ensemble_table(
        {n: np.concatenate(v[0]) for n, v in stage.items()},
        names,
        validation_mse={n: v[1] for n, v in stage.items()},
        keep=3,
        error_model="spread+validation",
        validation_rms={n: np.sqrt(v[1]) * std[n] for n, v in stage.items()},
    )
    assert_same_estimates(unaligned, expected)
    # A covariance of a few spectra: refused, with the way out.
    with pytest.raises(
        ValueError,
        match=r"latent alignment 'coral' .* needs at least 16 spectra in one call .*got 5\. "
        r".*latent_alignment='none' \(mdwarf-zoo predict --latent-alignment none\)",
    ):
        pipeline.predict(flux[:5], progress=False)
    assert len(pipeline.predict(flux[:5], progress=False, latent_alignment="none")) == 5
    with pytest.raises(ValueError, match=r"latent_alignment must be 'default', 'none' or one of"):
        pipeline.predict(flux, progress=False, latent_alignment="CORAL")


def test_export_copies_alignment_references_and_refuses_broken_ones(
    aligned_run, aligned_observed, tmp_path
):
    import json
    import shutil

    from astropy.table import Table

    from mdwarf_zoo.pipeline.pretrained import PIPELINE_FILE, export_pipeline, load_pipeline

    flux, names = aligned_observed.flux, list(aligned_observed.identifiers)
    exported = export_pipeline(aligned_run, tmp_path / "exported")
    manifest = json.loads((exported / PIPELINE_FILE).read_text())
    assert manifest["alignment"] == ALIGNMENT_SETTINGS
    for member in manifest["members"]:
        assert member["alignment_reference"] == f"members/{member['name']}/alignment_reference.npz"
        assert (exported / member["alignment_reference"]).is_file()
    assert_same_estimates(
        load_pipeline(exported).predict(flux, names, progress=False),
        Table.read(aligned_run / "predictions.ecsv"),
    )
    broken = Path(shutil.copytree(exported, tmp_path / "broken"))
    reference = broken / manifest["members"][1]["alignment_reference"]
    reference.write_bytes(b"not an npz file")
    with pytest.raises(
        ValueError,
        match=r"alignment reference .*member_001/alignment_reference.npz \(member 'member_001'\) "
        r"cannot be read .*expected an .npz with synthetic_latents",
    ):
        load_pipeline(broken).predict(flux, progress=False)
    with np.load(broken / manifest["members"][0]["alignment_reference"]) as first:
        labels = first["synthetic_labels"]
    np.savez(
        reference,
        synthetic_latents=np.zeros((len(labels), 3), np.float32),
        synthetic_labels=labels,
        parameters=np.array(["teff", "logg"]),
    )
    with pytest.raises(ValueError, match=r"holds 3-d latents but its encoder gives 8-d ones"):
        load_pipeline(broken).predict(flux, progress=False)
    np.savez(
        reference,
        synthetic_latents=np.zeros((40, 8), np.float32),
        synthetic_labels=np.zeros((40, 2)),
        parameters=np.array(["teff", "logg"]),
    )
    with pytest.raises(ValueError, match=r"holds other synthetic labels than 'members/member_000"):
        load_pipeline(broken).predict(flux, progress=False)
    reference.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"names 'members/member_001/alignment_reference.npz' but .* does not exist; "
        r"expected an .npz with synthetic_latents",
    ):
        load_pipeline(broken).predict(flux, progress=False)
    # Without the alignment the references are not read.
    assert len(load_pipeline(broken).predict(flux, progress=False, latent_alignment="none")) == 24


def test_predict_latent_alignment_flag(aligned_run, tmp_path, capsys):
    from astropy.table import Table

    observed = aligned_run / "data" / "observed.h5"
    tables = {}
    for flag in ("pipeline's", "none", "coral_neighbours"):
        out = tmp_path / f"{flag}.ecsv"
        args = ["predict", "--model", str(aligned_run), str(observed), "--out", str(out)]
        if flag != "pipeline's":
            args += ["--latent-alignment", flag]
        assert main([*args, "--no-progress"]) == 0
        tables[flag] = Table.read(out)
    assert "latent alignment coral" in capsys.readouterr().out
    assert_same_estimates(tables["pipeline's"], Table.read(aligned_run / "predictions.ecsv"))
    assert tables["pipeline's"].meta["latent_alignment"] == "coral"
    assert tables["none"].meta["latent_alignment"] == "none"
    assert tables["coral_neighbours"].meta["alignment_neighbours"] == 20
    assert all(t.meta["error_model"] == "spread+validation" for t in tables.values())
    assert not np.allclose(tables["none"]["teff"], tables["pipeline's"]["teff"], rtol=1e-3)
    args = ["predict", "--model", str(aligned_run), str(observed), "--latent-alignment", "pca"]
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "x.ecsv")])
    assert "invalid choice: 'pca'" in capsys.readouterr().err


def test_a_changed_non_mb24_key_never_reuses_a_run_folder(tmp_path: Path):
    from mdwarf_zoo.recipes import load_recipe
    from mdwarf_zoo.recipes.run import Run

    first = tmp_path / "coral.toml"
    first.write_text(aligned_recipe_text())
    Run(load_recipe(first, check_models=False), tmp_path / "run", progress=False)
    for change in (
        {"ensemble": {"latent_alignment": "coral_neighbours"}},
        {"ensemble": {"error_model": "spread"}},
        {"regressors": {"standardize_latents": False}},
    ):
        changed = tmp_path / "changed.toml"
        changed.write_text(aligned_recipe_text(change))
        with pytest.raises(FileExistsError, match="belongs to recipe 'tiny'"):
            Run(load_recipe(changed, check_models=False), tmp_path / "run", progress=False)


def test_anchored_transfer_stage_records_its_mode_and_the_latent_drift(tmp_path: Path):
    """[transfer] mode = "anchored": the runner replays synthetic spectra beside the observed
    ones (batches drawn per epoch by AnchorReplay through the resumable loop), and records the
    mode and the drift of the synthetic latents in the transferred folder and the latents."""
    import json

    anchored = {"transfer": {"mode": "anchored", "anchor_weight": 2.0}}
    recipe = write_recipe(tmp_path, SHORT, anchored, name="anchored.toml")
    run = tmp_path / "run"
    args = ["train", str(recipe), "--out", str(run), "--no-progress"]
    assert main([*args, "--stage", "sets"]) == 0
    for stage in ("pretrain", "transfer", "encode"):
        assert main([*args, "--member", "0", "--stage", stage]) == 0
    member = run / "members" / "member_000"
    card = json.dumps(json.loads((member / "transferred" / "mdwarf_zoo.json").read_text()))
    assert '"mode": "anchored"' in card and '"anchor_weight": 2.0' in card
    assert '"latent_drift"' in card
    with np.load(member / "latents.npz") as saved:
        assert saved["synthetic_transferred"].shape == saved["synthetic"].shape
        assert not np.array_equal(saved["synthetic_transferred"], saved["synthetic"])


def test_anchored_transfer_is_refused_with_a_distribution_strategy(tmp_path: Path):
    from mdwarf_zoo.recipes import RecipeError, parse_recipe

    def parse(*changes):
        return parse_recipe(tiny_recipe(SHORT, *changes), check_models=False)

    mirrored = {"recipe": {"strategy": "mirrored"}, "transfer": {"mode": "anchored"}}
    with pytest.raises(RecipeError, match='mode = "anchored" trains with strategy = "default"'):
        parse(mirrored)
    with pytest.raises(RecipeError, match="anchor_weight"):
        parse({"transfer": {"anchor_weight": 2.0}})
    with pytest.raises(RecipeError, match="mode"):
        parse({"transfer": {"mode": "anchor"}})
    assert parse().transfer.mode == "mb24"


@pytest.mark.slow  # about a minute; `pytest -m slow`
def test_fused_regressors_equal_separate_ones_and_resume_after_a_kill(tmp_path: Path):
    """`[regressors] fused = true` (the default): the same regressor weights as one-by-one
    training (`fused = false`, float32 rounding), and a run killed during fused training resumes
    to identical weights."""
    base = {"autoencoders": {"members": 1}, "regressors": {"epochs": 25}, "ensemble": {"best": 2}}
    separate_recipe = write_recipe(
        tmp_path, SMALL, base, {"regressors": {"fused": False}}, name="separate.toml"
    )
    fused_recipe = write_recipe(tmp_path, SMALL, base, name="fused.toml")
    from mdwarf_zoo.recipes import parse_recipe

    assert parse_recipe(fused_recipe.read_text(), check_models=False).regressors.fused
    separate, fused, killed = tmp_path / "separate", tmp_path / "fused", tmp_path / "killed"
    assert main(["train", str(separate_recipe), "--out", str(separate), "--no-progress"]) == 0
    assert main(["train", str(fused_recipe), "--out", str(fused), "--no-progress"]) == 0
    first, second = weights(separate), weights(fused)
    assert first.keys() == second.keys() and any("regressors" in key for key in first)
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=1e-5, err_msg=key)

    regressors = killed / "members" / "member_000" / "regressors"
    train_and_kill(fused_recipe, killed, lambda: any(regressors.glob("fused_*.ckpt.npz")))
    checkpoints = list(regressors.glob("fused_*.ckpt.npz"))
    assert checkpoints, "the run was not killed during fused regressor training"
    with np.load(checkpoints[0]) as saved:
        assert 1 <= int(saved["epoch"]) < 25
    assert not list(regressors.glob("*_seed*"))
    resumed = cli("train", str(fused_recipe), "--out", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert_same_weights(killed, fused)
    assert (killed / "predictions.ecsv").read_text() == (fused / "predictions.ecsv").read_text()
