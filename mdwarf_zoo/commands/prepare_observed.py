"""``mdwarf-zoo prepare-observed``: observed spectra through the same Preprocessor, to HDF5."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands.build_set import add_preprocessing_arguments, preprocessor_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare-observed",
        help="read observed spectra, correct their velocity, preprocess, write an HDF5 set",
        description="Read observed FITS spectra (CARACAL, SERVAL, merged tables, 1-D, echelle "
        "with named extensions), optionally shift each to the rest frame of a template by "
        "cross-correlation, apply the preprocessing, and write an observed set (HDF5).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--out", required=True, metavar="OBS.h5")
    parser.add_argument("--template", default=None, metavar="FITS",
                        help="template for the radial velocity (a PHOENIX HiRes file or any "
                        "spectrum read_spectrum reads); no velocity correction without it")
    parser.add_argument("--rv-range", nargs=3, type=float, default=(-200.0, 200.0, 0.25),
                        metavar=("MIN", "MAX", "STEP"), help="trial velocities, km/s")
    reader = parser.add_argument_group("reading")
    reader.add_argument("--flux-ext", default=None)
    reader.add_argument("--wave-ext", default=None)
    reader.add_argument("--variance-ext", default=None)
    reader.add_argument("--wave-file", default=None)
    reader.add_argument("--order", type=int, default=None)
    reader.add_argument("--medium", choices=("vacuum", "air"), default=None)
    add_preprocessing_arguments(parser)
    parser.set_defaults(func=run)


def _read_template(path: str, span: tuple[float, float], rv_limit: float):
    from pathlib import Path

    from mdwarf_zoo.spectra.observed import read_spectrum
    from mdwarf_zoo.spectra.phoenix import GRID_NAME, read_phoenix_spectrum

    if not Path(path).name.endswith(f"{GRID_NAME}-HiRes.fits"):
        return read_spectrum(path)
    # Keep the template a little wider than window + margin at the largest trial velocity.
    pad = span[1] * rv_limit / 299792.458 + 1.0
    return read_phoenix_spectrum(path, span[0] - pad, span[1] + pad)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mdwarf_zoo._version import __version__
    from mdwarf_zoo.spectra.datasets import SpectrumSet, write_set
    from mdwarf_zoo.spectra.observed import read_spectrum
    from mdwarf_zoo.spectra.rv import to_rest_frame

    preprocessor = preprocessor_from_args(args)
    low, high = preprocessor.span
    rv_min, rv_max, rv_step = args.rv_range
    template = None
    if args.template:
        template = _read_template(args.template, (low, high), max(abs(rv_min), abs(rv_max)))
    fluxes, sigmas, names, records = [], [], [], []
    for path in args.files:
        spectrum = read_spectrum(
            path,
            window=None if args.order is not None else (low, high),
            order=args.order,
            flux_ext=args.flux_ext,
            wave_ext=args.wave_ext,
            variance_ext=args.variance_ext,
            wave_file=args.wave_file,
            medium=args.medium,
        )
        record = {"file": str(path), "orders": spectrum.metadata.get("orders")}
        if template is not None:
            spectrum, velocity = to_rest_frame(spectrum, template, rv_min=rv_min,
                                               rv_max=rv_max, rv_step=rv_step)
            record.update(rv=velocity.rv, rv_error=velocity.uncertainty,
                          barycentric_rv=velocity.barycentric_rv)
            print(f"{path}: RV {velocity.rv:+.3f} +/- {velocity.uncertainty:.3f} km/s")
        prepared = preprocessor(spectrum)
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
