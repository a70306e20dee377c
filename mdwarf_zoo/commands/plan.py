"""``mdwarf-zoo plan RECIPE``: the ensemble members of a recipe and what each needs."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command, add_recipe_arguments


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "plan",
        run,
        help="list a recipe's ensemble members and the work each needs",
        description="Validate a recipe and print its members (one autoencoder and its "
        "regressors each): architecture, constructor arguments, seed, parameters and the work "
        "of each stage; with --out, also what the run folder already holds. Each member can "
        "run as its own job: `mdwarf-zoo train RECIPE --out DIR --member I`, after `--stage "
        "sets` and before `--stage ensemble` and `--stage report`.",
    )
    add_recipe_arguments(parser, "an existing run folder")
    parser.add_argument(
        "--no-check-files",
        action="store_true",
        help="do not require the recipe's data files to exist",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.recipes import load_recipe
    from mdwarf_zoo.recipes.cluster import plan

    # plan() builds every grid point itself, so the recipe check does not build them twice.
    recipe = load_recipe(args.recipe, check_files=not args.no_check_files, check_models=False)
    rows = plan(recipe, Path(args.out) if args.out else None)
    print(
        f"recipe {recipe.name!r} (sha256 {recipe.sha256[:12]}...): {len(rows)} members, "
        f"strategy {recipe.strategy!r}"
    )
    for row in rows:
        overrides = ", ".join(f"{k}={v}" for k, v in row["overrides"].items())
        done = f"  [done: {row['done']}]" if row["done"] else ""
        print(
            f"  member {row['member']:3d}: {row['architecture']} ({overrides}), seed "
            f"{row['seed']}, {row['parameters']:,} parameters; pretrain {row['pretrain']}; "
            f"transfer {row['transfer']}; regressors {row['regressors']}{done}"
        )
    print(
        "jobs: `mdwarf-zoo train RECIPE --out DIR --stage sets`, then one `--member I` per "
        "member (any order, any machine sharing DIR), then `--stage ensemble` and "
        "`--stage report`"
    )
    return 0
