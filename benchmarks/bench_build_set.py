"""Benchmark: build the 22,933-spectrum MB24 training set from a HiRes-layout grid.

The real PHOENIX server cannot be reached from our machines, so the script first writes a
synthetic stand-in grid of the real file size (1,569,128 float32 flux values per file, the
size of the real HiRes files, ~6.3 MB each; a log-uniform WAVE file of the same length) for
exactly the native grid points the 22,933 labels need, then times ``build_training_set``
(window 8800-8835 A, 5 A margin, R = 94,600, GISIC-like normalisation) and reports wall time
and peak memory (parent and workers). Writing the stand-in grid is not timed (it stands for
the download).

Usage::

    python benchmarks/bench_build_set.py [--labels FILE] [--workers 2] [--limit N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mdwarf_zoo.spectra.datasets import build_training_set, load_labels, read_set
from mdwarf_zoo.spectra.phoenix import (
    required_points,
    write_phoenix_spectrum,
    write_phoenix_wavelength,
)
from mdwarf_zoo.spectra.preprocess import Preprocessor

HIRES_POINTS = 1_569_128
DEFAULT_LABELS = Path(__file__).resolve().parents[2] / (
    "shared/data/tables/carmenes_params/masbuitrago2024_phoenix_grid_params_ph_pars.npy"
)
LINES = np.array([8794.0, 8798.3, 8806.8, 8811.6, 8824.2, 8826.5, 8834.3, 8838.4, 8842.1])


def stand_in_flux(wavelength: np.ndarray, teff: float, logg: float, mh: float) -> np.ndarray:
    """A Planck continuum with a few Voigt-like lines near the window (not a real spectrum)."""
    h, c, k = 6.626e-27, 2.998e10, 1.381e-16
    lam = wavelength * 1e-8
    flux = 2 * np.pi * h * c**2 / lam**5 / np.expm1(h * c / (lam * k * teff))
    near = np.flatnonzero((wavelength > 8780) & (wavelength < 8860))
    w = wavelength[near]
    depth = 0.6 * (10 ** (0.5 * mh)) * (4000 / teff)
    width = 0.05 * (1 + 0.3 * (logg - 4.5))
    profile = np.ones_like(w)
    for line in LINES:
        profile *= 1 - np.clip(depth, 0, 0.95) / (1 + ((w - line) / width) ** 2)
    flux[near] *= profile
    return flux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(DEFAULT_LABELS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--keep", default=None, help="write the grid here and keep it")
    args = parser.parse_args()

    labels = load_labels(args.labels)[: args.limit]
    points = required_points(labels)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_phoenix_"))
    try:
        wave = np.geomspace(500.0, 55000.0, HIRES_POINTS)
        t0 = time.perf_counter()
        if not (root / "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits").exists():
            write_phoenix_wavelength(root, wave)
        for p in points:
            if not (root / p.relative_path).exists():
                write_phoenix_spectrum(root, stand_in_flux(wave, p.teff, p.logg, p.metallicity),
                                       p.teff, p.logg, p.metallicity)
        size = sum(f.stat().st_size for f in root.rglob("*.fits"))
        print(f"stand-in grid: {len(points)} HiRes files + WAVE, {size / 1e9:.2f} GB, "
              f"written in {time.perf_counter() - t0:.0f} s (not timed)")

        out = Path(tempfile.mkdtemp(prefix="bench_set_")) / "mb24.h5"
        prep = Preprocessor(resolving_power=94600.0)
        t0 = time.perf_counter()
        build_training_set(root, labels, out, preprocessor=prep, workers=args.workers)
        elapsed = time.perf_counter() - t0
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = read_set(out)
        print(f"built {len(result)} spectra x {result.flux.shape[1]} pixels in {elapsed:.1f} s "
              f"with {args.workers} workers ({len(result) / elapsed:.0f} spectra/s)")
        print(f"peak RSS: parent {parent:.0f} MiB, largest worker {children:.0f} MiB; "
              f"output {out.stat().st_size / 1e6:.0f} MB")
        print(f"flux range {result.flux.min():.3f}..{result.flux.max():.3f}, "
              f"finite: {bool(np.isfinite(result.flux).all())}")
        shutil.rmtree(out.parent)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
