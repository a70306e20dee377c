"""Autoencoder training throughput against the machine's own matmul peak (issue 8).

Measures, in one process:
- the fp32 (and bf16) matmul peak: 4096 x 4096 products, best of several trials;
- a plain Keras ``Sequential`` of the ``dense_ae_1024`` layers with MSE only (default compile);
- ``dense_ae_1024`` with its full loss (MSE + contractive + L1 activity), default compile
  (fp32), with XLA, and under the ``mixed_bfloat16`` policy.

Throughput is spectra per second at batch 128; achieved GFLOP/s = 6 x parameters x spectra / s
(forward 2, backward 4 FLOP per parameter and spectrum). Each variant is timed ``--repeats``
times, interleaved, and the median is reported.

    python benchmarks/bench_training_throughput.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mdwarf_zoo  # noqa: E402

BATCH = 128


def matmul_peak(dtype: str, size: int = 4096, trials: int = 5) -> float:
    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    product = tf.function(lambda a, b: tf.matmul(a, b))
    product(a, b).numpy()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        results = [product(a, b) for _ in range(4)]
        results[-1].numpy()
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def plain_sequential() -> keras.Model:
    widths = [1024, 768, 512, 256, 128, 32, 128, 256, 512, 768, 1024]
    layers = [keras.Input((3501,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in widths]
    layers.append(keras.layers.Dense(3501, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    return model


def zoo(policy: str = "float32", jit: bool = False) -> keras.Model:
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = mdwarf_zoo.create_model("dense_ae_1024", seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if jit:
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=True)
    return model


VARIANTS = {
    "plain Sequential, MSE only (default compile)": plain_sequential,
    "dense_ae_1024 full loss, fp32 (default compile)": lambda: zoo(),
    "dense_ae_1024 full loss, fp32, jit_compile=True": lambda: zoo(jit=True),
    "dense_ae_1024 full loss, mixed_bfloat16 (default compile)": lambda: zoo("mixed_bfloat16"),
    "dense_ae_1024 full loss, mixed_bfloat16, jit_compile=True": lambda: zoo(
        "mixed_bfloat16", jit=True
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (BATCH * args.steps, 3501)).astype("float32")

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}")
    peak32 = matmul_peak("float32")
    peak16 = matmul_peak("bfloat16")
    print(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")

    models = {name: build() for name, build in VARIANTS.items()}
    for model in models.values():  # trace and warm up outside the timings
        model.fit(x[: BATCH * 4], x[: BATCH * 4], batch_size=BATCH, epochs=1, verbose=0)
    timings: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, x, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            timings[name].append(len(x) / (time.perf_counter() - start))

    plain_rate = statistics.median(timings[next(iter(models))])
    header = ("variant", "spectra/s", "GFLOP/s", "% fp32 peak", "x plain")
    print("\n{:58s} {:>9s} {:>8s} {:>11s} {:>7s}".format(*header))
    for name, model in models.items():
        rate = statistics.median(timings[name])
        gflops = 6 * model.count_params() * rate / 1e9
        print(
            f"{name:58s} {rate:9.0f} {gflops:8.1f} {100 * gflops / peak32:10.1f}% "
            f"{rate / plain_rate:7.2f}"
        )


if __name__ == "__main__":
    main()
