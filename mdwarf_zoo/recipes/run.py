"""Run a training recipe: sets, pretrain, transfer, encode, regressors, ensemble, report.

A run lives in one folder::

    run.json                 recipe name and sha256, zoo version (the folder's identity)
    recipe.toml              the recipe text, exactly as read
    data/synthetic.h5        the labelled synthetic set (HDF5, mdwarf_zoo.spectra.datasets)
    data/observed.h5         the observed set (with the true labels for simulated spectra)
    members/member_NNN/      one ensemble member: one autoencoder and its regressors
        pretrained/          save_pretrained folder of the autoencoder trained on synthetic spectra
        transferred/         ... after transfer learning on the observed spectra
        latents.npz          synthetic and observed latents
        regressors/<p>_seed<k>/   save_pretrained folder of each latent regressor
        predictions.npz      observed-set predictions and validation MSE of every regressor
                             (and, with ``[regressors] standardize_latents``, the latent scaling)
        alignment_reference.npz   with ``[ensemble] latent_alignment``: the synthetic latents
                             and labels the observed latents are aligned onto
        *.ckpt.npz           the checkpoint of the model being trained (weights + optimizer)
    pipeline.json            what ``mdwarf-zoo predict --model RUN`` loads
    predictions.<fmt>        the ensemble table; diagnostics.json; plots/; report.md

Every stage and member writes its result atomically and is skipped when the result exists,
so re-running the same command resumes. A run folder belongs to one recipe text (its sha256 in
``run.json``): a recipe with any key changed, ``standardize_latents`` or ``latent_alignment``
included, never reuses a folder's results. Training checkpoints the model and optimizer state
at every epoch end and draws each epoch's batch order from ``numpy.random.default_rng([seed,
epoch])``, so a run killed mid-epoch resumes to the same final weights as an uninterrupted one
(with ``keras.utils.set_random_seed`` and TensorFlow op determinism on).

With ``[ensemble] latent_alignment`` (not in MB24) the ensemble stage maps each member's observed
latents onto its synthetic ones (``mdwarf_zoo.pipeline.align_observed_latents``) and predicts
again with the selected (best-K) regressors; for ``"coral_neighbours"`` the preliminary
estimates are the medians of those selected regressors without alignment, as
``PretrainedPipeline.predict`` of the run folder computes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdwarf_zoo._files import atomic_text
from mdwarf_zoo._version import __version__
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.pipeline import (
    LabelScaler,
)
from mdwarf_zoo.pipeline.calibration import calibrate, load_labels_table
from mdwarf_zoo.pipeline.ensemble import write_table
from mdwarf_zoo.pipeline.pretrained import load_pipeline
from mdwarf_zoo.recipes import (
    MEMBER_STAGES,
    STAGES,
    AutoencoderMember,
    Recipe,
    cluster,
    export,
    report,
    sets,
    stages,
)
from mdwarf_zoo.spectra.datasets import (
    read_set,
)
from mdwarf_zoo.training.distribute import agree, get_strategy

__all__ = ["STAGES", "Run", "RunResult"]

logger = logging.getLogger(__name__)

_RUN_FORMAT = "mdwarf_zoo.Run/1"


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a call of :meth:`Run.run` produced (paths are ``None`` when not reached)."""

    folder: Path
    table: Path | None = None
    report: Path | None = None
    plots: list[Path] | None = None
    diagnostics: Path | None = None
    seconds: float = 0.0


