"""What a finished run says about itself: ``diagnostics.json`` (accuracy with and without
transfer, the domain gap, latent drift), the plots and ``report.md``."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table

from mdwarf_zoo._files import atomic_text
from mdwarf_zoo._version import __version__
from mdwarf_zoo.diagnostics import drift_of_latents, ks_statistics, mmd, nearest_neighbour_distances
from mdwarf_zoo.hub import read_manifest
from mdwarf_zoo.hub.catalogue import PIPELINE_FILE
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.labels import PARAMETER_UNITS
from mdwarf_zoo.pipeline.ensemble import describe_errors, ensemble_table

if TYPE_CHECKING:
    from mdwarf_zoo.recipes.run import Run

logger = logging.getLogger(__name__)


def write_report(run: Run) -> tuple[Path, list[Path], Path]:
    """``diagnostics.json``, the plots and ``report.md``."""
    run.require(run.table_path, "the ensemble stage", "--stage ensemble")
    gathered = run.gather()
    observed = run.read(run.observed_path)
    table = Table.read(run.table_path)
    diagnostics: dict[str, Any] = {
        "recipe": run.recipe.name,
        "recipe_sha256": run.recipe.sha256,
        "n_observed": len(observed),
        "members": {},
    }
    for member in run.recipe.members():
        folder = run.member_folder(member)

        entry = {"pretrained": read_manifest(folder / "pretrained").get("metrics", {})}
        if run.recipe.transfer.enabled:
            entry["transferred"] = read_manifest(folder / "transferred").get("metrics", {})
        diagnostics["members"][member.name] = entry
    diagnostics["domain_gap"] = _domain_gap(run)
    if observed.labels is not None:
        diagnostics["accuracy"] = {
            "transfer": accuracy(table, observed.labels, run.recipe.regressors.parameters),
            "no_transfer": _no_transfer_accuracy(run, gathered, observed),
        }
    diagnostics_path = run.folder / "diagnostics.json"
    atomic_text(diagnostics_path, json.dumps(diagnostics, indent=2) + "\n")
    plots = _plots(run, table, observed) if run.recipe.outputs.plots else []
    sha = hashlib.sha256(run.recipe.text.encode("utf-8")).hexdigest()
    lines = [
        f"# Run of recipe `{run.recipe.name}`",
        "",
        f"- recipe sha256: `{sha}`",
        f"- mdwarf_zoo {__version__}",
        f"- run folder: `{run.folder}`",
        f"- predictions: `{run.table_path.name}` ({len(table)} spectra)",
        f"- members: {len(run.recipe.members())}; regressors per parameter: "
        f"{len(run.recipe.members()) * run.recipe.regressors.seeds}, best kept: "
        f"{run.keep() or 'all'}",
        f"- errors: `{describe_errors(table)}`; latent standardisation: "
        f"{'on' if run.recipe.regressors.standardize_latents else 'off'}; latent "
        f"alignment: {_alignment_text(run)}",
        "",
    ]
    if "calibration" in table.meta:
        known = table.meta["calibration"]
        lines += [
            f"- calibration on {known['n_stars']} stars with known parameters "
            f"(`calibration.json`): "
            + ", ".join(f"{p} {c['correction']}" for p, c in known["parameters"].items())
            + "; the accuracy below includes those stars",
            "",
        ]
    if "accuracy" in diagnostics:
        lines += [
            "## Accuracy on the observed set (true labels known)",
            "",
            "| parameter | with transfer: bias | rms | 1-sigma coverage | "
            "no transfer: bias | rms |",
            "|---|---|---|---|---|---|",
        ]
        for name in run.recipe.regressors.parameters:
            a = diagnostics["accuracy"]["transfer"][name]
            b = diagnostics["accuracy"]["no_transfer"][name]
            lines.append(
                f"| {name} ({PARAMETER_UNITS[name]}) | {a['bias']:.4g} | "
                f"{a['rms']:.4g} | {a['coverage_1sigma']:.2f} | {b['bias']:.4g} | "
                f"{b['rms']:.4g} |"
            )
        lines.append("")
    lines += ["## Autoencoders", "", "| member | metric | value |", "|---|---|---|"]
    for name, entry in diagnostics["members"].items():
        for stage, metrics in entry.items():
            for key, value in metrics.items():
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                lines.append(f"| {name} | {stage}: {key} | {shown} |")
    lines += [
        "",
        "## Domain gap",
        "",
        "```json",
        json.dumps(diagnostics["domain_gap"], indent=2),
        "```",
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    lines += ["## Recipe", "", "```toml", run.recipe.text.rstrip(), "```", ""]
    report_path = run.folder / "report.md"
    atomic_text(report_path, "\n".join(lines))
    return report_path, plots, diagnostics_path


def _domain_gap(run: Run) -> dict[str, Any]:
    """The synthetic gap (``mdwarf_zoo.diagnostics``): mean nearest-synthetic-neighbour
    distance of the observed spectra in flux space and, per member, in latent space before
    and after transfer (MB24: 2.72 and 0.086), with the mean per-dimension KS statistic and
    the MMD of the latents."""
    synthetic = run.read(run.synthetic_path)
    observed = run.read(run.observed_path)
    result: dict[str, Any] = {
        "flux_nn_distance": float(nearest_neighbour_distances(observed.flux, synthetic.flux).mean())
    }
    for member in run.recipe.members():
        with np.load(run.member_folder(member) / "latents.npz") as saved:
            syn, before, after = (
                saved["synthetic"],
                saved["observed_no_transfer"],
                saved["observed"],
            )
            result[member.name] = {
                "latent_nn_distance_before": float(nearest_neighbour_distances(before, syn).mean()),
                "latent_nn_distance_after": float(nearest_neighbour_distances(after, syn).mean()),
                "ks_mean_before": float(ks_statistics(syn, before).mean()),
                "ks_mean_after": float(ks_statistics(syn, after).mean()),
                "mmd_before": _mmd_or_reason(mmd, syn, before),
                "mmd_after": _mmd_or_reason(mmd, syn, after),
                "reconstruction_mse_observed_before": float(
                    saved["reconstruction_mse_observed_no_transfer"]
                ),
                "reconstruction_mse_observed_after": float(saved["reconstruction_mse_observed"]),
            }
            if "synthetic_transferred" in saved.files:
                result[member.name]["latent_drift"] = drift_of_latents(
                    syn, saved["synthetic_transferred"]
                )
    return result


def _alignment_text(run: Run) -> str:
    settings = run.recipe.ensemble
    if settings.latent_alignment is None:
        return "none"
    neighbours = (
        f", {settings.alignment_neighbours} neighbours"
        if settings.latent_alignment == "coral_neighbours"
        else ""
    )
    return (
        f"`{settings.latent_alignment}`{neighbours} (in the predictions table and the "
        "with-transfer accuracy; the no-transfer accuracy is without alignment)"
    )


def _no_transfer_accuracy(run: Run, gathered, observed) -> dict[str, dict[str, float]]:
    scaling = run.label_scaling(run.read(run.synthetic_path).labels)
    # The gap scale the run's pipeline uses (given, measured on the simulator, or the prior),
    # and the coverage factor measured with it.
    settings = json.loads((run.folder / PIPELINE_FILE).read_text())["ensemble"]
    gap = {key: settings[key] for key in ("gap", "gap_source") if "gap" in settings}
    if "error_scale" in settings:
        gap.update(
            error_scale=settings["error_scale"], error_scale_source=settings["error_scale_source"]
        )
    table = ensemble_table(
        {n: g["no_transfer"] for n, g in gathered.items()},
        observed.identifiers,
        validation_mse={n: g["mse"] for n, g in gathered.items()},
        keep=run.keep(),
        error_model=run.recipe.ensemble.error_model,
        **gap,
        validation_rms={n: np.sqrt(g["mse"]) * scaling[n]["std"] for n, g in gathered.items()},
    )
    return accuracy(table, observed.labels, run.recipe.regressors.parameters)


def _plots(run: Run, table, observed) -> list[Path]:
    """``mdwarf_zoo.plots`` figures: predicted vs true (when the observed set has true
    labels) and, per member, the latents before and after transfer (PCA)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install 'mdwarf-zoo[plots]')")
        return []
    from mdwarf_zoo.plots import plot_latent_projection, plot_predicted_vs_true

    folder = run.folder / "plots"
    folder.mkdir(exist_ok=True)
    parameters = run.recipe.regressors.parameters
    paths = []
    if observed.labels is not None:
        paths.append(
            plot_predicted_vs_true(
                {name: observed.labels[:, _COLUMN[name]] for name in parameters},
                {name: np.asarray(table[name], dtype=np.float64) for name in parameters},
                folder / "predicted_vs_true.png",
                errors={
                    name: np.stack(
                        [
                            np.asarray(table[f"{name}_err_lower"], dtype=np.float64),
                            np.asarray(table[f"{name}_err_upper"], dtype=np.float64),
                        ]
                    )
                    for name in parameters
                },
                title=f"{run.recipe.name}: ensemble estimates of the observed set",
            )
        )
    for member in run.recipe.members():
        with np.load(run.member_folder(member) / "latents.npz") as saved:
            paths.append(
                plot_latent_projection(
                    saved["synthetic"],
                    saved["observed_no_transfer"],
                    saved["synthetic"],
                    saved["observed"],
                    folder / f"latents_{member.name}.png",
                    method="pca",
                    title=f"{member.name} ({member.architecture}): latent space",
                )
            )
    return paths


def accuracy(table, labels: np.ndarray, parameters) -> dict[str, dict[str, float]]:
    """Bias, rms and the fraction of true values inside the -/+ errors, per parameter."""
    result = {}
    for name in parameters:
        truth = labels[:, _COLUMN[name]]
        value = np.asarray(table[name], dtype=np.float64)
        lower = np.asarray(table[f"{name}_err_lower"], dtype=np.float64)
        upper = np.asarray(table[f"{name}_err_upper"], dtype=np.float64)
        residual = value - truth
        inside = (truth >= value - lower) & (truth <= value + upper)
        result[name] = {
            "bias": float(np.mean(residual)),
            "rms": float(np.sqrt(np.mean(residual**2))),
            "median_error_lower": float(np.median(lower)),
            "median_error_upper": float(np.median(upper)),
            "coverage_1sigma": float(np.mean(inside)),
        }
    return result


def _mmd_or_reason(mmd, x: np.ndarray, y: np.ndarray) -> float | str:
    """The MMD, or why it is undefined (e.g. a collapsed latent space with identical points)."""
    try:
        return float(mmd(x, y))
    except ValueError as error:
        return f"undefined: {error}"
