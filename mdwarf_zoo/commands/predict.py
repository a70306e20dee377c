"""``mdwarf-zoo predict``: stellar parameters of a user's spectra with a pretrained pipeline."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "predict",
        run,
        help="Teff, log g, [M/H], v sin i with errors for your own spectra",
        description="Estimate stellar parameters for spectrum files (CARACAL/SERVAL FITS, 1-D "
        "FITS, tables ... anything read_spectrum reads) or an HDF5 observed set, with a "
        "pretrained pipeline: a published weights entry (e.g. mb24_quickstart_demo), or a run "
        "folder of `mdwarf-zoo train`. With --transfer, the autoencoders are first fine-tuned "
        "on the given spectra (deep transfer learning, the pipeline's own settings).",
    )
    parser.add_argument(
        "spectra",
        nargs="+",
        metavar="SPECTRA",
        help="spectrum files, or one HDF5 set written by prepare-observed",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_DIR",
        help="weights entry name or pipeline folder (a run folder)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="TABLE",
        help="output table (.ecsv, .fits or .csv); never overwritten",
    )
    parser.add_argument(
        "--transfer", action="store_true", help="fine-tune the autoencoders on these spectra first"
    )
    parser.add_argument(
        "--template",
        default=None,
        metavar="FITS",
        help="radial-velocity template (a PHOENIX HiRes file or any spectrum read_spectrum "
        "reads); default: the one that travels with the pipeline",
    )
    parser.add_argument(
        "--no-rv",
        action="store_true",
        help="the spectra are already in the rest frame: no radial-velocity correction",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --transfer (default 0)")
    parser.add_argument(
        "--error-model",
        choices=("spread", "spread+validation", "spread+validation+gap"),
        default=None,
        help="errors from the spread of the ensemble (MB24); that spread and the regressors' "
        "validation rms added in quadrature; or both and a domain-gap scale per parameter "
        "(the pipeline's ensemble.gap, else a prior measured on CARMENES stars). Default: the "
        "pipeline's own; spread+validation+gap for a pipeline that names none",
    )
    parser.add_argument(
        "--latent-alignment",
        choices=("none", "coral", "coral_neighbours"),
        default=None,
        help="map the spectra's latents onto the synthetic ones before the regressors (not "
        "MB24; coral/coral_neighbours need a pipeline trained with an alignment, and at least "
        "twice the latent size of spectra in one call); default: the pipeline's",
    )
    parser.add_argument(
        "--alignment-resamples",
        type=int,
        default=None,
        metavar="N",
        help="with an alignment: bootstrap draws of it whose per-star spread is added to the "
        "errors (0: not added; default: the pipeline's, else 30)",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        metavar="JSON",
        help="apply a calibration learnt from stars with known parameters (written by "
        "`mdwarf-zoo calibrate` or Calibration.save): corrected values, its uncertainty added "
        "to the errors",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mdwarf_zoo.pipeline.pretrained import load_pipeline

    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"--out {out} exists; it is never overwritten")
    calibration = None
    if args.calibration:
        from mdwarf_zoo.pipeline.calibration import Calibration

        try:
            calibration = Calibration.load(args.calibration)
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(f"--calibration: {error}") from None
    pipeline = load_pipeline(args.model)
    alignment = args.latent_alignment or pipeline.latent_alignment or "none"
    print(
        f"pipeline {args.model}: {len(pipeline.members)} autoencoder(s), parameters "
        f"{', '.join(pipeline.parameters)}, latent alignment {alignment}"
    )
    if args.no_rv and args.template:
        raise ValueError("give --template or --no-rv, not both")
    velocities: list[dict] = []
    flux, identifiers = pipeline.read_spectra(
        args.spectra,
        template=args.template,
        rv=not args.no_rv,
        progress=not args.no_progress,
        velocities=velocities,
    )
    table = pipeline.predict(
        flux,
        identifiers,
        transfer=args.transfer,
        seed=args.seed,
        progress=not args.no_progress,
        error_model=args.error_model or "default",
        latent_alignment=args.latent_alignment or "default",
        alignment_resamples=args.alignment_resamples,
    )
    from mdwarf_zoo.pipeline.ensemble import describe_errors, write_table

    add_velocity_columns(table, velocities)
    table.meta["rv_template"] = (
        "none (--no-rv)" if args.no_rv else str(args.template or "the pipeline's rv_template")
    )
    flagged = [n for n, f in zip(table["id"], table["rv_flag"], strict=True) if f != "ok"]
    if flagged and not args.no_rv:
        print(f"radial velocity flagged for {len(flagged)} star(s): {', '.join(map(str, flagged))}"
              " (column rv_flag); check them before use")
    if calibration is not None:
        table = calibration.apply(table)
        print(f"calibrated with {args.calibration}: {calibration.n_stars} stars, "
              + ", ".join(f"{p} {c.kind}" for p, c in calibration.corrections.items()))
    write_table(table, out)
    print(f"errors: {describe_errors(table)}")
    print(f"wrote {out} ({len(table)} spectra)")
    return 0


def add_velocity_columns(table, velocities: list[dict]) -> None:
    """Add each star's ``rv``, ``rv_error``, ``berv``, ``barycentric_rv`` (km/s), the peak
    quality and ``rv_flag`` to a predictions table (NaN where not measured)."""
    import astropy.units as u
    import numpy as np

    numeric = {"rv": u.km / u.s, "rv_error": u.km / u.s, "berv": u.km / u.s,
               "barycentric_rv": u.km / u.s, "rv_peak": None, "rv_second_peak_ratio": None}
    for name, unit in numeric.items():
        values = [r.get(name) for r in velocities] or [None] * len(table)
        column = np.array([np.nan if v is None else float(v) for v in values])
        table[name] = column * unit if unit is not None else column
    table["rv_orders_agreeing"] = [int(r.get("rv_orders_agreeing") or 0) for r in velocities]
    table["berv_source"] = [str(r.get("berv_source") or "none") for r in velocities]
    table["rv_flag"] = [str(r.get("rv_flag") or "not measured") for r in velocities]
