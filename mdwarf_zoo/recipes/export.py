"""A run folder as a pipeline folder: ``pipeline.json`` and each member's alignment reference,
what :func:`mdwarf_zoo.load_pipeline` reads."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from mdwarf_zoo._files import atomic_savez as _atomic_savez
from mdwarf_zoo._files import atomic_text
from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub.catalogue import PIPELINE_FILE, PIPELINE_FORMAT
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.labels import PARAMETER_UNITS
from mdwarf_zoo.pipeline import (
    LatentScaler,
)
from mdwarf_zoo.pipeline.ensemble import select_best
from mdwarf_zoo.pipeline.gap import check_error_scale
from mdwarf_zoo.recipes import (
    AutoencoderMember,
)

if TYPE_CHECKING:
    from mdwarf_zoo.recipes.run import Run

logger = logging.getLogger(__name__)

#: A member's alignment reference file (``[ensemble] latent_alignment``).
ALIGNMENT_REFERENCE = "alignment_reference.npz"


def _chosen(run: Run, gathered: dict[str, dict[str, np.ndarray]]) -> dict[str, set[int]]:
    """Per parameter, the rows of ``gathered`` the best-K selection keeps."""
    keep = run.keep()
    return {
        name: set(select_best(g["mse"], keep or len(g["mse"])).tolist())
        for name, g in gathered.items()
    }


def latent_scaler(run: Run, member: AutoencoderMember):
    """The member's ``LatentScaler`` (``None`` without ``standardize_latents``), as its
    regressors stage fitted it."""
    if not run.recipe.regressors.standardize_latents:
        return None
    path = run.member_folder(member) / "predictions.npz"
    with np.load(path) as saved:
        if "latent_mean" not in saved.files:
            raise ValueError(
                f"{path} holds no latent scaling, but the recipe has [regressors] "
                f"standardize_latents = true; delete {path.parent / 'regressors'} and "
                f"{path} to train the member's regressors again"
            )
        return LatentScaler(saved["latent_mean"], saved["latent_std"])


def write_alignment_references(run: Run, synthetic) -> None:
    """Per member ``alignment_reference.npz``: its synthetic latents (float32) and their
    labels, the target of the latent alignment (also for ``PretrainedPipeline.predict``)."""
    parameters = run.recipe.regressors.parameters
    labels = synthetic.labels[:, [_COLUMN[n] for n in parameters]].astype(np.float64)
    for member in run.recipe.members():
        folder = run.member_folder(member)
        with np.load(folder / "latents.npz") as saved:
            latents = saved["synthetic"].astype(np.float32)
        _atomic_savez(
            folder / ALIGNMENT_REFERENCE,
            synthetic_latents=latents,
            synthetic_labels=labels,
            parameters=np.array(parameters),
        )


def write_pipeline(run: Run, gathered: dict[str, dict[str, np.ndarray]], synthetic) -> None:
    keep = run.keep()
    chosen = _chosen(run, gathered)
    settings = run.recipe.ensemble
    members = []
    for member in run.recipe.members():
        folder = run.member_folder(member).relative_to(run.folder).as_posix()
        regressors = {}
        for name, g in gathered.items():
            rows = np.flatnonzero(g["members"] == member.index)
            regressors[name] = [
                {
                    "path": f"{folder}/regressors/{name}_seed{k}",
                    "validation_mse": float(g["mse"][row]),
                    "selected": bool(row in chosen[name]),
                }
                for k, row in enumerate(rows)
            ]
        entry = {
            "name": member.name,
            "architecture": member.architecture,
            "autoencoder": f"{folder}/pretrained",
            "transferred": f"{folder}/transferred" if run.recipe.transfer.enabled else None,
            "regressors": regressors,
        }
        scaler = latent_scaler(run, member)
        if scaler is not None:
            entry["latent_scaling"] = scaler.to_dict()
        if settings.latent_alignment is not None:
            entry["alignment_reference"] = f"{folder}/{ALIGNMENT_REFERENCE}"
        members.append(entry)
    manifest = {
        "format": PIPELINE_FORMAT,
        "zoo_version": __version__,
        "recipe": {"name": run.recipe.name, "sha256": run.recipe.sha256},
        "parameters": list(run.recipe.regressors.parameters),
        "units": {n: PARAMETER_UNITS[n] for n in run.recipe.regressors.parameters},
        "label_scaling": run.label_scaling(synthetic.labels),
        "preprocessing": run.recipe.preprocessing.preprocessor().to_dict(),
        "transfer": {
            "enabled": run.recipe.transfer.enabled,
            "freeze": run.recipe.transfer.freeze
            if not isinstance(run.recipe.transfer.freeze, tuple)
            else list(run.recipe.transfer.freeze),
            "epochs": run.recipe.transfer.epochs,
            "learning_rate": run.recipe.transfer.learning_rate,
            "batch_size": run.recipe.transfer.batch_size,
            "validation_split": run.recipe.transfer.validation_split,
            "mode": run.recipe.transfer.mode,
        },
        "ensemble": {"best": keep, "error_model": settings.error_model},
        "members": members,
    }
    if isinstance(settings.gap, dict):
        manifest["ensemble"]["gap"] = dict(settings.gap)
        manifest["ensemble"]["gap_source"] = f"recipe {run.recipe.name}: [ensemble] gap"
    if settings.latent_alignment is not None:
        manifest["alignment"] = {
            "method": settings.latent_alignment,
            "neighbours": settings.alignment_neighbours,
            "resamples": settings.alignment_resamples,
            "seed": run.recipe.seed,
        }
    atomic_text(run.folder / PIPELINE_FILE, json.dumps(manifest, indent=2) + "\n")


def record_gap(
    run: Run,
    manifest: dict,
    gap: dict[str, float],
    source: str,
    error_scale: dict[str, float | dict[str, list[float]]] | None = None,
    error_scale_source: str = "",
) -> None:
    """Add a measured gap scale (``ensemble.gap`` and ``gap_source``) and, when given, the
    coverage factor measured with it (``ensemble.error_scale`` and ``error_scale_source``) to
    ``manifest`` (the loaded pipeline's, so that it predicts with them) and to
    ``pipeline.json``."""
    manifest["ensemble"]["gap"] = {name: float(value) for name, value in gap.items()}
    manifest["ensemble"]["gap_source"] = source
    if error_scale is not None:
        manifest["ensemble"]["error_scale"] = check_error_scale(error_scale, "record_gap")
        manifest["ensemble"]["error_scale_source"] = error_scale_source
    atomic_text(run.folder / PIPELINE_FILE, json.dumps(manifest, indent=2) + "\n")
