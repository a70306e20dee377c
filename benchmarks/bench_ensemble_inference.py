"""Benchmark: MB24-sized ensemble inference on 286 spectra (target <= 30 s on CPU).

26 dense autoencoders (``dense_ae_1024`` ... ``dense_ae_2048``, cycled as MB24's grid) and,
per parameter (Teff, log g, [M/H], v sin i), 80 ``latent_cnn`` regressors spread over them
(MB24: the best 80 of 5 x 26). Weights are untrained (timing only), built with
``mdwarf_zoo.create_model``. Timed end to end through the zoo's own inference path:
``mdwarf_zoo.pipeline.encode`` of the 286 spectra with each of the 26 encoders,
``LatentRegressor.predict`` of all 320 regressors via ``pipeline.predict_ensemble``, and the
per-star KDE mode and -/+ errors of ``mdwarf_zoo.pipeline.ensemble.ensemble_table``. Also prints the
model-building time and the peak resident memory of the process.

Usage::

    python benchmarks/bench_ensemble_inference.py [--repeats 3] [--stars 286]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stars", type=int, default=286)
    parser.add_argument("--autoencoders", type=int, default=26)
    parser.add_argument("--regressors", type=int, default=80, help="per parameter")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import mdwarf_zoo
    from mdwarf_zoo.pipeline import LabelScaler, LatentRegressor, encode, predict_ensemble
    from mdwarf_zoo.pipeline.ensemble import ensemble_table
    from mdwarf_zoo.recipes import PARAMETERS

    print(
        f"python {platform.python_version()}, keras {keras.__version__}, tensorflow "
        f"{tf.__version__}, numpy {np.__version__}, mdwarf_zoo {mdwarf_zoo.__version__}; "
        f"{os.cpu_count()} CPUs: {platform.processor() or platform.machine()}"
    )
    sizes = ["dense_ae_1024", "dense_ae_1280", "dense_ae_1536", "dense_ae_1792", "dense_ae_2048"]
    started = time.perf_counter()
    autoencoders = {
        f"ae_{i:02d}": mdwarf_zoo.create_model(sizes[i % len(sizes)], seed=i)
        for i in range(args.autoencoders)
    }
    scaler = LabelScaler(
        names=list(PARAMETERS), mean=[3300.0, 5.0, 0.0, 3.0], std=[400.0, 0.15, 0.3, 2.5]
    )
    names = list(autoencoders)
    regressors = [
        LatentRegressor(
            parameter=parameter,
            autoencoder=names[k % len(names)],
            seed=k,
            model=mdwarf_zoo.create_model("latent_cnn", seed=1000 * p + k),
            scaler=scaler,
            validation_mse=float(k),
            validation_rms=float("nan"),
        )
        for p, parameter in enumerate(PARAMETERS)
        for k in range(args.regressors)
    ]
    build = time.perf_counter() - started
    n_parameters = sum(int(m.count_params()) for m in autoencoders.values())
    print(
        f"built {len(autoencoders)} autoencoders ({n_parameters / 1e6:.0f} M parameters) and "
        f"{len(regressors)} regressors in {build:.1f} s; peak RSS {_peak_rss_mb():.0f} MB"
    )
    flux = np.random.default_rng(0).uniform(0.3, 1.0, (args.stars, 3501)).astype(np.float32)

    def infer():
        t0 = time.perf_counter()
        latents = {name: encode(model, flux) for name, model in autoencoders.items()}
        t1 = time.perf_counter()
        predictions, mse = predict_ensemble(regressors, latents)
        t2 = time.perf_counter()
        table = ensemble_table(predictions, validation_mse=mse, keep=args.regressors)
        t3 = time.perf_counter()
        assert len(table) == args.stars
        return t3 - t0, t1 - t0, t2 - t1, t3 - t2

    times = []
    for repeat in range(args.repeats):
        total, enc, reg, kde = infer()
        times.append(total)
        print(
            f"run {repeat}: {total:.2f} s (encode {enc:.2f} s, regressors {reg:.2f} s, "
            f"KDE {kde:.2f} s)"
        )
    print(
        f"ensemble inference, {args.autoencoders} AEs x {args.regressors} regressors x "
        f"{len(PARAMETERS)} parameters on {args.stars} spectra: first {times[0]:.2f} s, "
        f"median {statistics.median(times):.2f} s (target <= 30 s); "
        f"peak RSS {_peak_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
