"""The sets stage with real file layouts: a PHOENIX-layout grid folder plus a label table for
the synthetic side, CARACAL-layout FITS files (by glob) for the observed side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from recipe_builder import write_recipe

from mdwarf_zoo.cli import main
from mdwarf_zoo.recipes import load_recipe
from mdwarf_zoo.recipes.run import Run
from mdwarf_zoo.spectra.datasets import read_set

# The tiny recipe reading a PHOENIX-layout grid and CARACAL files, defaults elsewhere.
FILES = {
    "recipe": {"name": "files", "seed": None},
    "data.synthetic": {"source": "phoenix", "n": None, "grid": "phoenix", "labels": "labels.npy"},
    "data.synthetic.label_ranges": None,
    "data.observed": {"source": "files", "n": None, "files": ["caracal/*.fits"], "no_rv": True},
    "preprocessing": {"normalisation": None},
    "autoencoders": {"members": None, "epochs": 1, "batch_size": None, "learning_rate": None},
    "autoencoders.grid": {"widths": None, "activation": None},
    "transfer": None,
    "regressors": {
        "parameters": ["teff"],
        "seeds": 1,
        "epochs": 1,
        "learning_rate": None,
        "batch_size": None,
    },
    "regressors.overrides": None,
    "ensemble": None,
    "outputs": None,
}


def test_sets_from_phoenix_grid_and_caracal_files(tmp_path: Path):
    labels = np.array([[3020.0, 5.0, 0.0, 2.0], [3080.0, 4.9, 0.1, 4.0]])
    np.save(tmp_path / "labels.npy", labels)
    for fmt, extra in (("phoenix", []), ("caracal", ["--observed"])):
        assert (
            main(
                [
                    "simulate",
                    "--labels",
                    str(tmp_path / "labels.npy"),
                    "--out",
                    str(tmp_path / fmt),
                    "--format",
                    fmt,
                    "--no-progress",
                    *extra,
                ]
            )
            == 0
        )
    recipe = load_recipe(write_recipe(tmp_path, FILES, name="recipe.toml"))
    assert len(recipe.observed.files) == 2
    run = Run(recipe, tmp_path / "run", progress=False)
    run.run(stage="sets")
    synthetic = read_set(tmp_path / "run" / "data" / "synthetic.h5")
    observed = read_set(tmp_path / "run" / "data" / "observed.h5")
    assert synthetic.flux.shape == (2, 501) and np.allclose(synthetic.labels, labels)
    assert observed.flux.shape == (2, 501) and observed.identifiers == ["SIM-00000", "SIM-00001"]
    assert np.all((observed.flux >= 0) & (observed.flux <= 1))
    # The pretrain stage of a member needs the sets only; the ensemble refuses until members end.
    assert (
        main(
            [
                "train",
                str(tmp_path / "recipe.toml"),
                "--out",
                str(tmp_path / "run"),
                "--stage",
                "ensemble",
            ]
        )
        == 1
    )
