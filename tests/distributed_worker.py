"""One worker process of ``tests/test_distributed.py`` (a separate process per worker, as on a
cluster, because TF_CONFIG and the device layout are fixed when TensorFlow starts).

    python tests/distributed_worker.py train --strategy multi_worker --out result.npz
    python tests/distributed_worker.py train --strategy mirrored --logical-cpus 2 \
        --out result.npz --split-out split.json

``train`` fits a tiny MB24-shaped autoencoder (``dense_ae_tiny``, seeded) on fixed synthetic
spectra through ``mdwarf_zoo.training.distribute.fit_distributed`` and saves the per-epoch
losses and the final weights. With ``--split-out`` (and two logical CPU devices mirrored) it
also records how the input pipeline's global batches are split between the two replicas.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two cores are shared by all workers of a test: one thread per kernel avoids oversubscription.
tf.config.threading.set_intra_op_parallelism_threads(1)

NUM_SPECTRA = 64
NUM_VALIDATION = 16
PIXELS = 3501  # the MB24 window: dense_ae_tiny's input length


def synthetic_spectra(count: int, seed: int) -> np.ndarray:
    """Continuum-normalised absorption spectra in [0, 1]: a few Gaussian lines each."""
    rng = np.random.default_rng(seed)
    pixel = np.arange(PIXELS)
    centres = rng.uniform(0, PIXELS, size=(count, 12, 1))
    depths = rng.uniform(0.05, 0.6, size=(count, 12, 1))
    widths = rng.uniform(3, 20, size=(count, 12, 1))
    lines = depths * np.exp(-0.5 * ((pixel - centres) / widths) ** 2)
    return np.clip(1.0 - lines.sum(axis=1), 0.0, 1.0).astype(np.float32)


def train(args: argparse.Namespace) -> None:
    import mdwarf_zoo
    from mdwarf_zoo.training.distribute import get_strategy
    from mdwarf_zoo.training.loop import fit_distributed

    devices = None
    if args.strategy == "mirrored" and args.logical_cpus > 1:
        devices = [f"/cpu:{i}" for i in range(args.logical_cpus)]
    strategy = get_strategy(args.strategy, devices=devices)
    if args.split_out:
        record_split(strategy, args.split_out)
    model, history = fit_distributed(
        lambda: mdwarf_zoo.create_model("dense_ae_tiny", seed=3, learning_rate=1e-3),
        synthetic_spectra(NUM_SPECTRA, seed=11),
        strategy=strategy,
        epochs=args.epochs,
        global_batch_size=args.global_batch_size,
        seed=args.shuffle_seed,
        validation_data=synthetic_spectra(NUM_VALIDATION, seed=12),
        checkpoint_dir=args.checkpoint_dir,
    )
    np.savez(
        args.out,
        replicas=strategy.num_replicas_in_sync,
        loss=np.array(history.history.get("loss", []), dtype=np.float64),
        val_loss=np.array(history.history.get("val_loss", []), dtype=np.float64),
        weights=np.concatenate([np.ravel(w) for w in model.get_weights()]),
        same_strategy=get_strategy(args.strategy, devices=devices) is strategy,
    )


def record_split(strategy, path: str) -> None:
    from mdwarf_zoo.training.distribute import make_dataset

    x = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    dataset = make_dataset(x, global_batch_size=8, seed=4, num_epochs=2)
    globals_, replica0, replica1 = [], [], []
    for x_batch, _ in dataset:
        globals_.append(x_batch.numpy()[:, 0])
    for x_batch, _ in strategy.experimental_distribute_dataset(dataset):
        parts = strategy.experimental_local_results(x_batch)
        replica0.append(parts[0].numpy()[:, 0])
        replica1.append(parts[1].numpy()[:, 0])
    with open(path, "w") as file:
        json.dump(
            {
                "replicas": strategy.num_replicas_in_sync,
                "global_batches": [batch.tolist() for batch in globals_],
                "replica0": [batch.tolist() for batch in replica0],
                "replica1": [batch.tolist() for batch in replica1],
            },
            file,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--global-batch-size", type=int, default=16)
    parser.add_argument("--shuffle-seed", type=int, default=5)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--split-out", default=None, help="also record the batch split here")
    parser.add_argument(
        "--logical-cpus", type=int, default=1, help="split the CPU into this many devices"
    )
    args = parser.parse_args()
    if args.logical_cpus > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration() for _ in range(args.logical_cpus)],
        )
    train(args)


if __name__ == "__main__":
    main()
