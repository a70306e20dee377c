"""Benchmark: the observed / in-domain reconstruction-error ratio of an MB24-shaped autoencoder.

MB24's dense autoencoders reconstruct held-out synthetic (PHOENIX) spectra to an MSE of about
5e-5 and real CARMENES spectra to about 3e-3: the observed domain costs ~60x (issue 15). This
script measures the same ratio on the simulator:

1. synthetic spectra (``synthetic_spectra``, line-list seed 0) for ``--n-train`` MB24 labels
   (rows of MB24's ``ph_pars.npy``, drawn as in ``bench_transfer_simulated.py``), through the
   MB24 preprocessing (``Preprocessor(resolving_power=94600)``: window 8800-8835 A plus 5 A
   margins, GISIC-like continuum, clip to [0, 1]), the way ``mdwarf-zoo train`` builds a
   simulated set;
2. an MB24-shaped autoencoder (``create_model(--model)``, by default ``dense_ae_1024`` with its
   MB24 defaults: ReLU, contractive 1e-4, Adam 1e-4) trained with ``fit_resumable`` at batch
   128 on a (1 - ``--validation-split``) part; the other part is the held-out in-domain set;
3. ``--n-observed`` other stars (grid rows jittered by half a step, as in
   ``bench_transfer_simulated.py``) through ``observe()`` at S/N ``--snr`` with: the default
   ``GapConfig``; its noise only (``GapConfig.none()``); and a larger gap, the default with
   ``missing_lines`` raised to ``--large-missing-lines`` (a real-data check on VB 10 found the
   default gap ~3x too small in residual rms). Also their clean synthetic spectra, which
   separate the cost of unseen labels from the cost of the gap.

Each row gives the reconstruction MSE, its excess over and ratio to the in-domain MSE, and the
MSE of the gap itself (observed minus the clean synthetic spectrum of the same star, no
autoencoder). The clean spectrum lies on the synthetic domain, so an autoencoder that mapped
each spectrum to its nearest synthetic one would leave at most that much. The ratio depends on
how well the autoencoder is trained: the in-domain MSE falls with more spectra and epochs while
the gap does not, so a short run understates the ratio that a converged one would show.

Run: python benchmarks/bench_reconstruction_ratio.py [--n-train 8000] [--epochs 60]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_transfer_simulated import DEFAULT_LABELS, JITTER, grid_labels

# MB24 (A&A 687, A205): held-out synthetic vs real CARMENES reconstruction MSE.
MB24_IN_DOMAIN, MB24_OBSERVED = 5e-5, 3e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument(
        "--n-train",
        type=int,
        default=8000,
        help="synthetic spectra, split into training and held-out in-domain",
    )
    parser.add_argument("--validation-split", type=float, default=0.3, help="MB24: 0.3")
    parser.add_argument("--n-observed", type=int, default=500)
    parser.add_argument("--model", default="dense_ae_1024", help="a registered autoencoder")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128, help="MB24: 128")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Adam learning rate; default the model's (dense_ae_*: 1e-4, MB24)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="e.g. mixed_bfloat16 (faster on AMX CPUs; MB24 trained in float32)",
    )
    parser.add_argument("--snr", type=float, default=150.0)
    parser.add_argument(
        "--large-missing-lines",
        type=int,
        default=120,
        help="missing_lines of the larger gap (default gap: 10; 120 gives a gap "
        "rms of ~0.13, VB 10's against PHOENIX)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import mdwarf_zoo
    from mdwarf_zoo.diagnostics import reconstruction_mse
    from mdwarf_zoo.spectra.grid import WavelengthGrid
    from mdwarf_zoo.spectra.preprocess import Preprocessor
    from mdwarf_zoo.spectra.simulate import GapConfig, observe, synthetic_spectra
    from mdwarf_zoo.training.loop import determinism, fit_resumable, split_indices

    resolving_power = 94600.0
    preprocessor = Preprocessor(resolving_power=resolving_power)
    # The continuum fit needs the margins: simulate window + margins, then finish().
    span = WavelengthGrid(*preprocessor.span, preprocessor.grid.step)

    def prepared(flux: np.ndarray) -> np.ndarray:
        return np.stack([preprocessor.finish(span.wavelength, row)[0] for row in flux]).astype(
            np.float32
        )

    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    syn_labels = grid_labels(args.n_train, rng, args.labels)
    obs_labels = grid_labels(args.n_observed, rng, args.labels)
    obs_labels = obs_labels + rng.uniform(-1, 1, obs_labels.shape) * JITTER
    simulate = {"grid": span, "resolving_power": resolving_power, "workers": args.workers}
    synthetic = prepared(synthetic_spectra(syn_labels, **simulate))
    clean = synthetic_spectra(obs_labels, **simulate)
    default, none = GapConfig(), GapConfig.none()
    larger = replace(default, missing_lines=args.large_missing_lines)
    gaps = {
        "observed, default gap": default,
        "observed, noise only (GapConfig.none())": none,
        f"observed, default gap with missing_lines {larger.missing_lines}": larger,
    }
    clean_prepared = prepared(clean)
    observed = {
        name: prepared(
            observe(clean, obs_labels, snr=args.snr, seed=args.seed + 1, gap=gap, **simulate)
        )
        for name, gap in gaps.items()
    }
    simulate_time = time.perf_counter() - started

    train, held_out = split_indices(len(synthetic), args.validation_split, args.seed)
    determinism(args.seed)
    options = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    model = mdwarf_zoo.create_model(
        args.model,
        input_length=synthetic.shape[1],
        seed=args.seed,
        precision=args.precision,
        **options,
    )
    started = time.perf_counter()
    history = fit_resumable(
        model,
        synthetic[train],
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint=None,
        validation=(synthetic[held_out], None),
        progress=False,
    )
    train_time = time.perf_counter() - started

    in_domain = reconstruction_mse(model, synthetic[held_out])
    rows = [
        ("synthetic, held out (in-domain)", in_domain, None),
        (
            "synthetic, the observed stars' labels, no gap, no noise",
            reconstruction_mse(model, clean_prepared),
            0.0,
        ),
    ]
    rows += [
        (name, reconstruction_mse(model, flux), float(np.mean((flux - clean_prepared) ** 2)))
        for name, flux in observed.items()
    ]

    learning_rate = float(model.optimizer.learning_rate.numpy())
    print(
        f"{args.model} ({model.count_params():,} parameters, Adam {learning_rate:g}, "
        f"{args.precision or 'float32'}), {len(train)} training / {len(held_out)} held-out "
        f"synthetic spectra, {args.epochs} epochs at batch {args.batch_size}; "
        f"{args.n_observed} observed stars at S/N {args.snr:g}; seed {args.seed}"
    )
    print(
        f"loss {history[-1]['loss']:.3g}, val_loss {history[-1]['val_loss']:.3g} (with the "
        f"penalties); simulate {simulate_time:.0f} s, train {train_time:.0f} s on "
        f"{os.cpu_count()} cores\n"
    )
    print(
        "| spectra | reconstruction MSE | minus in-domain | / in-domain "
        "| gap MSE (rms), observed - clean |"
    )
    print("|---|---|---|---|---|")
    for name, mse, gap_mse in rows:
        gap_cell = "-" if gap_mse is None else f"{gap_mse:.3g} ({np.sqrt(gap_mse):.3f})"
        print(
            f"| {name} | {mse:.3g} | {mse - in_domain:+.3g} | {mse / in_domain:.2f}x | {gap_cell} |"
        )
    print(
        f"| MB24: PHOENIX held out -> CARMENES | {MB24_IN_DOMAIN:.0e} -> {MB24_OBSERVED:.0e} | "
        f"{MB24_OBSERVED - MB24_IN_DOMAIN:+.3g} | {MB24_OBSERVED / MB24_IN_DOMAIN:.0f}x | - |"
    )


if __name__ == "__main__":
    main()
