"""Benchmark: simulate the synthetic spectra of all 22,933 MB24 labels (time and peak memory).

Target (issue 4): 10 minutes or less on 2 cores.

Run: python benchmarks/bench_simulate.py [--labels FILE] [--workers 2] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

DEFAULT_LABELS = (
    Path(__file__).resolve().parents[2]
    / "shared/data/tables/carmenes_params/masbuitrago2024_phoenix_grid_params_ph_pars.npy"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    from mdwarf_zoo.spectra.simulate import synthetic_spectra

    labels = np.load(args.labels)[: args.limit]
    load = os.getloadavg()
    start = time.perf_counter()
    flux = synthetic_spectra(labels, workers=args.workers, progress=True)
    elapsed = time.perf_counter() - start
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(f"spectra: {flux.shape[0]} x {flux.shape[1]} px, workers {args.workers}")
    print(f"time: {elapsed:.1f} s ({elapsed / flux.shape[0] * 1e3:.2f} ms per spectrum)")
    print(f"result array: {flux.nbytes / 2**20:.0f} MiB (float64)")
    print(
        f"peak RSS: main process {self_kb / 1024:.0f} MiB, largest worker {child_kb / 1024:.0f} MiB"
    )
    print(f"target 600 s: {'met' if elapsed <= 600 else 'MISSED'}")


if __name__ == "__main__":
    main()
