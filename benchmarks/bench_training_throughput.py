"""Autoencoder training throughput against the machine's own matmul peak (issue 8).

Measures, in one process:
- the fp32 (and bf16) matmul peak: 4096 x 4096 products, best of 8 trials, measured before
  and after the training timings (the higher counts);
- a plain Keras ``Sequential`` of the ``dense_ae_1024`` layers with MSE only (default compile);
- ``dense_ae_1024`` with its full loss (MSE + contractive + L1 activity): the zoo's default
  compile (``FusedAdam``) in float32 and under ``precision="mixed_bfloat16"``, the same with
  XLA, and float32 with Keras' own ``Adam`` (the zoo's compile before ``FusedAdam``);
- the optimizer update alone (one step over the 9.9 M parameters), Keras ``Adam`` vs
  ``FusedAdam``, to show where the time goes.

Throughput is spectra per second at batch 128; achieved GFLOP/s = 6 x parameters x spectra / s
(forward 2, backward 4 FLOP per parameter and spectrum). Every variant reads the same cached,
prefetched ``tf.data`` pipeline; each is timed ``--repeats`` times, interleaved, and the best
(as for the matmul peak) and the median are reported.

    python benchmarks/bench_training_throughput.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mdwarf_zoo  # noqa: E402
from mdwarf_zoo.optimizers import FusedAdam  # noqa: E402

BATCH = 128


def matmul_peak(dtype: str, size: int = 4096, trials: int = 8) -> float:
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


def zoo(
    precision: str = "float32", optimizer=None, jit: bool = False, steps_per_execution: int = 1
) -> keras.Model:
    model = mdwarf_zoo.create_model("dense_ae_1024", seed=0, precision=precision)
    if optimizer is not None or jit or steps_per_execution > 1:
        model.compile(
            optimizer=(optimizer or FusedAdam)(1e-4),
            loss="mse",
            jit_compile=jit,
            steps_per_execution=steps_per_execution,
        )
    return model


VARIANTS = {
    "plain Sequential, MSE only (default compile)": plain_sequential,
    "dense_ae_1024 full loss, fp32, keras Adam": lambda: zoo(
        optimizer=keras.optimizers.Adam
    ),
    "dense_ae_1024 full loss, fp32 (zoo default)": lambda: zoo(),
    "dense_ae_1024 full loss, fp32, XLA": lambda: zoo(jit=True),
    "dense_ae_1024 full loss, mixed_bfloat16": lambda: zoo("mixed_bfloat16"),
    "dense_ae_1024 full loss, mixed_bfloat16, steps_per_execution=4": lambda: zoo(
        "mixed_bfloat16", steps_per_execution=4
    ),
}


def optimizer_step_ms(optimizer_class, trials: int = 20) -> float:
    """Milliseconds of one optimizer update over ``dense_ae_1024``'s variables."""
    model = mdwarf_zoo.create_model("dense_ae_1024", seed=0)
    optimizer = optimizer_class(1e-4)
    optimizer.build(model.trainable_variables)
    grads = [tf.fill(v.shape, 1e-3) for v in model.trainable_variables]
    step = tf.function(lambda g: optimizer.apply(g, model.trainable_variables))
    step(grads)
    start = time.perf_counter()
    for _ in range(trials):
        step(grads)
    model.trainable_variables[0].numpy()
    return 1e3 * (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (BATCH * args.steps, 3501)).astype("float32")

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}")
    peak32 = matmul_peak("float32")
    peak16 = matmul_peak("bfloat16")

    print(f"optimizer update alone: keras Adam {optimizer_step_ms(keras.optimizers.Adam):.1f} ms, "
          f"FusedAdam {optimizer_step_ms(FusedAdam):.1f} ms per step")

    # One input pipeline for every variant: pre-batched, cached in memory, prefetched, so that
    # the timings measure the training step and not a per-step gather from a NumPy array.
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(BATCH).cache()
    data = data.prefetch(tf.data.AUTOTUNE)
    models = {name: build() for name, build in VARIANTS.items()}
    for model in models.values():  # trace, warm up and fill the cache outside the timings
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):  # interleaved, so slow phases of the machine hit every variant
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            seconds[name].append(time.perf_counter() - start)

    # The peak again after the timings; the higher of the two counts (the conservative choice).
    peak32 = max(peak32, matmul_peak("float32"))
    peak16 = max(peak16, matmul_peak("bfloat16"))
    print(f"matmul peak (best before/after): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")

    # Best of the repeats (as for the matmul peak: the machine's noise only ever slows a run
    # down), with the median next to it.
    def rate(name: str, pick=min) -> float:
        return len(x) / pick(seconds[name])

    plain = next(iter(models))
    header = ("variant", "ms/step", "spectra/s", "GFLOP/s", "% fp32 peak", "x plain", "median")
    print("\n{:62s} {:>8s} {:>9s} {:>8s} {:>11s} {:>7s} {:>8s}".format(*header))
    for name, model in models.items():
        best = rate(name)
        gflops = 6 * model.count_params() * best / 1e9
        median_pct = 600 * model.count_params() * rate(name, statistics.median) / 1e9 / peak32
        print(
            f"{name:62s} {1e3 * BATCH / best:8.1f} {best:9.0f} {gflops:8.1f} "
            f"{100 * gflops / peak32:10.1f}% {best / rate(plain):7.2f} {median_pct:7.1f}%"
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (RSS) of the process, all variants: {peak_rss:.0f} MiB")


if __name__ == "__main__":
    main()
