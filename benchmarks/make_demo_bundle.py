"""Rebuild the bundled demo pipeline ``mb24_quickstart_demo`` from a quickstart run.

The bundle is member 0 of ``mdwarf-zoo train quickstart`` (the autoencoder, its fine-tuned
copy and the latent CNNs the ensemble selected), exported with ``export_pipeline``, given a
radial-velocity template from the simulator (``write_rv_template``), given its own gap and
coverage factor (measured on the recipe's twins through the bundle: the run's describe the
run's whole ensemble), and recorded as the
weights entry ``weights_cards/mb24_quickstart_demo``. Run it whenever the simulator changes,
since the bundle is only meaningful on spectra of the simulator it was trained on:

    mdwarf-zoo train quickstart --out /tmp/q
    python benchmarks/make_demo_bundle.py /tmp/q

The old bundle and entry are replaced (the script refuses unless ``--replace`` is given when
they exist); the model card keeps the old one's licence, description and limitations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "mb24_quickstart_demo"
BUNDLE = ROOT / "mdwarf_zoo" / "data" / "weights" / NAME
CARDS = ROOT / "weights_cards"

CARD = {
    "license": "bsd-3-clause",
    "description": (
        "Demo pipeline of the mdwarf-zoo quickstart recipe: a small MB24-shaped dense "
        "autoencoder (member 0 of the run; the folder's own model), its copy fine-tuned on "
        "simulated observed spectra, and the latent CNN regressors the ensemble selected. "
        "Trained on simulated spectra for tutorials and tests, not for science."
    ),
    "intended_use": (
        "Tutorials, the offline `mdwarf-zoo demo`/`predict` examples and the test suite. "
        "Trained on simulated spectra for tutorials and tests, not for science."
    ),
    "limitations": (
        "Trained only on spectra from the project's simulator (mdwarf_zoo.spectra.simulate, "
        "whose line list is fitted to PHOENIX-ACES at 2300-2800 K but which is not a model "
        "atmosphere), not on PHOENIX-ACES models and not on real stars: its parameters for real "
        "spectra are not to be trusted. It is small and briefly trained; see the accuracy on "
        "the simulated observed domain in the recipes documentation. Not for science."
    ),
    "training": "mdwarf-zoo train quickstart (recipe training_recipes/quickstart.toml), member 0",
    "tags": ["demo", "simulated-spectra", "not-for-science"],
    "model_name": NAME,
}
ENTRY_DESCRIPTION = ("Demo pipeline (autoencoder + fine-tuned copy + latent CNNs) of the "
                     "quickstart recipe; simulated spectra, for tutorials and tests, not for "
                     "science")


def measure_errors(run_folder: Path, staged: Path) -> None:
    """The bundle's own gap and coverage factor, measured as the recipe's ensemble stage
    measures them (same twins, seeds and simulator) but through the bundle's one-member
    ensemble: the run's numbers describe its whole ensemble, so the export dropped them."""
    from mdwarf_zoo.pipeline.pretrained import PIPELINE_FILE, load_pipeline
    from mdwarf_zoo.recipes import load_recipe, sets
    from mdwarf_zoo.recipes.run import Run

    run = Run(load_recipe(run_folder / "recipe.toml"), run_folder, progress=False)
    pipeline = load_pipeline(staged)
    gap, scale = sets.measure_simulated_errors(
        run, pipeline, run.read(run.synthetic_path).labels
    )
    twins = (f"{sets.GAP_TWINS} held-out simulated stars and their observed twins (calibrated "
             "GapConfig) through this bundle")
    manifest = json.loads((staged / PIPELINE_FILE).read_text())
    manifest["ensemble"].update({
        "gap": gap,
        "gap_source": f"measured on the simulator: {twins}, sqrt(mse observed - mse synthetic)",
        "error_scale": scale,
        "error_scale_source": f"measured on the simulator: {twins}, the 68.27 % quantile of "
                              "|estimate - true| / error (spread+validation+gap with that gap) "
                              f"in {run.recipe.ensemble.error_scale_bins} bins of the estimate "
                              "at most (coverage_profile)",
    })
    manifest["exported_from"]["dropped"] += "; measured again on this bundle"
    (staged / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    print("bundle gap " + ", ".join(f"{k} {v:.3g}" for k, v in gap.items())
          + "; error scale " + "; ".join(f"{k} {v}" for k, v in scale.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished quickstart run folder")
    parser.add_argument("--replace", action="store_true",
                        help="replace the existing bundle and weights entry")
    args = parser.parse_args()

    from mdwarf_zoo.hub import write_entry
    from mdwarf_zoo.pipeline.pretrained import export_pipeline, load_pipeline, write_rv_template

    recipe = json.loads((args.run / "pipeline.json").read_text())["recipe"]["name"]
    if recipe != "quickstart":
        raise SystemExit(f"{args.run}: a run of recipe {recipe!r}, expected 'quickstart'")
    if (BUNDLE.exists() or (CARDS / NAME).exists()) and not args.replace:
        raise SystemExit(f"{BUNDLE} or {CARDS / NAME} exists; pass --replace to rebuild them")
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / NAME
        export_pipeline(args.run, staged, members=[0], metadata=CARD)
        write_rv_template(staged)
        measure_errors(args.run, staged)
        load_pipeline(staged)  # verifies every checksum
        cards = Path(scratch) / "cards"
        write_entry(NAME, staged, description=ENTRY_DESCRIPTION, license=CARD["license"],
                    cards_root=cards, bundled=NAME, paper="arXiv:2405.08703")
        if BUNDLE.exists():
            shutil.rmtree(BUNDLE)
        if (CARDS / NAME).exists():
            shutil.rmtree(CARDS / NAME)
        shutil.copytree(staged, BUNDLE)
        shutil.copytree(cards / NAME, CARDS / NAME)
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    print(f"rebuilt {BUNDLE.relative_to(ROOT)} ({size / 1e6:.1f} MB) and "
          f"{(CARDS / NAME).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
