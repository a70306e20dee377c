"""Benchmark: does deep transfer learning close the simulator's synthetic gap? (issue 6)

On the spectrum simulator (``mdwarf_zoo.spectra.simulate``), where the truth is known:

1. synthetic training spectra for MB24-like labels (rows of MB24's ``ph_pars.npy`` when the
   shared data folder is present, else draws on the same grids);
2. "observed" spectra for other labels (grid rows jittered by half a step) through
   ``observe()`` at S/N 150 with the default gap knobs; both domains clipped to [0, 1];
3. dense MB24-shaped autoencoders (``DenseAutoencoder``, widths ``mb24_widths(--width)``,
   32-d latent) trained on the synthetic spectra; by default ELU without the contractive term
   for 120 epochs, whose latents carry far more of the labels at this small size than MB24's
   ReLU + contractive 1e-4 (``--ae-activation relu --ae-contractive 1e-4``);
4. the MB24 pipeline: ``transfer(freeze=5)`` on the observed spectra (learning rate 1e-4,
   MB24's; ``--transfer-modes`` adds a row per other mode of ``transfer()``, ``anchored`` and
   ``decoder_only`` by default, and the drift of the synthetic latents of each is printed and
   kept in ``--json``), latent CNNs per
   parameter and seed on the synthetic latents (standardised per dimension unless
   ``--no-standardize-latents``, which is MB24), best-K ensemble, KDE mode and errors
   (``--error-model`` for the rows: MB24's P16/P84 ``spread``, ``spread+validation`` with
   the regressors' validation rms added in quadrature, or ``spread+validation+gap`` with the
   domain-gap scale too; coverage is printed for every model, the gap model three times: with
   the real-star prior ``GAP_PRIOR``, with the gap ``measure_gap`` measures on
   ``--gap-twins`` held-out synthetic stars and their simulated observed twins, and with that
   gap and the coverage factor ``coverage_scale`` measures on the same twins, and with that gap
   and the factor in ``--error-scale-bins`` bins of the estimate (``coverage_profile``), the
   errors a recipe's pipeline gives by default; coverage is also printed in five equal-count
   bins of the true value; the twins are other stars than the scored observed
   ones: no twin sits at a scored star's grid row, and their jitter and noise have seeds of
   their own);
5. the same autoencoders and regressors **without** transfer (observed spectra through the
   original encoder); with ``--fine-tuned-variant`` the other latent choice (synthetic spectra
   through the fine-tuned encoder too, with regressors trained on those latents); and the
   direct ``spectrum_cnn`` (no autoencoder) trained on the synthetic spectra.

Reports per parameter the bias (mean predicted - true) and rms on the observed domain, the
fraction of true values inside the +-1 sigma errors (coverage), and the domain-gap diagnostics
of the first autoencoder. Two floors (``--floors``, on by default): the same ensemble on the same
observed stars and noise *without* any gap, and every row after an oracle calibration (each
parameter refitted as a quadratic function of the four estimates with the true labels,
5-fold): no unsupervised transfer or alignment can beat a calibration that knows the truth.
``--gap-budget`` (on by default) runs the no-transfer ensemble with one gap knob at a time and
reports what each source of the gap costs, before and after that oracle calibration.
Issue 6 targets: with transfer Teff rms <= 30 K, log g <= 0.05,
[M/H] <= 0.05 dex, at most half the error of no transfer, coverage 68 +- 5 % (issue 16: with
the gap and the coverage factor measured on the twins).

Run: python benchmarks/bench_transfer_simulated.py [--n-synthetic 3000] [--n-observed 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT_LABELS = (
    Path(__file__).resolve().parents[2]
    / "shared/data/tables/carmenes_params/masbuitrago2024_phoenix_grid_params_ph_pars.npy"
)
PARAMETERS = ("teff", "logg", "mh", "vsini")
UNITS = ("K", "dex", "dex", "km/s")
# Half the MB24 grid steps (Teff 25 K, log g 0.1, [M/H] 0.1): observed labels sit off-grid.
JITTER = np.array([12.5, 0.05, 0.05, 0.0])


def grid_labels(n: int, rng: np.random.Generator, path: Path,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` label rows of MB24's grid (rows of ``path``, else draws on the same grids), none
    equal to a row of ``exclude``."""
    taken = set() if exclude is None else {tuple(row) for row in np.asarray(exclude, float)}
    if path.is_file():
        table = np.load(path)
        free = np.flatnonzero([tuple(row) not in taken for row in table.astype(float)])
        return table[rng.choice(free, n, replace=False)]
    rows = np.empty((0, 4))
    while len(rows) < n:
        draw = np.column_stack([
            rng.choice(np.arange(2325, 4476, 25), n),
            rng.choice(np.round(np.arange(4.7, 5.31, 0.1), 1), n),
            rng.choice(np.round(np.arange(-1.0, 0.61, 0.1), 1), n),
            rng.choice([1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30], n),
        ]).astype(float)
        rows = np.vstack([rows, [row for row in draw if tuple(row) not in taken]])
    return rows[:n]


