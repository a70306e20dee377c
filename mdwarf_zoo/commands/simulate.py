"""``mdwarf-zoo simulate``: simulated spectra as PHOENIX-layout, CARACAL-layout or HDF5 files.

The simulator (:mod:`mdwarf_zoo.spectra.simulate`) is a tool for tests, demos and method
studies, not a replacement for PHOENIX.
"""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command

# Wavelength range written to PHOENIX-layout and CARACAL-layout files: the MB24 window plus
# 20 A on each side (covers the 5 A preprocessing margin, broadening and RV shifts).
_FILE_RANGE = (8780.0, 8855.0, 0.01)


def _knob(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--gap takes KNOB=VALUE, got {text!r}")
    try:
        return name.strip().replace("-", "_"), float(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--gap {name}: {value!r} is not a number") from error


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "simulate",
        run,
        help="write simulated synthetic or observed-domain spectra (PHOENIX, CARACAL or HDF5)",
        description="Simulate M-dwarf spectra for a label table with the project's toy "
        "simulator (for tests, demos and method studies; not a replacement for PHOENIX). "
        "--format phoenix writes the synthetic domain at the native PHOENIX-ACES grid points "
        "the labels need (Goettingen HiRes layout, erg/s/cm^2/cm, unbroadened), ready for "
        "build-set; --format caracal writes one CARACAL-layout FITS per label row; --format "
        "hdf5 writes one HDF5 set on the window. --observed applies the synthetic gap "
        "(observe(): line-list errors, damping, continuum, RV, tellurics, resolution, noise, "
        "bad pixels, cosmic rays).",
    )
    parser.add_argument(
        "--labels",
        required=True,
        metavar="FILE",
        help=".npy (n x 4: Teff, logg, [M/H], vsini), .csv or .ecsv",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", required=True, choices=("phoenix", "caracal", "hdf5"))
    parser.add_argument(
        "--observed",
        action="store_true",
        help="the observed domain (caracal, hdf5) instead of the synthetic one",
    )
    parser.add_argument(
        "--snr",
        type=float,
        default=150.0,
        help="signal-to-noise ratio with --observed (default 150; 0: no noise)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the per-spectrum randomness of --observed (default 0)",
    )
    parser.add_argument(
        "--line-list-seed",
        type=int,
        default=0,
        help="seed of the simulator's pseudo-random line forests (default 0)",
    )
    parser.add_argument(
        "--gap",
        type=_knob,
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a gap knob of --observed, e.g. --gap damping_scale=2 "
        "(repeatable; see GapConfig)",
    )
    parser.add_argument(
        "--resolving-power",
        type=float,
        default=94600.0,
        help="instrumental R of caracal/hdf5 output (default 94600; 0: none)",
    )
    parser.add_argument(
        "--window",
        nargs=3,
        type=float,
        metavar=("START", "STOP", "STEP"),
        default=(8800.0, 8835.0, 0.01),
        help="grid of hdf5 output, Angstrom (default MB24: 8800 8835 0.01)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N labels only")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.spectra.datasets import load_labels

    labels = load_labels(args.labels)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        labels = labels[: args.limit]
    if args.observed and args.format == "phoenix":
        raise ValueError(
            "--observed cannot be written as --format phoenix (PHOENIX files are the synthetic "
            "domain); use --format caracal or hdf5"
        )
    if args.gap and not args.observed:
        raise ValueError("--gap only applies with --observed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writers = {"phoenix": _write_phoenix, "caracal": _write_caracal, "hdf5": _write_hdf5}
    written = writers[args.format](labels, out, args)
    domain = "observed" if args.observed else "synthetic"
    print(f"wrote {written} {domain}-domain file(s) ({args.format} layout) to {out}")
    return 0


def _spectra(labels, grid, args, resolving_power):
    """Synthetic spectra, and the observed ones with --observed."""
    from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra

    progress = not args.no_progress
    flux = synthetic_spectra(
        labels,
        grid,
        seed=args.line_list_seed,
        resolving_power=resolving_power,
        workers=args.workers,
        progress=progress,
    )
    if not args.observed:
        return flux, None
    snr = args.snr if args.snr > 0 else None
    observed = observe(
        flux,
        labels,
        snr=snr,
        seed=args.seed,
        grid=grid,
        resolving_power=resolving_power,
        synthetic_seed=args.line_list_seed,
        workers=args.workers,
        progress=progress,
        **dict(args.gap),
    )
    return observed, snr


def _write_phoenix(labels, out, args) -> int:
    import numpy as np

    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.phoenix import (
        required_points,
        write_phoenix_spectrum,
        write_phoenix_wavelength,
    )
    from mdwarf_zoo.spectra.simulate import phoenix_flux

    grid = WavelengthGrid(*_FILE_RANGE)
    points = required_points(labels)
    table = np.array([[p.teff, p.logg, p.metallicity, 0.0] for p in points], dtype=np.float64)
    flux = phoenix_flux(
        table, grid, seed=args.line_list_seed, workers=args.workers, progress=not args.no_progress
    )
    write_phoenix_wavelength(out, grid.wavelength, overwrite=args.overwrite)
    for point, row in zip(points, flux, strict=True):
        write_phoenix_spectrum(
            out,
            row,
            point.teff,
            point.logg,
            point.metallicity,
            point.alpha,
            overwrite=args.overwrite,
        )
    return len(points) + 1


def _write_caracal(labels, out, args) -> int:
    import datetime

    import numpy as np

    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.observed import write_caracal

    grid = WavelengthGrid(*_FILE_RANGE)
    resolving_power = args.resolving_power or None
    flux, snr = _spectra(labels, grid, args, resolving_power)
    wavelength = grid.wavelength
    # A smooth blaze-like continuum in counts, so SPEC is not already normalised.
    x = (wavelength - wavelength.mean()) / (wavelength[-1] - wavelength[0])
    continuum = 5000.0 * (1.0 - 1.5 * x**2)
    for i, (row, label) in enumerate(zip(flux, labels, strict=True)):
        stamp = datetime.datetime(2020, 1, 1) + datetime.timedelta(hours=i)
        name = stamp.strftime("car-%Y%m%dT%Hh%Mm%Ss-sci-gtoc-vis_A.fits")
        spec = row * continuum
        sigma = None if snr is None else np.sqrt(np.clip(row, 1e-6, None)) / snr * continuum
        header = {
            "OBJECT": f"SIM-{i:05d}",
            "DATE-OBS": stamp.isoformat(),
            "CARACAL BERV": 0.0,
            "CARACAL BJD": 2458849.5 + i / 24.0,
            "SIMTEFF": (float(label[0]), "[K] simulated Teff"),
            "SIMLOGG": (float(label[1]), "simulated log g"),
            "SIMM_H": (float(label[2]), "simulated [M/H]"),
            "SIMVSINI": (float(label[3]), "[km/s] simulated v sin i"),
            "SIMDOMN": ("observed" if args.observed else "synthetic", "simulated domain"),
            "SIMSEED": (args.seed, "seed of observe()"),
        }
        write_caracal(
            out / name,
            wavelength,
            spec,
            sigma=sigma,
            continuum=continuum,
            header=header,
            overwrite=args.overwrite,
        )
    return len(labels)


def _write_hdf5(labels, out, args) -> int:
    import json

    from mdwarf_zoo._version import __version__
    from mdwarf_zoo.spectra.datasets import SpectrumSet, write_set
    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.preprocess import Preprocessor
    from mdwarf_zoo.spectra.simulate import GapConfig

    grid = WavelengthGrid(*args.window)
    resolving_power = args.resolving_power or None
    flux, snr = _spectra(labels, grid, args, resolving_power)
    provenance = {
        "source": "mdwarf_zoo.spectra.simulate (toy simulator; not PHOENIX)",
        "version": __version__,
        "domain": "observed" if args.observed else "synthetic",
        "line_list_seed": args.line_list_seed,
        "labels_file": str(args.labels),
    }
    if args.observed:
        provenance.update(
            seed=args.seed,
            snr=snr,
            gap=json.loads(json.dumps(GapConfig(**dict(args.gap)).to_dict())),
        )
    preprocessing = Preprocessor(
        grid=grid, resolving_power=resolving_power, normalisation="none", scaling="none"
    )
    name = "observed.h5" if args.observed else "synthetic.h5"
    spectrum_set = SpectrumSet(
        flux=flux,
        wavelength=grid.wavelength,
        labels=labels,
        preprocessing=preprocessing,
        provenance=provenance,
        kind="observed" if args.observed else "training",
    )
    write_set(out / name, spectrum_set, overwrite=args.overwrite)
    return 1
