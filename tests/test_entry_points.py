"""Stages 2-4 once: the recipe runner, its run folder loaded as a pipeline, and
``run_pipeline`` in memory give the same table for the same data and seeds."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from recipe_builder import write_recipe

from mdwarf_zoo.cli import main
from mdwarf_zoo.hub import from_pretrained
from mdwarf_zoo.pipeline import run_pipeline
from mdwarf_zoo.pipeline.pretrained import load_pipeline
from mdwarf_zoo.spectra.datasets import read_set

PARAMETERS = ("teff", "logg")


def _assert_same(table: Table, other: Table, what: str) -> None:
    assert table.colnames == other.colnames, what
    assert list(table["id"]) == list(other["id"]), what
    for column in table.colnames[1:]:
        assert np.array_equal(np.asarray(table[column]), np.asarray(other[column])), (what, column)


@pytest.mark.parametrize("with_transfer", [False, True], ids=["no_transfer", "transfer"])
def test_runner_pipeline_folder_and_run_pipeline_give_one_table(tmp_path, with_transfer):
    recipe = write_recipe(
        tmp_path,
        {
            "autoencoders": {"members": 1},
            "transfer": {"enabled": with_transfer},
            "regressors": {"seeds": 3},
            "ensemble": {"best": 2, "error_model": "spread+validation"},
        },
    )
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run)]) == 0
    runner = Table.read(run / "predictions.ecsv")
    observed = read_set(run / "data" / "observed.h5")
    synthetic = read_set(run / "data" / "synthetic.h5")

    pipeline = load_pipeline(run)
    folder = pipeline.predict(observed.flux, observed.identifiers, progress=False)
    _assert_same(runner, folder, "run folder as a pipeline")

    # run_pipeline with the recipe's settings: member 0 has seed 5 (the recipe's), its transfer
    # the seed 5 + 100000, and its regressor k of parameter p the seed 5000 + 100 (p + 1) + k.
    member = pipeline.members[0]
    result = run_pipeline(
        {member["name"]: from_pretrained(run / member["autoencoder"])},
        synthetic.flux,
        synthetic.labels[:, :2],
        observed.flux,
        observed_encoder="fine_tuned" if with_transfer else "original",
        transfer_options={
            "epochs": 2,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "validation_split": 0.2,
            "seed": 100_005,
        },
        parameters=PARAMETERS,
        seeds={p: [5000 + 100 * (i + 1) + k for k in range(3)] for i, p in enumerate(PARAMETERS)},
        keep=2,
        identifiers=observed.identifiers,
        error_model="spread+validation",
        epochs=2,
        batch_size=16,
        validation_fraction=0.3,
        regressor_kwargs={
            p: {"nf1": 4, "nf2": 4, "nu": 8, "learning_rate": 1e-3} for p in PARAMETERS
        },
        progress=False,
    )
    _assert_same(runner, result.table, "run_pipeline")
