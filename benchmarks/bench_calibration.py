"""Benchmark: how many stars with known parameters does the calibration need? (issue 16)

On the spectrum simulator, where the truth is known:

1. ``--n-stars`` "observed" stars (default 500): labels drawn uniformly inside the bundled demo
   pipeline's training ranges (the quickstart recipe: Teff 2600-4000 K, log g 4.7-5.3, [M/H]
   -0.6..+0.6, v sin i 1.5-10 km/s), simulator spectra on the demo's window plus margin,
   ``observe()`` with the default gap at S/N 150 (seed ``--seed``), the demo's preprocessing;
2. the demo pipeline ``mb24_quickstart_demo`` estimates them twice: through its
   synthetic-trained encoder (no transfer) and through its fine-tuned encoder (the transfer
   that travels with the demo), both with the pipeline's default error model (for the demo
   ``spread+validation+gap`` with its measured gap and coverage factor, a profile in bins of
   the estimate); ``--model FOLDER`` estimates with another pipeline instead (a bundle or a
   run folder of a recipe with the quickstart's ranges, e.g. ``mdwarf-zoo demo --out FOLDER``);
3. for N = 5, 10, 20, 50, 100 and ``--draws`` random draws each, N stars are the calibrators
   (``mdwarf_zoo.calibrate`` on the estimate table with their true labels) and every other
   star is the held-out test set; the calibration is applied to the test set and compared with
   the uncalibrated estimates of the same stars.

Reports per parameter, estimate and N the rms and bias (mean estimate - truth) on the test
stars and the coverage (fraction of true values inside [value - lower, value + upper]), as the
mean over draws (with the standard deviation of the rms over draws), which correction the
cross-validation chose, and the floor of any linear correction (least squares of each true
parameter on the four estimates over all the stars, in sample). Before any calibration it also
prints the coverage of the errors over all the stars and in five equal-count bins of the
estimate (does each range of estimates get honest errors, or only the population?). Issue 16
target: with 20 calibrators, at most half the no-transfer rms in Teff and [M/H].

Run: python benchmarks/bench_calibration.py [--n-stars 500] [--draws 20] [--model FOLDER]
     [--figure docs/calibration.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np
from astropy.table import Table

from mdwarf_zoo.labels import PARAMETER_UNITS, PARAMETERS
from mdwarf_zoo.pipeline.calibration import calibrate
from mdwarf_zoo.pipeline.pretrained import PretrainedPipeline, load_pipeline
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra

DEMO = "mb24_quickstart_demo"
#: The demo's training ranges (training_recipes/quickstart.toml).
RANGES = {"teff": (2600.0, 4000.0), "logg": (4.7, 5.3), "mh": (-0.6, 0.6), "vsini": (1.5, 10.0)}
SIZES = (5, 10, 20, 50, 100)


def simulate(pipeline: PretrainedPipeline, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    preprocessor = pipeline.preprocessor()
    low, high = preprocessor.span
    grid = WavelengthGrid(low, high, preprocessor.grid.step)
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(*RANGES[p], n) for p in PARAMETERS])
    flux = synthetic_spectra(labels, grid, seed=0, resolving_power=preprocessor.resolving_power,
                             workers=2)
    flux = observe(flux, labels, snr=150, seed=seed, grid=grid,
                   resolving_power=preprocessor.resolving_power, synthetic_seed=0, workers=2)
    flux = np.stack([preprocessor.finish(grid.wavelength, row)[0] for row in flux])
    return flux.astype(np.float32), labels


def estimates(pipeline: PretrainedPipeline, flux: np.ndarray, ids: list[str]) -> dict[str, Table]:
    # The demo's members carry a fine-tuned encoder, which predict() uses; a copy of the
    # manifest without it gives the synthetic-trained encoder's (no-transfer) estimates.
    manifest = json.loads(json.dumps(pipeline.manifest))
    for member in manifest["members"]:
        member["transferred"] = None
    synthetic_only = PretrainedPipeline(pipeline.folder, manifest)
    return {
        "no transfer": synthetic_only.predict(flux, ids, progress=False),
        "demo transfer": pipeline.predict(flux, ids, progress=False),
    }


def scores(table: Table, truth: np.ndarray, rows: np.ndarray) -> dict[str, dict[str, float]]:
    result = {}
    for j, p in enumerate(PARAMETERS):
        value = np.asarray(table[p])[rows]
        lower = np.asarray(table[f"{p}_err_lower"])[rows]
        upper = np.asarray(table[f"{p}_err_upper"])[rows]
        d = value - truth[rows, j]
        inside = (truth[rows, j] >= value - lower) & (truth[rows, j] <= value + upper)
        result[p] = {"rms": float(np.sqrt(np.mean(d**2))), "bias": float(np.mean(d)),
                     "coverage": float(np.mean(inside))}
    return result


def run(tables: dict[str, Table], truth: np.ndarray, draws: int, seed: int) -> list[dict]:
    n = len(truth)
    rows = []
    for estimate, table in tables.items():
        for size in SIZES:
            rng = np.random.default_rng([seed, size])
            per_draw = collections.defaultdict(list)
            kinds = collections.defaultdict(collections.Counter)
            for _ in range(draws):
                order = rng.permutation(n)
                train, test = np.sort(order[:size]), np.sort(order[size:])
                labels = Table({"id": np.asarray(table["id"])[train]})
                for j, p in enumerate(PARAMETERS):
                    labels[p] = truth[train, j]
                calibration = calibrate(table, None, labels)
                corrected = calibration.apply(table)
                before, after = scores(table, truth, test), scores(corrected, truth, test)
                for p in PARAMETERS:
                    per_draw[p].append((before[p], after[p]))
                    kinds[p][calibration.corrections[p].kind] += 1
            for p in PARAMETERS:
                pairs = per_draw[p]
                row = {"estimate": estimate, "n_calibrators": size, "parameter": p,
                       "draws": draws, "choices": dict(kinds[p])}
                for when, k in (("before", 0), ("after", 1)):
                    for metric in ("rms", "bias", "coverage"):
                        row[f"{metric}_{when}"] = float(np.mean([pr[k][metric] for pr in pairs]))
                    row[f"rms_{when}_std"] = float(np.std([pr[k]["rms"] for pr in pairs]))
                rows.append(row)
    return rows


def coverage_by_estimate(table: Table, truth: np.ndarray, bins: int = 5) -> dict[str, list]:
    """Per parameter: the coverage of all stars, then of ``bins`` equal-count bins of the
    estimate (lowest estimates first)."""
    result = {}
    for j, p in enumerate(PARAMETERS):
        value = np.asarray(table[p], dtype=float)
        inside = ((truth[:, j] >= value - np.asarray(table[f"{p}_err_lower"]))
                  & (truth[:, j] <= value + np.asarray(table[f"{p}_err_upper"])))
        order = np.argsort(value, kind="stable")
        result[p] = [float(inside.mean())] + [float(inside[part].mean())
                                              for part in np.array_split(order, bins)]
    return result


def linear_floor(table: Table, truth: np.ndarray) -> dict[str, float]:
    """rms of the best linear map of the four estimates onto each true parameter, fitted on
    all the stars (least squares, in sample): no correction of this family does better."""
    z = np.column_stack([np.ones(len(truth))] + [np.asarray(table[p]) for p in PARAMETERS])
    result = {}
    for j, p in enumerate(PARAMETERS):
        beta = np.linalg.lstsq(z, truth[:, j], rcond=None)[0]
        result[p] = float(np.sqrt(np.mean((z @ beta - truth[:, j]) ** 2)))
    return result


def figure(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(13, 6), sharex=True)
    colours = {"no transfer": "C0", "demo transfer": "C1"}
    for j, p in enumerate(PARAMETERS):
        for estimate, colour in colours.items():
            chosen = [r for r in rows if r["parameter"] == p and r["estimate"] == estimate]
            sizes = [r["n_calibrators"] for r in chosen]
            rms = np.array([r["rms_after"] for r in chosen])
            spread = np.array([r["rms_after_std"] for r in chosen])
            axes[0, j].errorbar(sizes, rms, spread, color=colour, marker="o", capsize=3,
                                label=f"{estimate}, calibrated")
            axes[0, j].axhline(chosen[0]["rms_before"], color=colour, ls="--",
                               label=f"{estimate}, uncalibrated")
            axes[1, j].plot(sizes, [r["coverage_after"] for r in chosen], color=colour,
                            marker="o")
            axes[1, j].axhline(chosen[0]["coverage_before"], color=colour, ls="--")
        no_transfer = [r for r in rows if r["parameter"] == p and r["estimate"] == "no transfer"]
        axes[0, j].axhline(0.5 * no_transfer[0]["rms_before"], color="k", ls=":", lw=1,
                           label="half the no-transfer rms")
        axes[1, j].axhline(0.68, color="k", ls=":", lw=1)
        axes[0, j].set_title(f"{p} ({PARAMETER_UNITS[p]})")
        axes[0, j].set_ylim(bottom=0)
        axes[1, j].set_ylim(0, 1)
        axes[1, j].set_xscale("log")
        axes[1, j].set_xticks(SIZES, [str(s) for s in SIZES])
        axes[1, j].set_xlabel("calibrators N")
    axes[0, 0].set_ylabel("rms on the held-out stars")
    axes[1, 0].set_ylabel("coverage of the errors")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Calibration on N stars with known labels: demo pipeline, simulated stars "
                 "(mean over random draws; error bars: their std)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(rows: list[dict]) -> str:
    lines = ["| estimate | N | parameter | rms before | rms after (std over draws) | bias before "
             "| bias after | coverage before | coverage after | corrections chosen |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        choices = ", ".join(f"{k} {v}" for k, v in sorted(r["choices"].items()))
        lines.append(
            f"| {r['estimate']} | {r['n_calibrators']} | {r['parameter']} | "
            f"{r['rms_before']:.4g} | {r['rms_after']:.4g} ({r['rms_after_std']:.2g}) | "
            f"{r['bias_before']:+.3g} | {r['bias_after']:+.3g} | {r['coverage_before']:.2f} | "
            f"{r['coverage_after']:.2f} | {choices} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stars", type=int, default=500)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", default=DEMO,
                        help="pipeline bundle or run folder (default: the bundled demo)")
    parser.add_argument("--figure", default=None, help="write the figure here (PNG)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    start = time.perf_counter()
    pipeline = load_pipeline(args.model)
    flux, truth = simulate(pipeline, args.n_stars, args.seed)
    ids = [f"sim_{i:04d}" for i in range(args.n_stars)]
    tables = estimates(pipeline, flux, ids)
    print(f"simulated and estimated {args.n_stars} stars in {time.perf_counter() - start:.0f} s")
    coverage = {estimate: coverage_by_estimate(table, truth) for estimate, table in tables.items()}
    for estimate, by_parameter in coverage.items():
        parts = [f"{p} {round(100 * c[0])} % / " + "/".join(str(round(100 * x)) for x in c[1:])
                 for p, c in by_parameter.items()]
        print(f"coverage before calibration ({estimate}), all stars / in 5 bins of the estimate: "
              + "; ".join(parts))
    rows = run(tables, truth, args.draws, args.seed)
    print(markdown(rows))
    floors = {estimate: linear_floor(table, truth) for estimate, table in tables.items()}
    for estimate, floor in floors.items():
        print(f"linear floor ({estimate}, all {args.n_stars} stars, in sample): "
              + ", ".join(f"{p} {v:.4g} {PARAMETER_UNITS[p]}" for p, v in floor.items()))
    for estimate in tables:
        for p in ("teff", "mh"):
            base = next(r for r in rows if r["estimate"] == "no transfer" and r["parameter"] == p)
            row = next(r for r in rows if r["estimate"] == estimate and r["parameter"] == p
                       and r["n_calibrators"] == 20)
            ratio = row["rms_after"] / base["rms_before"]
            print(f"target, {estimate}, {p}, N = 20: rms {row['rms_after']:.4g} = {ratio:.2f} x "
                  f"the no-transfer rms ({'met' if ratio <= 0.5 else 'NOT met'})")
    if args.figure:
        figure(rows, args.figure)
        print(f"wrote {args.figure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"model": str(args.model), "rows": rows, "linear_floor": floors,
                       "coverage_by_estimate": coverage}, handle, indent=1)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
