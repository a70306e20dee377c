"""Single-machine training throughput through
``mdwarf_zoo.training.distribute.fit_distributed`` (issue 9).

The numbers behind the scale-out plan in ``benchmarks/RESULTS.md``. Measured, in one process,
at the MB24 batch size (128) on the default strategy:

- the input pipeline alone (``make_dataset``: per-epoch shuffle + gather of 3501-pixel spectra);
- ``dense_ae_1024`` (stage 1 and, partly frozen, stage 2) with its full MB24 loss;
- ``latent_cnn`` (stage 3, one regressor) on 32-d latents.

Each model trains one untimed epoch (tracing), then ``--epochs`` timed epochs; the report is
the median epoch. Random inputs in [0, 1] stand in for spectra (the speed does not depend on
the values).

    python benchmarks/bench_scaleout.py [--spectra 2048] [--epochs 3]
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
from mdwarf_zoo.training.distribute import make_dataset  # noqa: E402
from mdwarf_zoo.training.loop import fit_distributed  # noqa: E402

BATCH = 128


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def pipeline_rate(x: np.ndarray, epochs: int) -> float:
    dataset = make_dataset(x, global_batch_size=BATCH, seed=0, num_epochs=epochs + 1)
    iterator = iter(dataset)
    steps = -(-len(x) // BATCH)
    for _ in range(steps):  # the first epoch builds the pipeline
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps * epochs):
        next(iterator)
    return len(x) * epochs / (time.perf_counter() - start)


def training_rate(name: str, x: np.ndarray, y: np.ndarray | None, epochs: int) -> float:
    timer = EpochTimer()
    fit_distributed(
        lambda: mdwarf_zoo.create_model(name, seed=0),
        x,
        y,
        strategy="default",
        epochs=epochs + 1,
        global_batch_size=BATCH,
        seed=0,
        callbacks=[timer],
    )
    return len(x) / statistics.median(timer.seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=int, default=2048, help="examples per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    spectra = rng.uniform(0.0, 1.0, size=(args.spectra, 3501)).astype(np.float32)
    latents = rng.normal(size=(args.spectra * 8, 32)).astype(np.float32)
    teff = rng.normal(size=(args.spectra * 8, 1)).astype(np.float32)

    print(
        f"# {platform.node()}: {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, load average {os.getloadavg()[0]:.1f}, batch {BATCH}"
    )
    rate = pipeline_rate(spectra, args.epochs)
    print(f"input pipeline (shuffle + gather, 3501 px): {rate:,.0f} spectra/s")
    for name, x, y in [("dense_ae_1024", spectra, None), ("latent_cnn", latents, teff)]:
        parameters = mdwarf_zoo.create_model(name).count_params()
        rate = training_rate(name, x, y, args.epochs)
        line = f"{name}: {parameters:,} parameters, {rate:,.0f} examples/s"
        line += f" ({1e3 * BATCH / rate:.2f} ms per step"
        if name.startswith("dense"):  # 6 FLOP per parameter and example holds for dense layers
            line += f", ~{6 * parameters * rate / 1e9:.0f} GFLOP/s"
        print(line + ")")
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
