"""Fit the simulator's line list to real PHOENIX-ACES spectra and write the package's table.

Fits line nodes and band knots (``mdwarf_zoo.spectra.phoenix_calibration.fit_line_list``) to
the TFG PHOENIX-ACES files (2300-2800 K, log g 5.0, [M/H] 0, R = 94,600), writes
``mdwarf_zoo/data/phoenix_linelist.ecsv`` (parameters and provenance only; the spectra are not
redistributable) and prints the line-depth correlations with PHOENIX through the
``Preprocessor`` chain. With ``--holdout`` it first fits without two Teff (default 2400 and
2600) and measures the simulator at those, so the reader can see the fit is not memorised.

Usage (the real data are not part of the repository; see the shared data's PROVENANCE.md):

    python benchmarks/fit_linelist_phoenix.py [--data DIR] [--out FILE] [--holdout 2400 2600]

To refit on more PHOENIX files, pass them as ``--teffs`` (files named ``file_<Teff>.7z`` in
the TFG layout; for other layouts, build the ``{teff: (wavelength, flux)}`` dictionary and
call ``fit_line_list`` directly). Needs the ``test`` extra (py7zr). About 3-6 minutes on
2 cores per fit.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from mdwarf_zoo.spectra import phoenix_calibration as pc

REPOSITORY = Path(__file__).resolve().parents[1]


def _print_correlations(result: dict, label: str) -> None:
    cells = "  ".join(f"{t} K {v:.3f}" for t, v in result["per_teff"].items())
    print(f"{label}: {cells}; change {min(result['per_teff'])}->{max(result['per_teff'])} K "
          f"{result['change']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data"
                        / "phoenix" / "tfg_carmenes_vis_convolved")
    parser.add_argument("--teffs", type=int, nargs="+",
                        default=[2300, 2400, 2500, 2600, 2700, 2800])
    parser.add_argument("--out", type=Path,
                        default=REPOSITORY / "mdwarf_zoo" / "data" / "phoenix_linelist.ecsv")
    parser.add_argument("--holdout", type=int, nargs="*", default=None,
                        help="first fit without these Teff and test on them (e.g. 2400 2600)")
    parser.add_argument("--evaluations", type=int, default=pc.FitSettings().evaluations)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    spectra = pc.load_tfg_spectra(args.data, tuple(args.teffs))
    settings = pc.FitSettings(evaluations=args.evaluations)
    if args.holdout:
        fitted = {t: s for t, s in spectra.items() if t not in args.holdout}
        start = time.perf_counter()
        table = pc.fit_line_list(fitted, settings,
                                 sources=[f"file_{t}.7z" for t in sorted(fitted)])
        print(f"hold-out fit on {sorted(fitted)} K: {len(table)} rows, rms "
              f"{table.meta['fit_rms']:.4f}, {time.perf_counter() - start:.0f} s")
        with tempfile.TemporaryDirectory() as folder:
            path = pc.write_line_list(table, Path(folder) / "holdout.ecsv")
            with pc.candidate_line_list(path):
                result = pc.chain_correlations(spectra)
        _print_correlations(result, "hold-out table")
        held = "  ".join(f"{t} K {result['per_teff'][t]:.3f}" for t in args.holdout)
        print(f"held-out Teff (never fitted): {held}")

    start = time.perf_counter()
    table = pc.fit_line_list(spectra, settings,
                             sources=[f"file_{t}.7z" for t in sorted(spectra)])
    counts = {k: int((table["kind"] == k).sum()) for k in ("atomic", "molecular", "band")}
    print(f"full fit on {sorted(spectra)} K: {len(table)} rows {counts}, rms "
          f"{table.meta['fit_rms']:.4f}, {time.perf_counter() - start:.0f} s")
    pc.write_line_list(table, args.out)
    print(f"wrote {args.out}")
    with pc.candidate_line_list(args.out):
        _print_correlations(pc.chain_correlations(spectra), "full table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
