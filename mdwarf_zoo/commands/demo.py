"""``mdwarf-zoo demo``: the quickstart recipe, offline, end to end."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo",
        run,
        help="run the quickstart recipe offline (simulated spectra) and show the results",
        description="Run the whole reference pipeline (autoencoders on synthetic spectra, "
        "transfer learning on observed spectra, latent CNN regressors, best-K ensemble with "
        "KDE errors) on the project's simulator, offline, in a few minutes on a laptop, and "
        "print where the predictions table, the plots and the report are. The simulated "
        "observed spectra have known labels, so the report gives the accuracy with and "
        "without transfer learning. Re-running resumes.",
    )
    parser.add_argument(
        "--out",
        default="mdwarf_zoo_demo",
        metavar="DIR",
        help="run folder (default: ./mdwarf_zoo_demo)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mdwarf_zoo.commands.train import print_result
    from mdwarf_zoo.recipes import load_recipe
    from mdwarf_zoo.recipes.run import Run

    recipe = load_recipe("quickstart")
    print(f"mdwarf-zoo demo: recipe 'quickstart' (simulated spectra; offline) into {args.out}")
    result = Run(recipe, Path(args.out), progress=not args.no_progress).run()
    print_result(result)
    diagnostics = json.loads(Path(result.diagnostics).read_text(encoding="utf-8"))
    accuracy = diagnostics.get("accuracy")
    if accuracy:
        print("accuracy on the simulated observed spectra (ensemble value minus truth):")
        for name, with_transfer in accuracy["transfer"].items():
            without = accuracy["no_transfer"][name]
            print(
                f"  {name:6s} with transfer: bias {with_transfer['bias']:+.3g}, rms "
                f"{with_transfer['rms']:.3g}, inside -/+ errors "
                f"{100 * with_transfer['coverage_1sigma']:.0f}%;  without transfer: rms "
                f"{without['rms']:.3g}"
            )
    return 0
