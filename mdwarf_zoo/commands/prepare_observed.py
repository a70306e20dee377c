"""``mdwarf-zoo prepare-observed``: observed spectra through the same Preprocessor, to HDF5."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command
from mdwarf_zoo.commands.build_set import add_preprocessing_arguments, preprocessor_from_args


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "prepare-observed",
        run,
        help="read observed spectra, correct their velocity, preprocess, write an HDF5 set",
        description="Read observed FITS spectra (CARACAL, SERVAL, merged tables, 1-D, echelle "
        "with named extensions), shift each to the rest frame of a template by "
        "cross-correlation (all orders near the window, then the window itself; --no-rv when "
        "the spectra are already in the rest frame), apply the preprocessing, and write an "
        "observed set (HDF5) whose provenance records each star's rv, berv, barycentric_rv "
        "and rv_flag.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--out", required=True, metavar="OBS.h5")
    parser.add_argument("--template", default=None, metavar="FITS",
                        help="template for the radial velocity (a PHOENIX HiRes file or any "
                        "spectrum read_spectrum reads); required unless --no-rv")
    parser.add_argument("--no-rv", action="store_true",
                        help="the spectra are already in the rest frame: no correction")
    parser.add_argument("--rv-range", nargs=3, type=float, default=(-300.0, 300.0, 0.25),
                        metavar=("MIN", "MAX", "STEP"), help="trial velocities, km/s")
    reader = parser.add_argument_group("reading")
    reader.add_argument("--flux-ext", default=None)
    reader.add_argument("--wave-ext", default=None)
    reader.add_argument("--variance-ext", default=None)
    reader.add_argument("--wave-file", default=None)
    reader.add_argument("--order", type=int, default=None)
    reader.add_argument("--medium", choices=("vacuum", "air"), default=None)
    add_preprocessing_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mdwarf_zoo._version import __version__
    from mdwarf_zoo.pipeline.pretrained import RV_REACH, read_template, rest_frame
    from mdwarf_zoo.spectra.datasets import SpectrumSet, write_set
    from mdwarf_zoo.spectra.observed import read_spectrum
    from mdwarf_zoo.spectra.rv import star_name, to_rest_frame

    if args.no_rv == bool(args.template):
        raise ValueError(
            "prepare-observed needs --template FITS (a radial-velocity template, e.g. a PHOENIX "
            "model near your stars) to move the spectra to the rest frame, or --no-rv if they "
            "are already in it (one of the two, not both)"
        )
    preprocessor = preprocessor_from_args(args)
    low, high = preprocessor.span
    rv_min, rv_max, rv_step = args.rv_range
    template = None
    if args.template:
        template = read_template(args.template, (low - RV_REACH[0], high + RV_REACH[1]),
                                 max(abs(rv_min), abs(rv_max)))
    fluxes, sigmas, names, records = [], [], [], []
    for path in args.files:
        read_options = {"flux_ext": args.flux_ext, "wave_ext": args.wave_ext,
                        "variance_ext": args.variance_ext, "wave_file": args.wave_file,
                        "medium": args.medium}
        spectrum = read_spectrum(path, window=None if args.order is not None else (low, high),
                                 order=args.order, **read_options)
        record = {"file": str(path), "orders": spectrum.metadata.get("orders")}
        if template is not None:
            if args.order is not None:
                # One order chosen by the user: it is all there is to correlate.
                spectrum, velocity = to_rest_frame(
                    spectrum, template, rv_min=rv_min, rv_max=rv_max, rv_step=rv_step,
                    refine_window=(preprocessor.grid.start, preprocessor.grid.stop),
                )
            else:
                spectrum, velocity = rest_frame(path, spectrum, template, preprocessor,
                                                (rv_min, rv_max), read_options, rv_step)
            record.update(velocity.record())
            bary = ("" if velocity.barycentric_rv is None
                    else f", barycentric {velocity.barycentric_rv:+.3f} km/s")
            print(f"{path}: RV {velocity.rv:+.3f} +/- {velocity.uncertainty:.3f} km/s{bary} "
                  f"[{velocity.flag}]")
        else:
            record["rv_flag"] = "not measured (--no-rv: rest frame assumed)"
        try:
            prepared = preprocessor(spectrum)
        except ValueError as error:
            raise ValueError(f"star {star_name(spectrum)}: {error}") from None
        fluxes.append(prepared.flux)
        sigmas.append(prepared.sigma)
        names.append(str(spectrum.metadata.get("object") or path))
        records.append(record)
    sigma = None
    if all(s is not None for s in sigmas):
        sigma = np.stack(sigmas)
    observed = SpectrumSet(
        flux=np.stack(fluxes),
        wavelength=preprocessor.grid.wavelength,
        labels=None,
        identifiers=names,
        preprocessing=preprocessor,
        provenance={"created_by": f"mdwarf_zoo {__version__} prepare-observed",
                    "template": args.template, "spectra": records},
        sigma=sigma,
        kind="observed",
    )
    out = write_set(args.out, observed)
    print(f"wrote {out} ({len(observed)} spectra)")
    return 0
