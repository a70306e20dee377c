"""``mdwarf-zoo build-set``: a training set (HDF5) from a local PHOENIX HiRes grid."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that define a Preprocessor (shared by build-set and prepare-observed)."""
    group = parser.add_argument_group("preprocessing")
    group.add_argument("--preprocessing", metavar="JSON", default=None,
                       help="a Preprocessor JSON file (e.g. from a trained model); overrides "
                       "the options below")
    group.add_argument("--window", nargs=3, type=float, metavar=("START", "STOP", "STEP"),
                       default=(8800.0, 8835.0, 0.01),
                       help="wavelength grid, Angstrom, vacuum (default: MB24 8800 8835 0.01)")
    group.add_argument("--margin", type=float, default=5.0,
                       help="Angstrom on each side used for broadening and the continuum "
                       "(default 5)")
    group.add_argument("--resolving-power", type=float, default=94600.0,
                       help="bring spectra to this R (default 94600, CARMENES VIS); 0 to skip")
    group.add_argument("--normalisation", choices=("gisic", "none"), default="gisic")
    group.add_argument("--scaling", choices=("clip", "max", "minmax", "none"), default="clip")
    group.add_argument("--fill-gaps", action="store_true",
                       help="interpolate across holes inside the window (with a warning) "
                       "instead of refusing the spectrum")


def preprocessor_from_args(args: argparse.Namespace):
    """The Preprocessor the options describe."""
    from pathlib import Path

    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.preprocess import Preprocessor

    if args.preprocessing:
        path = Path(args.preprocessing)
        if not path.is_file():
            raise FileNotFoundError(f"--preprocessing file {path} does not exist")
        return Preprocessor.from_json(path.read_text())
    return Preprocessor(
        grid=WavelengthGrid(*args.window),
        margin=args.margin,
        resolving_power=args.resolving_power or None,
        normalisation=args.normalisation,
        scaling=args.scaling,
        fill_gaps=args.fill_gaps,
    )


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "build-set",
        run,
        help="build an HDF5 training set from a PHOENIX grid and a label table",
        description="Interpolate a local PHOENIX-ACES HiRes grid to every label (Teff, log g, "
        "[M/H], v sin i) of a table, broaden, normalise and resample each spectrum onto the "
        "window, and write them to an HDF5 set. Uses every core, shows progress, and resumes "
        "an interrupted build when run again with the same arguments.",
    )
    parser.add_argument("--phoenix", required=True, metavar="DIR",
                        help="folder with the HiRes files and the WAVE file")
    parser.add_argument("--labels", required=True, metavar="FILE",
                        help=".npy (n x 4: Teff, logg, [M/H], vsini), .csv or .ecsv")
    parser.add_argument("--out", required=True, metavar="SET.h5")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N labels only")
    parser.add_argument("--download", action="store_true",
                        help="first download the grid points the labels need into --phoenix")
    parser.add_argument("--base-url", default=None,
                        help="HiResFITS/ URL for --download (default: the Goettingen server)")
    parser.add_argument("--no-progress", action="store_true")
    add_preprocessing_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mdwarf_zoo.spectra.datasets import build_training_set, load_labels
    from mdwarf_zoo.spectra.phoenix import DEFAULT_BASE_URL, download_grid

    preprocessor = preprocessor_from_args(args)
    if args.download:
        labels = load_labels(args.labels)[: args.limit]
        paths = download_grid(labels, args.phoenix, args.base_url or DEFAULT_BASE_URL,
                              progress=not args.no_progress)
        print(f"{len(paths)} PHOENIX files present in {args.phoenix}")
    out = build_training_set(args.phoenix, args.labels, args.out, preprocessor=preprocessor,
                             workers=args.workers, progress=not args.no_progress,
                             limit=args.limit)
    print(f"wrote {out}")
    return 0
