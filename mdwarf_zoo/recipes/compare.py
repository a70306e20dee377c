"""Compare autoencoder architectures on the same data, splits and seeds (``mdwarf-zoo compare``).

A comparison lives in one folder::

    compare.json             recipe name and sha256 (the folder's identity)
    NN_<architecture>/       a run folder (mdwarf_zoo.recipes.run.Run) of the recipe restricted to
                             grid point NN: one member, seed = recipe seed, so every
                             architecture sees the same split, batch order seeds and label seeds
        data/*.h5            the sets, built once by the first architecture and hard-linked
                             (or copied) into the others: byte-identical files
        compare_row.json     the measured row of this architecture (cached, so a resumed
                             comparison writes the same table)
    spectrum_cnn/            the direct baseline: seed_<k>/ save_pretrained folders, row json
    comparison.csv, comparison.md, comparison.png

Every run resumes (stages, members and checkpoints of ``mdwarf_zoo.recipes.run``), so re-running the
same command skips finished work and rewrites identical tables from the cached rows.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub import from_pretrained, read_manifest, save_pretrained
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.labels import PARAMETER_UNITS
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline.ensemble import ensemble_table
from mdwarf_zoo.recipes import Recipe, RecipeError, parse_recipe, report, sets
from mdwarf_zoo.recipes.run import Run
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.training.loop import determinism, fit_resumable, remove_checkpoint, split_indices
from mdwarf_zoo.training.transfer import clone_model

__all__ = ["COLUMNS", "ComparisonResult", "compare", "single_point_recipe"]

logger = logging.getLogger(__name__)

_FORMAT = "mdwarf_zoo.Compare/1"
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")

#: Columns of ``comparison.csv`` before the per-parameter accuracy columns.
COLUMNS = (
    "model",
    "kind",
    "architecture",
    "parameters",
    "train_seconds_per_epoch",
    "inference_spectra_per_second",
    "mse_synthetic_test",
    "mse_observed_before",
    "mse_observed_after",
    "flux_nn_distance",
    "latent_nn_distance_before",
    "latent_nn_distance_after",
    "ks_mean_before",
    "ks_mean_after",
    "mmd_before",
    "mmd_after",
)
_ACCURACY = ("bias", "rms", "coverage")


@dataclass
class ComparisonResult:
    """What :func:`compare` wrote."""

    folder: Path
    csv: Path
    markdown: Path
    figure: Path | None
    rows: list[dict[str, Any]]
    seconds: float


# --------------------------------------------------------------------------------------------
# One recipe per grid point
# --------------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    # JSON scalars and arrays of them are valid TOML.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write the grid value {value!r} to TOML")
    return json.dumps(value)


def single_point_recipe(recipe: Recipe, index: int) -> Recipe:
    """The recipe restricted to grid point ``index``: one member, the recipe's own seed.

    The ``[autoencoders.grid]`` table of the text is replaced by the point's values and an
    ``[autoencoders] members`` key is dropped, so the run folder's ``recipe.toml`` is a recipe
    that ``mdwarf-zoo train`` runs to the same result.

    Raises:
        RecipeError: when the recipe writes its grid other than as an ``[autoencoders.grid]``
            table.
    """
    point = recipe.autoencoders.grid_points()[index]
    lines = recipe.text.splitlines()
    out: list[str] = []
    section = None
    found = False
    for line in lines:
        header = _HEADER.match(line)
        if header:
            section = header.group(1)
            out.append(line)
            if section == "autoencoders.grid":
                found = True
                out.append(f"# mdwarf-zoo compare: grid point {index} of {recipe.name!r}")
                out.extend(f"{key} = {_toml_value(value)}" for key, value in point.items())
            continue
        if section == "autoencoders.grid":
            continue
        if section == "autoencoders" and re.match(r"^\s*members\s*=", line):
            continue
        out.append(line)
    if not found:
        raise RecipeError(
            f"recipe {recipe.name!r}: mdwarf-zoo compare needs the grid written as an "
            "[autoencoders.grid] table (one key per line); found none"
        )
    text = "\n".join(out) + "\n"
    return parse_recipe(text, source=recipe.source, check_files=False, check_models=False)


def _point_label(recipe: Recipe, index: int) -> str:
    point = dict(recipe.autoencoders.grid_points()[index])
    architecture = point.pop("architecture")
    if not point:
        return architecture
    return architecture + "(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"


# --------------------------------------------------------------------------------------------
# The comparison folder
# --------------------------------------------------------------------------------------------
def _open(recipe: Recipe, folder: Path) -> None:
    identity = folder / "compare.json"
    if identity.is_file():
        record = json.loads(identity.read_text(encoding="utf-8"))
        if record.get("recipe_sha256") != recipe.sha256:
            raise FileExistsError(
                f"compare folder {folder} belongs to recipe {record.get('recipe')!r} (sha256 "
                f"{record.get('recipe_sha256')}), not to {recipe.name!r} (sha256 "
                f"{recipe.sha256}); it is never overwritten: choose another --out"
            )
        return
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(
            f"{folder} exists and is not a compare folder (no compare.json); it is never "
            "overwritten: choose another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "format": _FORMAT,
        "recipe": recipe.name,
        "recipe_sha256": recipe.sha256,
        "mdwarf_zoo": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / "recipe.toml").write_text(recipe.text, encoding="utf-8")
    identity.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _share_sets(source, target) -> None:
    """Hard-link (or copy) the first run's sets into another run folder."""
    (target.folder / "data").mkdir(exist_ok=True)
    for name in ("synthetic_path", "observed_path"):
        origin, destination = getattr(source, name), getattr(target, name)
        if destination.is_file():
            continue
        partial = destination.with_name(f".{destination.name}.link")
        if partial.exists():
            partial.unlink()
        try:
            os.link(origin, partial)
        except OSError:
            shutil.copyfile(origin, partial)
        os.replace(partial, destination)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_json(path: Path, record: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _checkpoint_epoch(path: Path) -> int:
    if not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as saved:
        return int(saved["epoch"])


def _number(value: Any) -> float:
    """A metric as a float; an undefined metric (a reason string, ``None``) is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _throughput(call, n: int, repeats: int = 3) -> float:
    """Spectra per second of ``call()`` over ``n`` spectra: the best of ``repeats`` after a
    warm-up call (graph tracing is not inference)."""
    call()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return n / best


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------
def _architecture_rows(run, label: str, seconds_per_epoch: float) -> list[dict[str, Any]]:
    """The transfer row and the no-transfer row of one architecture's finished run."""

    recipe = run.recipe
    member = recipe.members()[0]
    folder = run.member_folder(member)
    diagnostics = json.loads((run.folder / "diagnostics.json").read_text(encoding="utf-8"))
    gap = diagnostics["domain_gap"]
    member_gap = gap[member.name]
    pretrained = read_manifest(folder / "pretrained").get("metrics", {})
    autoencoder = from_pretrained(
        folder / "transferred" if recipe.transfer.enabled else folder / "pretrained"
    )
    regressors = [
        from_pretrained(path) for path in sorted((folder / "regressors").iterdir()) if path.is_dir()
    ]
    observed = run.read(run.observed_path)
    flux = observed.flux

    def infer() -> None:
        latent = encode(autoencoder, flux)
        for regressor in regressors:
            regressor.predict_on_batch(latent)

    speed = _throughput(infer, len(flux))
    common = {
        "architecture": member.architecture,
        "parameters": int(autoencoder.count_params()),
        "train_seconds_per_epoch": seconds_per_epoch,
        "inference_spectra_per_second": speed,
        "mse_synthetic_test": _number(pretrained.get("reconstruction_mse_synthetic_validation")),
        "mse_observed_before": _number(member_gap["reconstruction_mse_observed_before"]),
        "flux_nn_distance": _number(gap["flux_nn_distance"]),
        "latent_nn_distance_before": _number(member_gap["latent_nn_distance_before"]),
        "ks_mean_before": _number(member_gap["ks_mean_before"]),
        "mmd_before": _number(member_gap["mmd_before"]),
    }
    transfer = {
        "model": label,
        "kind": "transfer",
        **common,
        "mse_observed_after": _number(member_gap["reconstruction_mse_observed_after"]),
        "latent_nn_distance_after": _number(member_gap["latent_nn_distance_after"]),
        "ks_mean_after": _number(member_gap["ks_mean_after"]),
        "mmd_after": _number(member_gap["mmd_after"]),
    }
    no_transfer = {"model": f"{label} [no transfer]", "kind": "no_transfer", **common}
    accuracy = diagnostics.get("accuracy")
    if accuracy is None:
        raise ValueError(
            f"{run.observed_path} has no true labels: mdwarf-zoo compare measures accuracy on "
            "an observed set with known truth (source = 'simulator', or labels = ...)"
        )
    for row, key in ((transfer, "transfer"), (no_transfer, "no_transfer")):
        for name, values in accuracy[key].items():
            row[f"{name}_bias"] = values["bias"]
            row[f"{name}_rms"] = values["rms"]
            row[f"{name}_coverage"] = values["coverage_1sigma"]
    return [transfer, no_transfer]


def _spectrum_cnn_row(recipe: Recipe, run, folder: Path, progress: bool) -> dict[str, Any]:
    """Train (resumably) ``[regressors] seeds`` direct spectrum CNNs on the synthetic set with
    standardised labels, all parameters at once, and evaluate their ensemble on the observed
    set. Split seed and batch-order seeds follow the autoencoders' (``recipe.seed``)."""

    cached = _read_json(folder / "compare_row.json")
    if cached is not None:
        return cached
    folder.mkdir(exist_ok=True)
    synthetic = run.read(run.synthetic_path)
    observed = run.read(run.observed_path)
    names = list(recipe.regressors.parameters)
    scaling = run.label_scaling(synthetic.labels)
    mean = np.array([scaling[n]["mean"] for n in names])
    std = np.array([scaling[n]["std"] for n in names])
    target = ((synthetic.labels[:, [_COLUMN[n] for n in names]] - mean) / std).astype(np.float32)
    settings = recipe.autoencoders
    train, val = split_indices(len(synthetic), settings.validation_split, recipe.seed)
    timing = _read_json(folder / "timing.json") or {}
    predictions, mse = [], []
    for k in range(recipe.regressors.seeds):
        seed = recipe.seed * 1000 + k
        out = folder / f"seed_{k}"
        determinism(seed)
        if out.is_dir():
            model = from_pretrained(out)
        else:
            checkpoint = folder / f"seed_{k}.ckpt.npz"
            start = _checkpoint_epoch(checkpoint)
            model = create_model(
                "spectrum_cnn",
                input_length=synthetic.flux.shape[1],
                n_outputs=len(names),
                learning_rate=settings.learning_rate,
                seed=seed,
            )
            started = time.perf_counter()
            history = fit_resumable(
                model,
                synthetic.flux[train],
                target[train],
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                seed=seed,
                checkpoint=checkpoint,
                validation=(synthetic.flux[val], target[val]),
                description=f"spectrum_cnn seed {k}",
                progress=progress,
            )
            if settings.epochs > start:
                timing[f"seed_{k}"] = (time.perf_counter() - started) / (settings.epochs - start)
                _write_json(folder / "timing.json", timing)
            save_pretrained(
                clone_model(model),
                out,
                preprocessor=recipe.preprocessing.preprocessor(),
                recipe={"name": recipe.name, "sha256": recipe.sha256},
                labels=names,
                label_units=[PARAMETER_UNITS[n] for n in names],
                label_scaling=scaling,
                provenance={"baseline": "spectrum_cnn", "seed": seed},
                training=f"direct spectrum CNN: {len(history)} epochs",
            )
            remove_checkpoint(checkpoint.with_suffix(""))
        scaled = np.asarray(model.predict(synthetic.flux[val], verbose=0))
        mse.append(np.mean((scaled - target[val]) ** 2, axis=0))
        predictions.append(np.asarray(model.predict(observed.flux, verbose=0)) * std + mean)
    stacked = np.stack(predictions)
    table = ensemble_table(
        {n: stacked[:, :, i] for i, n in enumerate(names)}, observed.identifiers, keep=None
    )
    if observed.labels is None:
        raise ValueError(f"{run.observed_path} has no true labels to compare against")
    accuracy = report.accuracy(table, observed.labels, names)
    flux = observed.flux
    row: dict[str, Any] = {
        "model": "spectrum_cnn",
        "kind": "direct",
        "architecture": "spectrum_cnn",
        "parameters": int(model.count_params()),
        "train_seconds_per_epoch": float(np.mean(list(timing.values())))
        if timing
        else float("nan"),
        "inference_spectra_per_second": _throughput(
            lambda: [model.predict_on_batch(flux[i : i + 256]) for i in range(0, len(flux), 256)],
            len(flux),
        ),
        "flux_nn_distance": float("nan"),
    }
    for name, values in accuracy.items():
        row[f"{name}_bias"] = values["bias"]
        row[f"{name}_rms"] = values["rms"]
        row[f"{name}_coverage"] = values["coverage_1sigma"]
    _write_json(folder / "compare_row.json", row)
    return row


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
def compare(
    recipe: Recipe, folder: str | os.PathLike, *, progress: bool = True
) -> ComparisonResult:
    """Train every grid point of ``recipe`` on the same sets, splits and seeds; tabulate them.

    Each grid point (an architecture, with any other grid arguments) runs as its own run folder
    ``NN_<architecture>`` of :func:`single_point_recipe` (one member with the recipe's seed),
    through every stage of :class:`mdwarf_zoo.recipes.run.Run`. The sets are built once and shared.
    The ``[compare] baselines`` add, per architecture, its ensemble without transfer learning
    (``no_transfer``) and a direct spectrum CNN trained on the synthetic spectra
    (``spectrum_cnn``).

    Args:
        recipe: a validated recipe whose observed set has true labels (simulated).
        folder: the comparison folder; created, or resumed when it belongs to this recipe.
        progress: show tqdm progress bars.

    Returns:
        A :class:`ComparisonResult` with the paths of ``comparison.csv``, ``comparison.md`` and
        ``comparison.png`` (``None`` without matplotlib) and the rows.

    Raises:
        FileExistsError: for a folder that is not this recipe's comparison.
        RecipeError: for a recipe whose grid is not an ``[autoencoders.grid]`` table.
        ValueError: for an observed set without true labels.

    Examples:
        >>> from mdwarf_zoo.recipes.compare import compare  # doctest: +SKIP
        >>> from mdwarf_zoo.recipes import load_recipe  # doctest: +SKIP
        >>> compare(load_recipe("compare_quick"), "runs/compare").csv  # doctest: +SKIP
    """

    started = time.perf_counter()
    folder = Path(folder)
    n_points = len(recipe.autoencoders.grid_points())
    derived = [single_point_recipe(recipe, i) for i in range(n_points)]
    _open(recipe, folder)
    rows: list[dict[str, Any]] = []
    first = None
    for index, point_recipe in enumerate(derived):
        member = point_recipe.members()[0]
        label = _point_label(recipe, index)
        run = Run(point_recipe, folder / f"{index:02d}_{member.architecture}", progress=progress)
        cached = _read_json(run.folder / "compare_row.json")
        if cached is not None:
            rows.extend(cached["rows"])
            first = first or run
            continue
        if first is None:
            sets.build_sets(run)
            first = run
        else:
            _share_sets(first, run)
        timing_path = run.folder / "compare_timing.json"
        timing = _read_json(timing_path) or {}
        member_folder = run.member_folder(member)
        if not (member_folder / "pretrained").is_dir():
            start = _checkpoint_epoch(member_folder / "pretrain.ckpt.npz")
            logger.info("%s: pretraining %s", run.folder.name, label)
            began = time.perf_counter()
            run.run("pretrain", member=0)
            epochs = point_recipe.autoencoders.epochs - start
            if epochs > 0:
                timing["seconds_per_epoch"] = (time.perf_counter() - began) / epochs
                _write_json(timing_path, timing)
        run.run()
        point_rows = _architecture_rows(run, label, _number(timing.get("seconds_per_epoch")))
        if "no_transfer" not in recipe.compare.baselines:
            point_rows = [r for r in point_rows if r["kind"] != "no_transfer"]
        _write_json(run.folder / "compare_row.json", {"rows": point_rows})
        rows.extend(point_rows)
    if "spectrum_cnn" in recipe.compare.baselines:
        rows.append(_spectrum_cnn_row(recipe, first, folder / "spectrum_cnn", progress))
    rows = _order(rows)
    parameters = list(recipe.regressors.parameters)
    csv_path = _write_csv(rows, parameters, folder / "comparison.csv")
    figure = _figure(rows, parameters, folder / "comparison.png", recipe.name)
    markdown = _write_markdown(rows, parameters, folder / "comparison.md", recipe, figure)
    return ComparisonResult(folder, csv_path, markdown, figure, rows, time.perf_counter() - started)


def _order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Architectures with transfer first, then their no-transfer rows, then the direct CNN."""
    rank = {"transfer": 0, "no_transfer": 1, "direct": 2}
    return sorted(rows, key=lambda r: rank[r["kind"]])


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def _columns(parameters: list[str]) -> list[str]:
    return list(COLUMNS) + [f"{p}_{a}" for p in parameters for a in _ACCURACY]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_csv(rows: list[dict[str, Any]], parameters: list[str], path: Path) -> Path:
    columns = _columns(parameters)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    os.replace(partial, path)
    return path


def _short(value: Any, digits: int = 3) -> str:
    text = _cell(value if not isinstance(value, float) else float(f"{value:.{digits}g}"))
    return text or "-"


def _write_markdown(
    rows: list[dict[str, Any]],
    parameters: list[str],
    path: Path,
    recipe: Recipe,
    figure: Path | None,
) -> Path:
    cost = [
        ("parameters", "parameters"),
        ("train_seconds_per_epoch", "train s/epoch"),
        ("inference_spectra_per_second", "inference spectra/s"),
        ("mse_synthetic_test", "MSE synthetic test"),
        ("mse_observed_before", "MSE observed before"),
        ("mse_observed_after", "MSE observed after"),
        ("latent_nn_distance_before", "latent NN dist. before"),
        ("latent_nn_distance_after", "after"),
        ("ks_mean_before", "KS before"),
        ("ks_mean_after", "KS after"),
        ("mmd_before", "MMD before"),
        ("mmd_after", "MMD after"),
    ]
    lines = [
        f"# Architecture comparison: recipe `{recipe.name}`",
        "",
        f"- recipe sha256: `{recipe.sha256}`; mdwarf_zoo {__version__}",
        f"- every architecture: the same synthetic and observed sets, split and seed "
        f"({recipe.seed}); observed = simulated spectra with known truth",
        f"- flux-space nearest-synthetic-neighbour distance of the observed spectra: "
        f"{_short(rows[0].get('flux_nn_distance'))}",
        "",
        "## Cost, reconstruction and domain gap",
        "",
        "| model | " + " | ".join(title for _, title in cost) + " |",
        "|---|" + "---|" * len(cost),
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | " + " | ".join(_short(row.get(key)) for key, _ in cost) + " |"
        )
    lines += [
        "",
        "## Accuracy on the observed set (ensemble value minus truth; coverage = fraction of "
        "true values inside the -/+1 sigma errors)",
        "",
        "| model | "
        + " | ".join(f"{p} bias | {p} rms ({PARAMETER_UNITS[p]}) | {p} cov." for p in parameters)
        + " |",
        "|---|" + "---|" * (3 * len(parameters)),
    ]
    for row in rows:
        cells = [
            _short(row.get(f"{p}_{a}"), 2 if a == "coverage" else 3)
            for p in parameters
            for a in _ACCURACY
        ]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    if figure is not None:
        lines += ["", f"![comparison]({figure.name})"]
    lines.append("")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n".join(lines), encoding="utf-8")
    os.replace(partial, path)
    return path


def _figure(
    rows: list[dict[str, Any]], parameters: list[str], path: Path, name: str
) -> Path | None:
    """Reconstruction MSE per architecture, and per parameter the rms of every row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no comparison.png")
        return None
    transfer = [r for r in rows if r["kind"] == "transfer"]
    colours = {"transfer": "tab:blue", "no_transfer": "tab:orange", "direct": "tab:green"}
    fig, axes = plt.subplots(
        1, 1 + len(parameters), figsize=(3.0 * (1 + len(parameters)), 3.4), dpi=80
    )
    ax = axes[0]
    keys = [
        ("mse_synthetic_test", "synthetic test"),
        ("mse_observed_before", "observed, before"),
        ("mse_observed_after", "observed, after"),
    ]
    width = 0.8 / len(keys)
    for j, (key, title) in enumerate(keys):
        ax.bar(
            np.arange(len(transfer)) + (j - 1) * width,
            [_number(r.get(key)) for r in transfer],
            width,
            label=title,
        )
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(transfer)), [r["architecture"] for r in transfer], rotation=30)
    ax.set_title("reconstruction MSE", fontsize=9)
    ax.legend(fontsize=7)
    for ax, parameter in zip(axes[1:], parameters, strict=True):
        values = [_number(r.get(f"{parameter}_rms")) for r in rows]
        ax.barh(
            np.arange(len(rows)),
            values,
            color=[colours[r["kind"]] for r in rows],
        )
        ax.set_yticks(np.arange(len(rows)), [r["model"] for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_title(f"{parameter} rms ({PARAMETER_UNITS[parameter]})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(
        f"{name}: blue = with transfer, orange = without, green = direct spectrum CNN", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
