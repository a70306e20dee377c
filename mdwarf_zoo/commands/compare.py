"""``mdwarf-zoo compare RECIPE --out DIR``: train every architecture of a recipe on the same
data, splits and seeds, and tabulate them (resumable)."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command, add_recipe_arguments


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "compare",
        run,
        help="compare the architectures of a recipe on the same data (table and figure)",
        description="Train every grid point of a recipe's [autoencoders.grid] (a path, or a "
        "shipped recipe: compare_quick, compare_full) as its own run folder inside DIR, on the "
        "same synthetic and observed sets with the same split and seed, plus the [compare] "
        "baselines (no_transfer, spectrum_cnn); write comparison.csv, comparison.md and "
        "comparison.png. Re-running the same command resumes; a folder that is not this "
        "recipe's comparison is refused, never overwritten.",
    )
    add_recipe_arguments(parser, "compare folder (default: runs/<recipe>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.recipes import load_recipe
    from mdwarf_zoo.recipes.compare import compare

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    print(f"recipe {recipe.name!r} (sha256 {recipe.sha256[:12]}...), compare folder {out}")
    result = compare(recipe, out, progress=not args.no_progress)
    print(f"finished in {result.seconds:.0f} s; {len(result.rows)} rows")
    print(f"  table:  {result.csv}")
    print(f"  report: {result.markdown}")
    if result.figure is not None:
        print(f"  figure: {result.figure}")
    return 0
