"""Stage-3 throughput: one member's latent CNNs trained fused (``mdwarf_zoo.training.fused``) versus
one after the other, at the shape of ``training_recipes/mb24_reference.toml``.

MB24 shape: 16,053 synthetic latents of 32 dimensions (70 % of 22,933; each regressor's
stratified 70/30 split of them), latent_cnn nf1 64 / nf2 32 / nu 64, Adam 0.01, 20 branches
(5 seeds x 4 parameters). Each measurement runs in its own process (clean peak memory):

- ``matmul``: fp32 peak, a 4096^3 matmul repeated (GFLOP/s).
- ``separate``: the runner's per-model path (``fit_resumable``: ``Model.fit`` with FusedAdam,
  validation each epoch) for 4 of the 20 regressors (one per parameter); per-regressor epoch
  time x 20. Measured before and after the fused run: the machine is shared, and the spread
  of the two says how much the load moved meanwhile.
- ``fused``: ``train_fused`` on all 20 for 1 + E epochs; the epoch time is the mean of the
  last E epochs (from its debug log), so tracing (in the first epoch) is reported separately.

FLOPs: a training step is counted as 3x the forward multiply-adds x 2 per sample and branch
(forward, gradient with respect to inputs and to weights); validation is not counted.

With ``--precision mixed_bfloat16`` the fused run is repeated with the regressors built in that
dtype policy (bfloat16 compute, float32 weights and Adam).

Run: ``python benchmarks/bench_fused_regressors.py [--epochs E] [--batch-sizes 32 128]
[--precision mixed_bfloat16]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_ROWS, LATENT_DIM, SEEDS, PARAMETERS = 16_053, 32, 5, 4
SETTINGS = {"nf1": 64, "nf2": 32, "nu": 64, "learning_rate": 0.01}


def _problem():
    import numpy as np

    from mdwarf_zoo.pipeline import stratified_split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, LATENT_DIM)).astype(np.float32)
    # Labels on grids like MB24's (Teff continuous; log g, [M/H], v sin i gridded).
    labels = np.stack([
        rng.uniform(2300, 4500, N_ROWS),
        rng.choice([4.7, 4.8, 4.9, 5.0, 5.1, 5.2, 5.3], N_ROWS),
        rng.choice(np.arange(-1.0, 0.61, 0.1), N_ROWS),
        rng.choice([1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30], N_ROWS),
    ], 1)
    targets, seeds, train, val = [], [], [], []
    for column in range(PARAMETERS):
        scaled = (labels[:, column] - labels[:, column].mean()) / labels[:, column].std()
        for k in range(SEEDS):
            seed = 100 * (column + 1) + k
            t, v = stratified_split(labels[:, column], 0.3, seed=seed)
            targets.append(scaled.astype(np.float32))
            seeds.append(seed)
            train.append(t)
            val.append(v)
    return x, np.stack(targets), seeds, train, val


def _flops_per_step(batch_size: int) -> float:
    d, nf1, nf2, nu = LATENT_DIM, SETTINGS["nf1"], SETTINGS["nf2"], SETTINGS["nu"]
    macs = d * 2 * nf1 + d * 2 * nf1 * nf2 + d * nf2 * 256 + 256 * 128 + 128 * nu + nu
    return 3 * 2 * macs * batch_size


def part_matmul() -> dict:
    import tensorflow as tf

    a = tf.random.normal([4096, 4096])
    b = tf.random.normal([4096, 4096])
    tf.matmul(a, b).numpy()
    best = 0.0
    for _ in range(4):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = max(best, 2 * 4096**3 / (time.perf_counter() - start) / 1e9)
    return {"gflops": best}


def part_separate(batch_size: int, epochs: int) -> dict:
    import mdwarf_zoo as mz
    from mdwarf_zoo.training.loop import fit_resumable

    x, targets, seeds, train, val = _problem()
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for k in (0, 5, 10, 15):  # one regressor per parameter
            model = mz.create_model("latent_cnn", latent_dim=LATENT_DIM, seed=seeds[k],
                                    **SETTINGS)
            arguments = {"batch_size": batch_size, "seed": seeds[k], "progress": False,
                         "validation": (x[val[k]], targets[k][val[k]])}
            start = time.perf_counter()
            fit_resumable(model, x[train[k]], targets[k][train[k]], epochs=1,
                          checkpoint=Path(folder) / f"{k}.npz", **arguments)
            first = time.perf_counter() - start
            start = time.perf_counter()
            fit_resumable(model, x[train[k]], targets[k][train[k]], epochs=1 + epochs,
                          checkpoint=Path(folder) / f"{k}.npz", **arguments)
            times.append(((time.perf_counter() - start) / epochs, first))
    steps = max(-(-len(train[k]) // batch_size) for k in (0, 5, 10, 15))
    epoch = sum(t for t, _ in times) / len(times)
    return {"epoch_s_per_model": epoch, "first_epoch_s": times[0][1],
            "step_ms": 1e3 * epoch / steps, "steps_per_epoch": steps}


def part_fused(batch_size: int, epochs: int, precision: str = "float32") -> dict:
    import mdwarf_zoo as mz
    from mdwarf_zoo.training.fused import train_fused

    x, targets, seeds, train, val = _problem()
    seconds = []

    class Epochs(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "epoch" in record.msg:
                seconds.append(float(record.args[2]))

    logger = logging.getLogger("mdwarf_zoo.training.fused")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Epochs())
    models = [mz.create_model("latent_cnn", latent_dim=LATENT_DIM, seed=s, precision=precision,
                              **SETTINGS) for s in seeds]
    start = time.perf_counter()
    train_fused(models, x, targets, train, val, seeds=seeds, epochs=1 + epochs,
                batch_size=batch_size, progress=False)
    total = time.perf_counter() - start
    steps = max(-(-len(t) // batch_size) for t in train)
    epoch = sum(seconds[1:]) / len(seconds[1:])
    return {"epoch_s": epoch, "first_epoch_s": seconds[0], "total_s": total,
            "step_ms": 1e3 * epoch / steps, "steps_per_epoch": steps}


def _child(part: str, batch_size: int, epochs: int, precision: str = "float32") -> dict:
    command = [sys.executable, __file__, "--part", part, "--batch-sizes", str(batch_size),
               "--epochs", str(epochs), "--precision", precision]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--part", choices=["matmul", "separate", "fused"])
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="dtype policy of the fused regressors (also timed in float32)")
    args = parser.parse_args()
    if args.part:
        function = {"matmul": part_matmul, "separate": part_separate, "fused": part_fused}
        if args.part == "matmul":
            result = function[args.part]()
        elif args.part == "fused":
            result = function[args.part](args.batch_sizes[0], args.epochs, args.precision)
        else:
            result = function[args.part](args.batch_sizes[0], args.epochs)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    started = time.perf_counter()
    peak = _child("matmul", 0, 0)
    print(f"fp32 matmul peak: {peak['gflops']:.0f} GFLOP/s")
    branches = SEEDS * PARAMETERS
    for batch_size in args.batch_sizes:
        before = _child("separate", batch_size, args.epochs)
        fused = _child("fused", batch_size, args.epochs)
        after = _child("separate", batch_size, args.epochs)
        flops = _flops_per_step(batch_size)
        print(f"\nbatch {batch_size} ({flops / 1e9:.3f} GFLOP per regressor step, "
              f"{fused['steps_per_epoch']} steps per epoch):")
        for label, separate in (("separate (before)", before), ("separate (after)", after)):
            rate = flops / (separate["step_ms"] / 1e3) / 1e9
            print(f"  {label}: {separate['step_ms']:.2f} ms/step incl. validation, "
                  f"{rate:.0f} GFLOP/s ({100 * rate / peak['gflops']:.1f} % of peak); epoch of "
                  f"{branches} regressors {branches * separate['epoch_s_per_model']:.1f} s; "
                  f"peak RSS {separate['peak_rss_mb']:.0f} MB")
        fused_rate = branches * flops / (fused["step_ms"] / 1e3) / 1e9
        print(f"  fused x{branches}: {fused['step_ms']:.2f} ms/step incl. validation, "
              f"{fused_rate:.0f} GFLOP/s ({100 * fused_rate / peak['gflops']:.1f} % of peak); "
              f"epoch of {branches} regressors {fused['epoch_s']:.1f} s "
              f"(first epoch, with tracing, {fused['first_epoch_s']:.1f} s); peak RSS "
              f"{fused['peak_rss_mb']:.0f} MB")
        epochs_separate = [branches * s["epoch_s_per_model"] for s in (before, after)]
        print(f"  fused is {min(epochs_separate) / fused['epoch_s']:.1f}-"
              f"{max(epochs_separate) / fused['epoch_s']:.1f}x the per-model loop")
        # MB24 stage 3: 26 members x 200 epochs, 20 regressors each.
        print(f"  stage 3 of mb24_reference (26 x 200 epochs): separate "
              f"{26 * 200 * min(epochs_separate) / 3600:.1f}-"
              f"{26 * 200 * max(epochs_separate) / 3600:.1f} h, fused "
              f"{26 * (200 * fused['epoch_s'] + fused['first_epoch_s']) / 3600:.1f} h")
        if args.precision != "float32":
            low = _child("fused", batch_size, args.epochs, args.precision)
            print(f"  fused x{branches} in {args.precision}: {low['step_ms']:.2f} ms/step, "
                  f"{fused['epoch_s'] / low['epoch_s']:.2f}x the float32 fused epoch; stage 3 "
                  f"{26 * (200 * low['epoch_s'] + low['first_epoch_s']) / 3600:.1f} h")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