class Run:
    """The run folder of a recipe, and the stages that fill it.

    Args:
        recipe: a validated :class:`~mdwarf_zoo.recipes.Recipe`.
        folder: the run folder; created when missing, resumed when it belongs to the same
            recipe (same sha256), refused otherwise.
        progress: show tqdm progress bars.

    Raises:
        FileExistsError: for a folder that holds something else or another recipe's run.
    """

    def __init__(self, recipe: Recipe, folder: str | os.PathLike, *, progress: bool = True):
        self.recipe = recipe
        self.folder = Path(folder)
        self.progress = progress
        # Under strategy "multi_worker" every worker runs this same command on the same folder;
        # only the chief writes into it (see cluster.join_cluster and agree).
        self.chief = cluster.join_cluster(recipe)
        self._open()

    # -- the folder --------------------------------------------------------------------------
    def _open(self) -> None:
        identity = self.folder / "run.json"
        if not self.chief:
            cluster.wait_for([identity], "the chief worker to create the run folder")
        if identity.is_file():
            record = json.loads(identity.read_text(encoding="utf-8"))
            if record.get("recipe_sha256") != self.recipe.sha256:
                raise FileExistsError(
                    f"run folder {self.folder} belongs to recipe {record.get('recipe')!r} "
                    f"(sha256 {record.get('recipe_sha256')}), not to this recipe "
                    f"{self.recipe.name!r} (sha256 {self.recipe.sha256}); a run folder is never "
                    "overwritten: choose another --out"
                )
            return
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
            raise FileExistsError(
                f"{self.folder} exists and is not a run folder (no run.json); it is never "
                "overwritten: choose another --out"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "recipe.toml").write_text(self.recipe.text, encoding="utf-8")
        record = {
            "format": _RUN_FORMAT,
            "recipe": self.recipe.name,
            "recipe_sha256": self.recipe.sha256,
            "mdwarf_zoo": __version__,
            "recipe_source": str(self.recipe.source) if self.recipe.source else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_text(identity, json.dumps(record, indent=2) + "\n")

    def member_folder(self, member: AutoencoderMember) -> Path:
        return self.folder / "members" / member.name

    @property
    def synthetic_path(self) -> Path:
        return self.folder / "data" / "synthetic.h5"

    @property
    def observed_path(self) -> Path:
        return self.folder / "data" / "observed.h5"

    @property
    def table_path(self) -> Path:
        return self.folder / f"predictions.{self.recipe.outputs.table_format}"

    def status(self) -> dict[str, Any]:
        """Which stages and members are finished."""
        members = {m.name: self._member_state(m) for m in self.recipe.members()}
        return {
            "sets": self.synthetic_path.is_file() and self.observed_path.is_file(),
            "members": members,
            "ensemble": self.table_path.is_file(),
            "report": (self.folder / "report.md").is_file(),
        }

    def _member_state(self, member: AutoencoderMember) -> list[str]:
        folder = self.member_folder(member)
        done = []
        if (folder / "pretrained").is_dir():
            done.append("pretrain")
        if (folder / "transferred").is_dir() or (
            (folder / "pretrained").is_dir() and not self.recipe.transfer.enabled
        ):
            done.append("transfer")
        if (folder / "latents.npz").is_file():
            done.append("encode")
        if (folder / "predictions.npz").is_file():
            done.append("regressors")
        return done

    # -- driving -----------------------------------------------------------------------------
    def run(self, stage: str | None = None, member: int | None = None) -> RunResult:
        """Run the recipe, or one stage, or one member's stages.

        Args:
            stage: one of :data:`STAGES` to run only that stage (its inputs must be finished);
                ``None`` runs every stage that is not finished yet.
            member: run the member stages of member ``member`` only (with ``stage`` one of
                :data:`MEMBER_STAGES`, only that stage of it).

        Returns:
            A :class:`RunResult`.

        Raises:
            ValueError: for an unknown stage or member, or a stage whose inputs are missing
                (the message says which command produces them).
        """
        started = time.perf_counter()
        if self.recipe.strategy == "multi_worker":
            get_strategy("multi_worker")  # without TF_CONFIG: a clear error before any work
        members = self.recipe.members()
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        if member is not None:
            if not 0 <= member < len(members):
                raise ValueError(f"--member {member}: the recipe has members 0..{len(members) - 1}")
            if stage is not None and stage not in MEMBER_STAGES:
                raise ValueError(
                    f"--member runs member stages ({', '.join(MEMBER_STAGES)}); "
                    f"stage {stage!r} is for the whole run"
                )
            members = [members[member]]
        result = RunResult(self.folder)
        wanted = STAGES if stage is None else (stage,)
        if member is not None and stage is None:
            wanted = ("sets", *MEMBER_STAGES)
        if "sets" in wanted:
            sets.build_sets(self)
        for name in MEMBER_STAGES:
            if name in wanted:
                for item in members:
                    getattr(stages, f"stage_{name}")(self, item)
        if not self.chief:
            # A multi-worker job's other workers are done after the last training step they
            # took part in; the ensemble and the report are the chief's (no training).
            result.seconds = time.perf_counter() - started
            return result
        if "ensemble" in wanted:
            result.table = self.ensemble()
        if "report" in wanted:
            result.report, result.plots, result.diagnostics = report.write_report(self)
        result.seconds = time.perf_counter() - started
        return result

    def require(self, path: Path, what: str, command: str) -> None:
        if not path.exists():
            raise ValueError(
                f"{what} is not finished ({path} is missing); run `mdwarf-zoo train "
                f"{self.recipe_argument()} --out {self.folder} {command}` first"
            )

    def recipe_argument(self) -> str:
        return str(self.recipe.source) if self.recipe.source else self.recipe.name

    def read(self, path: Path):

        self.require(path, "the sets stage", "--stage sets")
        return read_set(path)

    def lock(self, folder: Path) -> contextlib.AbstractContextManager:
        if not self.chief:
            return contextlib.nullcontext()  # the chief holds the lock for the whole job
        return cluster.MemberLock(folder / ".lock")

    def agree(self, done: bool) -> bool:
        """Whether a model's output is finished, as the chief sees it, on every worker.

        Without ``"multi_worker"`` this is ``done``. With it, it is a collective (an all-reduce
        of the chief's flag), so it is also a barrier: every worker takes the same train-or-skip
        decision at the same point, and whatever the chief wrote before reaching it (a saved
        model, the latents) is on disk when the others go on. Every worker calls it the same
        number of times in the same order.
        """
        if self.recipe.strategy != "multi_worker":
            return done
        return agree(get_strategy("multi_worker"), done and self.chief)

    def label_scaling(self, labels: np.ndarray) -> dict[str, dict[str, float]]:
        """Per parameter the mean and standard deviation of the synthetic labels
        (``mdwarf_zoo.pipeline.LabelScaler``); regressors learn ``(label - mean) / std``."""

        names = self.recipe.regressors.parameters
        scaler = LabelScaler.fit(labels[:, [_COLUMN[n] for n in names]], names)
        return {
            name: {"kind": "standard", "mean": float(mean), "std": float(std)}
            for name, mean, std in zip(names, scaler.mean, scaler.std, strict=True)
        }

    # -- ensemble and report ------------------------------------------------------------------
    def gather(self) -> dict[str, dict[str, np.ndarray]]:
        members = self.recipe.members()
        missing = [
            m.index for m in members if not (self.member_folder(m) / "predictions.npz").is_file()
        ]
        if missing:
            raise ValueError(
                f"the ensemble needs every member; members {missing} are not finished in "
                f"{self.folder}: run `mdwarf-zoo train {self.recipe_argument()} --out "
                f"{self.folder} --member I` for each (or without --stage to run all)"
            )
        gathered: dict[str, dict[str, list]] = {}
        for member in members:
            with np.load(self.member_folder(member) / "predictions.npz") as saved:
                for name in self.recipe.regressors.parameters:
                    entry = gathered.setdefault(
                        name, {"mse": [], "observed": [], "no_transfer": [], "members": []}
                    )
                    entry["mse"].extend(saved[f"{name}_validation_mse"].tolist())
                    entry["observed"].append(saved[f"{name}_observed"])
                    entry["no_transfer"].append(saved[f"{name}_observed_no_transfer"])
                    entry["members"].extend([member.index] * len(saved[f"{name}_observed"]))
        return {
            name: {
                "mse": np.array(v["mse"]),
                "observed": np.concatenate(v["observed"]),
                "no_transfer": np.concatenate(v["no_transfer"]),
                "members": np.array(v["members"]),
            }
            for name, v in gathered.items()
        }

    def keep(self) -> int | None:
        return self.recipe.ensemble.best

    def ensemble(self) -> Path:
        """Best-K selection and KDE estimates into ``predictions.<fmt>`` (with the recipe's
        error model and latent alignment); writes ``pipeline.json`` and, with an alignment,
        each member's ``alignment_reference.npz``. The estimate is that of the run folder
        loaded as a pipeline (:meth:`PretrainedPipeline.predict`), so ``mdwarf-zoo predict``
        on the folder reproduces the table."""
        if self.table_path.is_file():
            return self.table_path
        gathered = self.gather()
        observed = self.read(self.observed_path)
        synthetic = self.read(self.synthetic_path)
        if self.recipe.ensemble.latent_alignment is not None:
            export.write_alignment_references(self, synthetic)
        export.write_pipeline(self, gathered, synthetic)
        pipeline = load_pipeline(self.folder)
        if self.recipe.ensemble.gap == "simulator":
            gap, scale = sets.measure_simulated_errors(self, pipeline, synthetic.labels)
            twins = (
                f"{sets.GAP_TWINS} held-out simulated stars and their observed twins "
                "(calibrated GapConfig) through this pipeline"
            )
            export.record_gap(
                self,
                pipeline.manifest,
                gap,
                f"measured on the simulator: {twins}, sqrt(mse observed - mse synthetic)",
                scale,
                f"measured on the simulator: {twins}, the 68.27 % quantile of |estimate - "
                "true| / error (spread+validation+gap with the measured gap) in "
                f"{self.recipe.ensemble.error_scale_bins} bins of the estimate at most "
                "(coverage_profile)",
            )
        table = pipeline.predict(observed.flux, observed.identifiers, progress=False)
        for key in ("pipeline", "transfer"):
            table.meta.pop(key, None)
        table.meta["recipe"] = self.recipe.name
        table.meta["recipe_sha256"] = self.recipe.sha256
        if self.recipe.calibration.labels is not None:
            table = self._calibrated(table)
        partial = self.table_path.with_name(f".partial{self.table_path.suffix}")
        if partial.exists():
            partial.unlink()
        write_table(table, partial)
        os.replace(partial, self.table_path)
        return self.table_path

    def _calibrated(self, table):
        """``table`` corrected by the recipe's ``[calibration]`` (its known labels of some
        observed stars); the calibration is kept as ``calibration.json`` in the run folder."""

        settings = self.recipe.calibration
        where = f"recipe {self.recipe_argument()}: [calibration] labels = {str(settings.labels)!r}"
        labels = load_labels_table(settings.labels, what=f"{where}:")
        if settings.id_column not in labels.colnames:
            raise ValueError(
                f"{where}: no id_column {settings.id_column!r} (columns {labels.colnames}); "
                "expected a column naming the observed stars as the observed set does (e.g. "
                f"{list(table['id'][:3])})"
            )
        try:
            calibration = calibrate(
                table,
                None,
                labels,
                id_column=settings.id_column,
                parameters=None if settings.parameters is None else list(settings.parameters),
            )
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        # The run's own artefact, rewritten whenever the ensemble stage runs again.
        calibration.save(self.folder / "calibration.json", overwrite=True)
        logger.info("%r", calibration)
        calibrated = calibration.apply(table)
        calibrated.meta["calibration_labels"] = str(settings.labels)
        return calibrated