def scores(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    difference = predicted - true
    return {"bias": float(difference.mean()), "rms": float(np.sqrt(np.mean(difference**2)))}


def oracle_calibration(values: np.ndarray, truth: np.ndarray, folds: int = 5) -> np.ndarray:
    """Cross-validated quadratic recalibration of the estimates with the *true* labels.

    Each parameter is refitted as a quadratic polynomial (all cross terms) of the four
    estimates, on 4/5 of the stars, and applied to the other fifth. No unsupervised transfer or
    alignment can do better than a calibration that knows the truth, so this is the floor of
    any label-space correction of these estimates (it cannot be used on real stars).
    """
    z = (values - values.mean(axis=0)) / np.where(values.std(axis=0) > 0, values.std(axis=0), 1)
    rows, columns = np.triu_indices(z.shape[1])
    design = np.hstack([np.ones((len(z), 1)), z, z[:, rows] * z[:, columns]])
    fold = np.arange(len(z)) % folds
    out = np.empty_like(truth, dtype=float)
    for k in range(folds):
        fit = fold != k
        gram = design[fit].T @ design[fit] + 1e-3 * np.eye(design.shape[1])
        out[~fit] = design[~fit] @ np.linalg.solve(gram, design[fit].T @ truth[fit])
    return out


def numeric_columns(table, prefix: str) -> dict[str, np.ndarray]:
    """The numeric columns of an estimate table as plain arrays, keyed ``prefix/column``."""
    return {f"{prefix}/{key}": np.asarray(table[key]) for key in table.colnames
            if np.asarray(table[key]).dtype.kind in "fiu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--n-synthetic", type=int, default=3000)
    parser.add_argument("--n-observed", type=int, default=300)
    parser.add_argument("--autoencoders", type=int, default=2)
    parser.add_argument("--width", type=int, default=256, help="first encoder width n")
    parser.add_argument("--ae-epochs", type=int, default=120)
    parser.add_argument("--ae-learning-rate", type=float, default=1e-3)
    parser.add_argument("--ae-activation", default="elu",
                        help="activation of the autoencoders (MB24: relu)")
    parser.add_argument("--ae-contractive", type=float, default=0.0,
                        help="contractive weight of the bottleneck (MB24: 1e-4)")
    parser.add_argument("--ae-contractive-form", default="activation",
                        choices=("activation", "mb24"),
                        help="mb24: the contractive penalty as MB24's script wrote it")
    parser.add_argument("--normalisation", default="gisic", choices=("gisic", "none"),
                        help="gisic: both domains through the Preprocessor's upper-envelope "
                        "continuum normalisation before clipping to [0, 1] (as the package "
                        "prepares spectra); none: clipped only (the rows before issue 15)")
    parser.add_argument("--transfer-epochs", type=int, default=60)
    parser.add_argument("--transfer-learning-rate", type=float, default=1e-4,
                        help="MB24: 1e-4 (the rows before issue 16 used the model's 1e-3)")
    parser.add_argument("--transfer-modes", nargs="*", default=["anchored", "decoder_only"],
                        help="transfer modes besides MB24's, each a row (issue 16)")
    parser.add_argument("--seeds", type=int, default=3, help="regressor seeds per autoencoder")
    parser.add_argument("--regressor-epochs", type=int, default=80)
    parser.add_argument("--regressor-batch-size", type=int, default=32,
                        help="MB24: 32 (Keras' default in their cnn_training.py); the rows "
                        "before issue 15 used 128")
    parser.add_argument("--regressor-learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--standardize-latents", action=argparse.BooleanOptionalAction,
                        default=True, help="standardise latents before the regressors (not MB24)")
    parser.add_argument("--error-model", default="spread+validation+gap",
                        choices=("spread", "spread+validation", "spread+validation+gap"),
                        help="ensemble errors of the rows (coverage is reported for all)")
    parser.add_argument("--gap-twins", type=int, default=300,
                        help="held-out synthetic stars whose observed twins measure the gap")
    parser.add_argument("--error-scale-bins", type=int, default=5,
                        help="bins of the estimate of the coverage factor's profile "
                        "(coverage_profile; the recipes' [ensemble] error_scale_bins)")
    parser.add_argument("--fine-tuned-variant", action=argparse.BooleanOptionalAction,
                        default=False, help="also train regressors on fine-tuned synthetic latents")
    parser.add_argument("--latent-alignment", nargs="*", default=["coral", "coral_neighbours"],
                        help="extra rows: observed latents aligned with align_latents(method)")
    parser.add_argument("--alignment-resamples", type=int, default=30,
                        help="bootstrap draws of the alignment whose per-star spread is added to "
                             "the errors of the aligned rows (0: not)")
    parser.add_argument("--observed-teff-max", type=float, default=None,
                        help="draw the observed stars only up to this Teff (a population shift)")
    parser.add_argument("--floors", action=argparse.BooleanOptionalAction, default=True,
                        help="also report the floors: the ensemble on the observed stars without "
                             "any gap (same noise), and each row after an oracle calibration "
                             "fitted with the true labels")
    parser.add_argument("--gap-budget", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the no-transfer ensemble on the observed stars with one "
                             "gap knob at a time (the others neutral, same noise): what each "
                             "source of the gap costs, before and after an oracle calibration")
    parser.add_argument("--cnn-epochs", type=int, default=30)
    parser.add_argument("--snr", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write the per-star numbers here (.npz): the twins' labels, "
                        "estimates and errors, and each row's estimates and errors on the "
                        "scored stars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import keras

    import mdwarf_zoo
    from mdwarf_zoo.diagnostics import domain_gap_report
    from mdwarf_zoo.models import DenseAutoencoder, mb24_widths
    from mdwarf_zoo.pipeline import (
        LabelScaler,
        align_observed_latents,
        alignment_uncertainty,
        coverage_profile,
        coverage_scale,
        encode,
        measure_gap,
        predict_ensemble,
        train_regressors,
    )
    from mdwarf_zoo.pipeline.ensemble import ensemble_table
    from mdwarf_zoo.spectra.grid import MB24_GRID
    from mdwarf_zoo.spectra.preprocess import continuum_normalize
    from mdwarf_zoo.spectra.preprocess import scale as clip_scale

    def scale(flux: np.ndarray) -> np.ndarray:
        """Both domains as the package prepares spectra: continuum, then [0, 1]."""
        if args.normalisation == "gisic":
            flux = np.stack([continuum_normalize(MB24_GRID.wavelength, row)[0] for row in flux])
        return clip_scale(flux)
    from mdwarf_zoo.spectra.simulate import GapConfig, observe, synthetic_spectra

    started = time.time()
    rng = np.random.default_rng(args.seed)
    syn_labels = grid_labels(args.n_synthetic, rng, args.labels)
    if args.observed_teff_max is None:
        obs_labels = grid_labels(args.n_observed, rng, args.labels)
    else:  # an observed population unlike the synthetic set: only stars up to this Teff
        pool = grid_labels(20 * args.n_observed, rng, args.labels)
        pool = pool[pool[:, 0] <= args.observed_teff_max]
        if len(pool) < args.n_observed:
            raise SystemExit(f"--observed-teff-max {args.observed_teff_max}: only {len(pool)} "
                             f"label rows, {args.n_observed} needed")
        obs_labels = pool[: args.n_observed]
    obs_grid_rows = obs_labels  # before the jitter: the twins of the gap avoid these rows
    obs_labels = obs_labels + rng.uniform(-1, 1, obs_labels.shape) * JITTER
    print(f"simulating {len(syn_labels)} synthetic + {len(obs_labels)} observed spectra ...",
          flush=True)
    synthetic = scale(synthetic_spectra(syn_labels, workers=args.workers)).astype("float32")
    clipped = float(np.mean(synthetic >= 1.0))
    observed_clean = synthetic_spectra(obs_labels, workers=args.workers)
    observed = scale(observe(observed_clean, obs_labels, snr=args.snr, seed=args.seed + 1,
                             workers=args.workers)).astype("float32")
    # The same stars and noise without any gap: what the pipeline could do if the synthetic
    # spectra were right (the floor set by the autoencoders and regressors themselves).
    observed_nogap = scale(observe(observed_clean, obs_labels, snr=args.snr, seed=args.seed + 1,
                                   workers=args.workers, gap=GapConfig.none())).astype("float32")
    t_sim = time.time() - started
    print(f"pixels at the clip (>= 1): synthetic {clipped:.1%}, observed "
          f"{float(np.mean(observed >= 1.0)):.1%} ({args.normalisation})", flush=True)

    autoencoders = {}
    for i in range(args.autoencoders):
        model = DenseAutoencoder(widths=mb24_widths(args.width), latent_dim=32, seed=i,
                                 learning_rate=args.ae_learning_rate,
                                 activation=args.ae_activation, contractive=args.ae_contractive,
                                 contractive_form=args.ae_contractive_form,
                                 name=f"dense_ae_{i}")
        keras.utils.set_random_seed(i)
        history = model.fit(synthetic, synthetic, validation_split=0.3, epochs=args.ae_epochs,
                            batch_size=128, verbose=0)
        autoencoders[model.name] = model
        print(f"{model.name}: synthetic val MSE {history.history['val_loss'][-1]:.3g}",
              flush=True)
    t_ae = time.time() - started - t_sim

    scaler = LabelScaler.fit(syn_labels)
    regressors, with_latents, without_latents, tuned_models = [], {}, {}, {}
    nogap_latents = {}
    synthetic_latents = {}
    both_regressors = []
    regressor_options = {
        "seeds": range(args.seeds),
        "epochs": args.regressor_epochs,
        "batch_size": args.regressor_batch_size,
        "patience": args.patience,
        "scaler": scaler,
        "standardize_latents": args.standardize_latents,
        "progress": False,
        "regressor_kwargs": {p: {"learning_rate": args.regressor_learning_rate}
                             for p in PARAMETERS},
    }
    mode_latents: dict[str, dict[str, np.ndarray]] = {mode: {} for mode in args.transfer_modes}
    drift: dict[str, list[float]] = {mode: [] for mode in ["mb24", *args.transfer_modes]}
    transfer_options = {"epochs": args.transfer_epochs, "batch_size": 128, "seed": args.seed,
                        "learning_rate": args.transfer_learning_rate,
                        "anchor_spectra": synthetic}
    for name, model in autoencoders.items():
        tuned = mdwarf_zoo.transfer(model, observed, freeze=model.default_freeze,
                                    **transfer_options)
        drift["mb24"].append(tuned.transfer_info["latent_drift"])
        for mode in args.transfer_modes:
            other = mdwarf_zoo.transfer(model, observed, freeze=model.default_freeze, mode=mode,
                                        **transfer_options)
            drift[mode].append(other.transfer_info["latent_drift"])
            mode_latents[mode][name] = encode(other, observed)
        tuned_models[name] = tuned
        syn_latents = synthetic_latents[name] = encode(model, synthetic)
        with_latents[name] = encode(tuned, observed)
        without_latents[name] = encode(model, observed)
        nogap_latents[name] = encode(model, observed_nogap)
        regressors += train_regressors(syn_latents, syn_labels, autoencoder=name,
                                       **regressor_options)
        if args.fine_tuned_variant:
            both_regressors += train_regressors(encode(tuned, synthetic), syn_labels,
                                                autoencoder=name, **regressor_options)
    keep = max(1, round(len(regressors) / len(PARAMETERS) * 80 / 130))
    t_pipeline = time.time() - started - t_sim - t_ae

    results: dict[str, dict] = {}
    in_domain = {
        label: {p: float(np.median([r.validation_rms for r in regs if r.parameter == p]))
                for p in PARAMETERS}
        for label, regs in (("original encoder", regressors),
                            ("fine-tuned encoder", both_regressors)) if regs
    }
    variants = [("with transfer", regressors, with_latents, None),
                ("without transfer", regressors, without_latents, None)]
    variants += [(f"with transfer, mode {mode}", regressors, latents, None)
                 for mode, latents in mode_latents.items()]
    print("latent drift of the synthetic latents (sigma), per autoencoder:",
          {mode: [round(v, 3) for v in values] for mode, values in drift.items()}, flush=True)
    if args.fine_tuned_variant:
        variants.append(("transfer, synthetic via fine-tuned", both_regressors, with_latents,
                         None))
    # Not MB24: align the observed latents (pipeline/alignment.py).
    for method in args.latent_alignment:
        for base, observed_latents in (("without transfer", without_latents),
                                       ("with transfer", with_latents)):
            aligned = align_observed_latents(regressors, observed_latents, synthetic_latents,
                                             syn_labels, method=method)
            extra = None
            if args.alignment_resamples > 0:  # the alignment's own bootstrap spread
                extra = alignment_uncertainty(regressors, observed_latents, synthetic_latents,
                                              syn_labels, method=method, keep=keep,
                                              resamples=args.alignment_resamples)
            variants.append((f"{base} + {method}", regressors, aligned, extra))
    if args.floors:
        variants.append(("no gap (same stars and noise), no transfer", regressors, nogap_latents,
                         None))
    # The gap scale and the coverage scale measured on the simulator: held-out synthetic stars
    # and their observed twins through the no-transfer ensemble (what the gap model's ``gap=``
    # and ``error_scale=`` would hold). The twins are other stars than the scored observed
    # ones: no twin sits at a scored star's grid row, and jitter and noise have seeds of
    # their own, so the scale is not fitted on the stars whose coverage it is judged by.
    twin_labels = grid_labels(args.gap_twins, np.random.default_rng(args.seed + 7), args.labels,
                              exclude=obs_grid_rows)
    twin_labels = twin_labels + np.random.default_rng(args.seed + 8).uniform(
        -1, 1, twin_labels.shape) * JITTER
    regressor_rms = {p: [r.validation_rms for r in regressors if r.parameter == p]
                     for p in PARAMETERS}
    twin_tables = []

    def no_transfer(flux: np.ndarray) -> dict[str, np.ndarray]:
        latents = {name: encode(model, scale(flux).astype("float32"))
                   for name, model in autoencoders.items()}
        predictions, mse = predict_ensemble(regressors, latents)
        table = ensemble_table(predictions, validation_mse=mse, keep=keep,
                               error_model="spread+validation", validation_rms=regressor_rms)
        twin_tables.append(table)
        return {p: np.asarray(table[p]) for p in PARAMETERS}

    measured_gap = measure_gap(no_transfer, synthetic_spectra(twin_labels, workers=args.workers),
                               twin_labels, snr=args.snr, seed=args.seed + 9)
    # measure_gap predicts the synthetic spectra, then their observed twins: the last table
    # holds the twins' estimates, whose default errors add the measured gap in quadrature.
    twins = twin_tables[-1]
    error_scale, error_profile = {}, {}
    for j, p in enumerate(PARAMETERS):
        sigma = np.hypot([twins[f"{p}_err_lower"], twins[f"{p}_err_upper"]], measured_gap[p])
        residuals = np.asarray(twins[p]) - twin_labels[:, j]
        error_scale[p] = coverage_scale(residuals, sigma)
        error_profile[p] = coverage_profile(np.asarray(twins[p]), residuals, sigma,
                                            bins=args.error_scale_bins)
    print("gap measured on the simulator: " + ", ".join(
        f"{p} {v:.3g}" for p, v in measured_gap.items()) + "; error scale on the same twins: "
        + ", ".join(f"{p} {v:.3g}" for p, v in error_scale.items()) + "; in bins of the "
        "estimate: " + "; ".join(
            f"{p} " + "/".join(f"{c:.3g}" for c in v["factors"]) + " (edges "
            + "/".join(f"{e:.4g}" for e in v["edges"]) + ")" for p, v in error_profile.items()),
        flush=True)
    error_models = {"spread": {"error_model": "spread"},
                    "spread+validation": {"error_model": "spread+validation"},
                    "gap prior": {"error_model": "spread+validation+gap"},
                    "gap measured": {"error_model": "spread+validation+gap",
                                     "gap": measured_gap},
                    "gap measured + scale": {"error_model": "spread+validation+gap",
                                             "gap": measured_gap, "error_scale": error_scale,
                                             "error_scale_source": "the gap's twins"},
                    "gap measured + profile": {"error_model": "spread+validation+gap",
                                               "gap": measured_gap,
                                               "error_scale": error_profile,
                                               "error_scale_source": "the gap's twins, binned"}}
    row_model = {"spread": "spread", "spread+validation": "spread+validation",
                 "spread+validation+gap": "gap measured + profile"}[args.error_model]
    per_star = {"twin_labels": twin_labels, "observed_labels": obs_labels,
                **numeric_columns(twin_tables[0], "twins_synthetic"),
                **numeric_columns(twins, "twins")}
    for label, regs, obs_latents, extra in variants:
        predictions, mse = predict_ensemble(regs, obs_latents)
        rms = {p: [r.validation_rms for r in regs if r.parameter == p] for p in PARAMETERS}
        tables = {name: ensemble_table(predictions, validation_mse=mse, keep=keep,
                                       validation_rms=rms, alignment_error=extra, **options)
                  for name, options in error_models.items()}
        table = tables[row_model]
        for name, other in tables.items():
            per_star.update(numeric_columns(other, f"{label}/{name}"))
        entry = {}
        for j, p in enumerate(PARAMETERS):
            value = np.asarray(table[p])
            entry[p] = {**scores(value, obs_labels[:, j]),
                        "median_err_lower": float(np.median(table[f"{p}_err_lower"])),
                        "median_err_upper": float(np.median(table[f"{p}_err_upper"]))}
            for name, other in tables.items():
                low = value - np.asarray(other[f"{p}_err_lower"])
                high = value + np.asarray(other[f"{p}_err_upper"])
                inside = (obs_labels[:, j] >= low) & (obs_labels[:, j] <= high)
                entry[p][f"coverage {name}"] = float(inside.mean())
                # ... and in five equal-count bins of the true value (conditional coverage).
                parts = np.array_split(np.argsort(obs_labels[:, j], kind="stable"), 5)
                entry[p][f"coverage by truth {name}"] = [float(inside[k].mean()) for k in parts]
            entry[p]["coverage"] = entry[p][f"coverage {row_model}"]
        if args.floors:  # the best any calibration of these values could do (needs the truth)
            values = np.column_stack([np.asarray(table[p]) for p in PARAMETERS])
            calibrated = oracle_calibration(values, obs_labels)
            for j, p in enumerate(PARAMETERS):
                entry[p]["oracle_calibrated_rms"] = scores(calibrated[:, j],
                                                           obs_labels[:, j])["rms"]
        results[label] = entry

    budget: dict[str, dict[str, dict[str, float]]] = {}
    if args.gap_budget:  # one knob at a time, everything else as in the "no gap" row
        neutral, default = GapConfig.none(), GapConfig()
        knobs = [name for name, value in default.to_dict().items()
                 if name != "line_list_seed" and value != neutral.to_dict()[name]]
        for knob in ["none", *knobs, "all"]:
            gap_config = {"none": neutral, "all": default}.get(knob) or replace(
                neutral, **{knob: getattr(default, knob)})
            flux = scale(observe(observed_clean, obs_labels, snr=args.snr, seed=args.seed + 1,
                                 workers=args.workers, gap=gap_config)).astype("float32")
            predictions, mse = predict_ensemble(
                regressors, {name: encode(model, flux) for name, model in autoencoders.items()})
            table = ensemble_table(predictions, validation_mse=mse, keep=keep)
            values = np.column_stack([np.asarray(table[p]) for p in PARAMETERS])
            calibrated = oracle_calibration(values, obs_labels)
            budget[knob] = {p: {**scores(values[:, j], obs_labels[:, j]),
                                "oracle_calibrated_rms": scores(calibrated[:, j],
                                                                obs_labels[:, j])["rms"]}
                            for j, p in enumerate(PARAMETERS)}

    # The direct spectrum CNN, trained on synthetic spectra (standardised labels), no transfer.
    keras.utils.set_random_seed(args.seed)
    cnn = mdwarf_zoo.create_model("spectrum_cnn", seed=args.seed)
    cnn.fit(synthetic, scaler.transform(syn_labels).astype("float32"), validation_split=0.3,
            epochs=args.cnn_epochs, batch_size=64, verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)])
    direct = scaler.inverse_transform(cnn.predict(observed, verbose=0))
    results["spectrum_cnn"] = {
        p: scores(direct[:, j], obs_labels[:, j]) for j, p in enumerate(PARAMETERS)
    }
    first = next(iter(autoencoders))
    gap = domain_gap_report(autoencoders[first], tuned_models[first], synthetic, observed)
    gap = {k: v for k, v in gap.items() if np.ndim(v) == 0}
    total = time.time() - started

    print(f"\n{len(syn_labels)} synthetic / {len(obs_labels)} observed spectra, S/N {args.snr:g}; "
          f"{args.autoencoders} autoencoders (n={args.width}, {args.ae_activation}, contractive "
          f"{args.ae_contractive:g}, {args.ae_epochs} epochs), transfer {args.transfer_epochs} "
          f"epochs, {args.seeds} seeds -> {len(regressors) // 4} regressors per parameter, best "
          f"{keep} kept; latents {'standardised' if args.standardize_latents else 'raw'}, "
          f"errors {row_model}")
    print(f"time: simulate {t_sim:.0f} s, autoencoders {t_ae:.0f} s, transfer + regressors "
          f"{t_pipeline:.0f} s, total {total:.0f} s\n")
    header = [f"{p} bias / rms ({u})" for p, u in zip(PARAMETERS, UNITS, strict=True)]
    print("| method | " + " | ".join(header) + " |")
    print("|---|" + "---|" * 4)
    for label, entry in results.items():
        print(f"| {label} | " + " | ".join(
            f"{entry[p]['bias']:+.3g} / {entry[p]['rms']:.3g}" for p in PARAMETERS) + " |")
    for label, entry in in_domain.items():
        print(f"synthetic validation rms, regressors on the {label} latents (median): " +
              ", ".join(f"{p} {v:.3g}" for p, v in entry.items()))
    for label, *_ in variants:
        for name in error_models:
            print(f"coverage {label} ({name}): " + ", ".join(
                f"{p} {100 * results[label][p][f'coverage {name}']:.0f} %" for p in PARAMETERS))
        for name in ("gap measured + scale", "gap measured + profile"):
            print(f"coverage {label} ({name}) in 5 bins of the true value: " + "; ".join(
                f"{p} " + "/".join(f"{100 * v:.0f}" for v in
                                   results[label][p][f"coverage by truth {name}"])
                for p in PARAMETERS))
        print(f"median errors {label}: " + ", ".join(
            f"{p} -{results[label][p]['median_err_lower']:.3g}/"
            f"+{results[label][p]['median_err_upper']:.3g}" for p in PARAMETERS))
    if args.floors:
        print("\nrms after an oracle calibration with the true labels (5-fold, quadratic; the "
              "floor of any label-space correction):")
        for label, *_ in variants:
            print(f"| {label} | " + " | ".join(
                f"{results[label][p]['oracle_calibrated_rms']:.3g}" for p in PARAMETERS) + " |")
    if budget:
        print("\ngap budget, no transfer, one knob at a time at the default value (rms, then "
              "rms after the oracle calibration):")
        print("| knob | " + " | ".join(PARAMETERS) + " |")
        print("|---|" + "---|" * 4)
        for knob, entry in budget.items():
            print(f"| {knob} | " + " | ".join(
                f"{entry[p]['rms']:.3g} -> {entry[p]['oracle_calibrated_rms']:.3g}"
                for p in PARAMETERS) + " |")
    print("gap: " + ", ".join(f"{k} {v:.3g}" for k, v in gap.items()))
    with_t, without_t = results["with transfer"], results["without transfer"]
    checks = {
        "teff rms <= 30 K": with_t["teff"]["rms"] <= 30,
        "logg rms <= 0.05": with_t["logg"]["rms"] <= 0.05,
        "mh rms <= 0.05": with_t["mh"]["rms"] <= 0.05,
        "<= half the no-transfer rms (teff, logg, mh)": all(
            with_t[p]["rms"] <= 0.5 * without_t[p]["rms"] for p in ("teff", "logg", "mh")),
        "coverage 63-73 % (teff, logg, mh, vsini)": all(
            0.63 <= with_t[p]["coverage"] <= 0.73 for p in PARAMETERS),
    }
    for label in ("without transfer", *(f"with transfer, mode {m}" for m in args.transfer_modes)):
        for name in ("gap measured", "gap measured + scale", "gap measured + profile"):
            checks[f"coverage 63-73 % {label} ({name})"] = all(
                0.63 <= results[label][p][f"coverage {name}"] <= 0.73 for p in PARAMETERS)
    for name, ok in checks.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    if args.dump:
        np.savez_compressed(args.dump, **per_star)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results, "gap": gap, "checks": checks,
                                         "gap_budget": budget, "measured_gap": measured_gap,
                                         "error_scale": error_scale,
                                         "error_profile": error_profile,
                                         "in_domain_rms": in_domain,
                                         "latent_drift": drift,
                                         "seconds": total}, indent=2))


if __name__ == "__main__":
    main()
