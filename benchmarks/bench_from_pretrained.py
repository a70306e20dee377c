"""Benchmark: ``from_pretrained`` on a warm cache vs ``keras.saving.load_model``.

Saves ``dense_ae_1024`` (9,874,125 parameters, a 39.5 MB ``model.weights.h5``) with
``save_pretrained``, serves it from the in-process test hub on 127.0.0.1, downloads it once
into a fresh Hugging Face cache, then times, alternately, ``mdwarf_zoo.from_pretrained`` with
the pinned commit (no network request; sha256 of every file; safe-mode load; metadata) and
plain ``keras.saving.load_model`` on the same cached snapshot folder. Target: within 1.1x.

Usage::

    python benchmarks/bench_from_pretrained.py [--repeats 7] [--model dense_ae_1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import keras

import mdwarf_zoo
from mdwarf_zoo.hub import download, sha256_file
from mdwarf_zoo.spectra.grid import MB24_GRID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hubserver import FakeHub  # noqa: E402  (test helper: the in-process hub)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", default="dense_ae_1024")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

    server = FakeHub().start()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = mdwarf_zoo.create_model(args.model, seed=0)
        folder = mdwarf_zoo.save_pretrained(model, scratch / "folder", grid=MB24_GRID)
        sha = server.commit_folder(f"bench/{args.model}", folder)
        kw = {"endpoint": server.endpoint, "cache_dir": scratch / "cache", "revision": sha}
        snapshot = download(f"bench/{args.model}", **kw).folder
        server.clear_log()

        zoo, plain, hashing = [], [], []
        mdwarf_zoo.from_pretrained(f"bench/{args.model}", **kw)  # warm-up (imports, graph)
        keras.saving.load_model(snapshot)
        for _ in range(args.repeats):
            start = time.perf_counter()
            keras.saving.load_model(snapshot)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            mdwarf_zoo.from_pretrained(f"bench/{args.model}", **kw)
            zoo.append(time.perf_counter() - start)
            start = time.perf_counter()
            for name in ("config.json", "metadata.json", "model.weights.h5", "README.md"):
                sha256_file(snapshot / name)
            hashing.append(time.perf_counter() - start)
        requests = server.log()
    server.stop()

    median_zoo, median_plain = statistics.median(zoo), statistics.median(plain)
    print(f"model: {args.model} ({model.count_params():,} parameters), repeats: {args.repeats}")
    print(f"keras.saving.load_model(snapshot): median {median_plain * 1e3:.0f} ms "
          f"(min {min(plain) * 1e3:.0f})")
    print(f"mdwarf_zoo.from_pretrained(pinned, warm cache): median {median_zoo * 1e3:.0f} ms "
          f"(min {min(zoo) * 1e3:.0f})")
    print(f"  of which sha256 of every file: median {statistics.median(hashing) * 1e3:.0f} ms")
    print(f"ratio: {median_zoo / median_plain:.3f} (target <= 1.1)")
    print(f"requests to the hub during the timed loads: {len(requests)}")


if __name__ == "__main__":
    main()
