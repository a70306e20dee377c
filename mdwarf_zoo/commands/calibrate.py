"""``mdwarf-zoo calibrate``: learn a correction from stars with known parameters."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "calibrate",
        run,
        help="learn a correction of the estimates from stars with known parameters",
        description="Learn, per parameter, a low-capacity correction (none, an offset, or a "
        "ridge-regularised linear map of the estimates, chosen by leave-one-out "
        "cross-validation) from an estimate table of `mdwarf-zoo predict` and a table of the "
        "known parameters of some of its stars (benchmark stars: interferometry, binaries). "
        "The saved calibration is applied with `mdwarf-zoo predict --calibration FILE`.",
    )
    parser.add_argument(
        "--estimates",
        required=True,
        metavar="TABLE",
        help="estimate table written by `mdwarf-zoo predict` (.ecsv, .fits or .csv)",
    )
    parser.add_argument(
        "--labels",
        required=True,
        metavar="TABLE",
        help="known parameters: a CSV/ECSV/FITS table with the id column and any of the "
        "columns teff, logg, mh, vsini (K, dex, dex, km/s)",
    )
    parser.add_argument(
        "--out", required=True, metavar="JSON", help="the calibration file; never overwritten"
    )
    parser.add_argument(
        "--id-column",
        default="id",
        metavar="NAME",
        help="column of --labels that names the stars as the estimates' id column does "
        "(default id)",
    )
    parser.add_argument(
        "--parameters",
        nargs="+",
        default=None,
        metavar="P",
        help="parameters to calibrate (default: every one with labels)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.pipeline.calibration import calibrate, load_labels_table

    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"--out {out} exists; it is never overwritten")
    estimates = load_labels_table(args.estimates, what="--estimates table")
    labels = load_labels_table(args.labels, what="--labels table")
    if args.id_column not in labels.colnames:
        raise ValueError(
            f"--labels {args.labels} has no column {args.id_column!r} (columns "
            f"{labels.colnames}); expected the column that names the stars as the estimates do "
            "(give its name with --id-column)"
        )
    try:
        calibration = calibrate(estimates, None, labels, parameters=args.parameters,
                                id_column=args.id_column)
    except ValueError as error:
        raise ValueError(f"--estimates {args.estimates}, --labels {args.labels}: {error}") from None
    calibration.save(out)
    print(calibration)
    print(f"wrote {out}")
    return 0
