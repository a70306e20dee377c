"""``mdwarf-zoo train RECIPE``: run a training recipe into a run folder (resumable)."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command, add_recipe_arguments
from mdwarf_zoo.recipes import STAGES


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "train",
        run,
        help="run a training recipe (sets, autoencoders, transfer, regressors, ensemble, report)",
        description="Run a TOML training recipe (a path, or the name of a shipped recipe: "
        "quickstart, mb24_reference, compare_quick, compare_full) into a run folder. The recipe "
        "is validated before anything runs. Re-running the same command resumes: finished "
        "stages and members are skipped and a model interrupted mid-training continues from "
        "its last epoch to the same final weights. A folder that belongs to another recipe is "
        "refused, never overwritten.",
    )
    add_recipe_arguments(parser, "run folder (default: runs/<recipe name>)")
    parser.add_argument(
        "--stage",
        choices=STAGES,
        default=None,
        help="run only this stage (its inputs must be finished); default: all",
    )
    parser.add_argument(
        "--member",
        type=int,
        default=None,
        metavar="I",
        help="run the member stages of ensemble member I only (one job of a "
        "batch array; gather with --stage ensemble)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.recipes import load_recipe
    from mdwarf_zoo.recipes.cluster import join_cluster
    from mdwarf_zoo.recipes.run import Run

    # strategy "multi_worker" joins its cluster before TensorFlow's first op, which validating
    # the recipe's models would run: read the recipe, join, then validate fully.
    join_cluster(load_recipe(args.recipe, check_models=False))
    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    print(f"recipe {recipe.name!r} (sha256 {recipe.sha256[:12]}...), run folder {out}")
    result = Run(recipe, out, progress=not args.no_progress).run(args.stage, args.member)
    print_result(result)
    return 0


def print_result(result) -> None:
    """Print where the outputs of a run are."""
    print(f"finished in {result.seconds:.0f} s; run folder: {result.folder}")
    if result.table is not None:
        print(f"  predictions: {result.table}")
    if result.report is not None:
        print(f"  report:      {result.report}")
    if result.diagnostics is not None:
        print(f"  diagnostics: {result.diagnostics}")
    for plot in result.plots or []:
        print(f"  plot:        {plot}")
