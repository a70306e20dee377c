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
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from mdwarf_zoo._files import atomic_savez as _atomic_savez
from mdwarf_zoo._version import __version__
from mdwarf_zoo.diagnostics import drift_of_latents, ks_statistics, mmd, nearest_neighbour_distances
from mdwarf_zoo.hub import from_pretrained, read_manifest, save_pretrained
from mdwarf_zoo.hub.catalogue import PIPELINE_FILE, PIPELINE_FORMAT
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.labels import PARAMETER_UNITS, PARAMETERS
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline import (
    LabelScaler,
    LatentScaler,
    RegressorJob,
    RegressorSpec,
    RegressorStore,
    predict_ensemble,
    train_regressors,
)
from mdwarf_zoo.pipeline.calibration import calibrate, load_labels_table
from mdwarf_zoo.pipeline.ensemble import ensemble_table, select_best, write_table
from mdwarf_zoo.pipeline.pretrained import load_pipeline, read_template, rest_frame
from mdwarf_zoo.recipes import MEMBER_STAGES, STAGES, AutoencoderMember, Recipe, RecipeError
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.spectra.datasets import (
    SpectrumSet,
    build_training_set,
    load_labels,
    read_set,
    write_set,
)
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.observed import read_spectrum
from mdwarf_zoo.spectra.preprocess import scale
from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra
from mdwarf_zoo.training.distribute import agree, get_strategy, is_chief
from mdwarf_zoo.training.loop import determinism, fit_resumable, split_indices
from mdwarf_zoo.training.transfer import clone_model, transfer

__all__ = ["STAGES", "Run", "join_cluster", "plan"]

logger = logging.getLogger(__name__)

#: A member's alignment reference file (``[ensemble] latent_alignment``).
ALIGNMENT_REFERENCE = "alignment_reference.npz"
_RUN_FORMAT = "mdwarf_zoo.Run/1"


def _atomic_text(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


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
        # only the chief writes into it (see join_cluster and _agree).
        self.chief = join_cluster(recipe)
        self._open()

    # -- the folder --------------------------------------------------------------------------
    def _open(self) -> None:
        identity = self.folder / "run.json"
        if not self.chief:
            _wait_for([identity], "the chief worker to create the run folder")
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
        _atomic_text(identity, json.dumps(record, indent=2) + "\n")

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
            self.build_sets()
        for name in MEMBER_STAGES:
            if name in wanted:
                for item in members:
                    getattr(self, f"_stage_{name}")(item)
        if not self.chief:
            # A multi-worker job's other workers are done after the last training step they
            # took part in; the ensemble and the report are the chief's (no training).
            result.seconds = time.perf_counter() - started
            return result
        if "ensemble" in wanted:
            result.table = self.ensemble()
        if "report" in wanted:
            report = self.report()
            result.report, result.plots, result.diagnostics = report
        result.seconds = time.perf_counter() - started
        return result

    def _require(self, path: Path, what: str, command: str) -> None:
        if not path.exists():
            raise ValueError(
                f"{what} is not finished ({path} is missing); run `mdwarf-zoo train "
                f"{self._recipe_argument()} --out {self.folder} {command}` first"
            )

    def _recipe_argument(self) -> str:
        return str(self.recipe.source) if self.recipe.source else self.recipe.name

    # -- stage: sets ---------------------------------------------------------------------------
    def build_sets(self) -> None:
        """Write ``data/synthetic.h5`` and ``data/observed.h5`` unless they exist."""
        if not self.chief:
            # The other workers of a multi-worker job read the chief's files instead of building
            # the sets themselves: every worker must feed the data-parallel steps the very same
            # arrays, and a set built elsewhere (another CPU, numpy or BLAS build; PHOENIX files
            # or observed FITS files read through a per-node mount) may differ in its last bits,
            # or, for a PHOENIX build, would race the chief on data/phoenix_build.h5. Waiting
            # costs nothing: training cannot start before the sets exist anyway.
            _wait_for(
                [self.synthetic_path, self.observed_path], "the chief worker to build the sets"
            )
            return
        (self.folder / "data").mkdir(exist_ok=True)
        # Member jobs started together wait for the one that builds the sets.
        with _MemberLock(self.folder / "data" / ".lock", wait=True):
            if not self.synthetic_path.is_file():
                self._write_set(self.synthetic_path, self._synthetic_set())
            if not self.observed_path.is_file():
                self._write_set(self.observed_path, self._observed_set())

    def _write_set(self, path: Path, spectrum_set) -> None:

        partial = path.with_name(f".{path.name}.partial.h5")
        if partial.exists():
            partial.unlink()
        write_set(partial, spectrum_set)
        os.replace(partial, path)
        logger.info("wrote %s (%d spectra)", path, len(spectrum_set))

    def _random_labels(
        self, n: int, ranges: dict[str, tuple[float, float]], seed: int
    ) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.column_stack([rng.uniform(*ranges[name], n) for name in PARAMETERS])

    def _simulated_flux(self, labels: np.ndarray, *, observed: bool) -> np.ndarray:
        """Simulator flux on the window, through the recipe's normalisation and scaling."""

        prep = self.recipe.preprocessing
        preprocessor = prep.preprocessor()
        grid = preprocessor.grid
        if prep.normalisation != "none":
            # The continuum fit needs the margin: simulate window + margin, then finish().
            low, high = preprocessor.span
            grid = WavelengthGrid(low, high, prep.window[2])
        synthetic = self.recipe.synthetic
        flux = synthetic_spectra(
            labels,
            grid,
            seed=synthetic.line_list_seed,
            resolving_power=prep.resolving_power,
            workers=synthetic.workers,
            progress=self.progress,
        )
        if observed:
            source = self.recipe.observed
            flux = observe(
                flux,
                labels,
                snr=source.snr,
                seed=source.seed,
                grid=grid,
                resolving_power=prep.resolving_power,
                synthetic_seed=synthetic.line_list_seed,
                workers=synthetic.workers,
                progress=self.progress,
                **source.gap,
            )
        if prep.normalisation == "none":
            return scale(flux, prep.scaling).astype(np.float32)
        return np.stack([preprocessor.finish(grid.wavelength, row)[0] for row in flux]).astype(
            np.float32
        )

    def _synthetic_set(self):

        source = self.recipe.synthetic
        preprocessor = self.recipe.preprocessing.preprocessor()
        if source.source == "set":
            spectrum_set = read_set(source.path)
            self._check_set(spectrum_set, source.path, "[data.synthetic] path", labelled=True)
            return spectrum_set
        if source.labels is not None:
            labels = load_labels(source.labels)
            if source.limit is not None:
                labels = labels[: source.limit]
        else:
            labels = self._random_labels(source.n, source.label_ranges, self.recipe.seed)
        if source.source == "phoenix":
            # build_training_set resumes an interrupted build of the same file.
            partial = self.folder / "data" / "phoenix_build.h5"
            build_training_set(
                source.grid,
                labels,
                partial,
                preprocessor=preprocessor,
                workers=source.workers,
                progress=self.progress,
            )
            return read_set(partial)
        flux = self._simulated_flux(labels, observed=False)
        return SpectrumSet(
            flux=flux,
            wavelength=preprocessor.grid.wavelength,
            labels=labels,
            identifiers=[f"synthetic_{i:06d}" for i in range(len(labels))],
            preprocessing=preprocessor,
            provenance={
                "source": "mdwarf_zoo.spectra.simulate (toy simulator; not PHOENIX)",
                "recipe": self.recipe.name,
                "line_list_seed": source.line_list_seed,
                "labels": str(source.labels) if source.labels else "uniform random",
                "seed": self.recipe.seed,
            },
            kind="training",
        )

    def _observed_set(self):

        source = self.recipe.observed
        preprocessor = self.recipe.preprocessing.preprocessor()
        if source.source == "set":
            spectrum_set = read_set(source.path)
            self._check_set(spectrum_set, source.path, "[data.observed] path", labelled=False)
            if source.labels is not None:
                spectrum_set.labels = load_labels(source.labels)
            return spectrum_set
        if source.source == "files":
            return self._observed_files(preprocessor)
        # Its own stream, so the observed labels never repeat the synthetic ones.
        labels = self._random_labels(source.n, source.label_ranges, source.seed + 7919)
        flux = self._simulated_flux(labels, observed=True)
        return SpectrumSet(
            flux=flux,
            wavelength=preprocessor.grid.wavelength,
            labels=labels,
            identifiers=[f"observed_{i:05d}" for i in range(len(labels))],
            preprocessing=preprocessor,
            provenance={
                "source": "mdwarf_zoo.spectra.simulate observe() (toy simulator)",
                "recipe": self.recipe.name,
                "snr": source.snr,
                "seed": source.seed,
                "gap": dict(source.gap),
                "labels": "true labels of the simulation",
            },
            kind="observed",
        )

    def _observed_files(self, preprocessor):

        source = self.recipe.observed
        low, high = preprocessor.span
        template = None
        if not source.no_rv:
            template = read_template(
                source.template, (low, high), max(map(abs, source.rv_range[:2]))
            )
        fluxes, names, velocities = [], [], []
        for path in tqdm(source.files, desc="observed files", disable=not self.progress):
            spectrum = read_spectrum(path, window=(low, high))
            if template is not None:
                rv_min, rv_max, rv_step = source.rv_range
                spectrum, velocity = rest_frame(
                    path, spectrum, template, preprocessor, (rv_min, rv_max), rv_step=rv_step
                )
                velocities.append({"file": str(path), **velocity.record()})
            fluxes.append(preprocessor(spectrum).flux)
            names.append(str(spectrum.metadata.get("object") or Path(path).name))
        labels = load_labels(source.labels) if source.labels is not None else None
        return SpectrumSet(
            flux=np.stack(fluxes),
            wavelength=preprocessor.grid.wavelength,
            labels=labels,
            identifiers=names,
            preprocessing=preprocessor,
            provenance={
                "files": [str(p) for p in source.files],
                "radial_velocities": velocities if template is not None else "none: no_rv = true",
            },
            kind="observed",
        )

    def _check_set(self, spectrum_set, path: Path, key: str, *, labelled: bool) -> None:
        pixels = self.recipe.preprocessing.pixels
        if spectrum_set.flux.shape[1] != pixels:
            raise ValueError(
                f"{key} = {str(path)!r} has {spectrum_set.flux.shape[1]} pixels but "
                f"[preprocessing] window gives {pixels}"
            )
        if labelled and spectrum_set.labels is None:
            raise ValueError(f"{key} = {str(path)!r} has no labels; a training set needs them")

    def _read(self, path: Path):

        self._require(path, "the sets stage", "--stage sets")
        return read_set(path)

    # -- member stages --------------------------------------------------------------------------
    def _metadata(self, member: AutoencoderMember, **extra: Any) -> dict[str, Any]:
        return {
            "preprocessor": self.recipe.preprocessing.preprocessor(),
            "recipe": {"name": self.recipe.name, "sha256": self.recipe.sha256},
            "provenance": {
                "run_member": member.name,
                "seed": member.seed,
                "architecture": member.architecture,
                "overrides": member.overrides,
                "synthetic": self.recipe.synthetic.source,
                "observed": self.recipe.observed.source,
            },
            **extra,
        }

    def _lock(self, folder: Path) -> contextlib.AbstractContextManager:
        if not self.chief:
            return contextlib.nullcontext()  # the chief holds the lock for the whole job
        return _MemberLock(folder / ".lock")

    def _agree(self, done: bool) -> bool:
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

    def _train(
        self,
        build: Callable[[], Any],
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        seed: int,
        checkpoint: Path,
        validation: tuple[np.ndarray, np.ndarray] | None,
        description: str,
    ) -> tuple[Any, list[dict[str, float]]]:
        """Build a compiled model under the recipe's strategy and train it resumably with
        :func:`~mdwarf_zoo.training.loop.fit_resumable`, the one loop of every strategy: the
        same batches, and the checkpoint ``<checkpoint>.npz`` (written by the chief only)."""

        with get_strategy(self.recipe.strategy).scope():
            model = build()
        history = fit_resumable(
            model,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            checkpoint=checkpoint.with_name(checkpoint.name + ".npz"),
            validation=validation,
            description=description,
            progress=self.progress,
        )
        if self.recipe.strategy == "multi_worker":
            # Barrier: every worker has read the checkpoint (a resumed job that had finished
            # all epochs trains no step, so no collective ordered it) before the chief saves
            # the model and deletes the checkpoint.
            self._agree(True)
            # Evaluation, prediction and saving are local from here on: a copy outside the
            # strategy (the weights are mirrored on write, so every worker reads its own equal
            # copy without a collective), so no worker waits for another in predict().
            model = _inference_copy(model)
        return model, history

    def _stage_pretrain(self, member: AutoencoderMember) -> None:

        folder = self.member_folder(member)
        if self._agree((folder / "pretrained").is_dir()):
            return
        if self.chief:
            folder.mkdir(parents=True, exist_ok=True)
        with self._lock(folder):
            synthetic = self._read(self.synthetic_path)
            settings = self.recipe.autoencoders
            train, val = split_indices(len(synthetic), settings.validation_split, member.seed)
            determinism(member.seed)
            flux = synthetic.flux
            model, history = self._train(
                lambda: create_model(
                    member.architecture,
                    input_length=synthetic.flux.shape[1],
                    seed=member.seed,
                    precision=settings.precision,
                    **member.overrides,
                ),
                flux[train],
                flux[train],
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                seed=member.seed,
                checkpoint=folder / "pretrain.ckpt",
                validation=(flux[val], flux[val]),
                description=f"{member.name} pretrain {member.architecture}",
            )
            if not self.chief:
                return
            metrics = {
                "train_loss": history[-1]["loss"] if history else None,
                "validation_loss": history[-1].get("val_loss") if history else None,
                "reconstruction_mse_synthetic_validation": _mse(model, flux[val]),
            }
            save_pretrained(
                _inference_copy(model),
                folder / "pretrained",
                **self._metadata(
                    member, metrics=metrics, training=_history_text(history, "pretraining")
                ),
            )
            _remove_checkpoint(folder / "pretrain.ckpt")

    def _stage_transfer(self, member: AutoencoderMember) -> None:
        """Stage 2 through :func:`mdwarf_zoo.transfer` (resumable: its checkpoint in the member
        folder), saved as ``transferred`` with the observed reconstruction error before and
        after and the drift of the synthetic latents."""
        folder = self.member_folder(member)
        settings = self.recipe.transfer
        if not settings.enabled or self._agree((folder / "transferred").is_dir()):
            return
        self._require(
            folder / "pretrained", f"pretraining of {member.name}", f"--member {member.index}"
        )
        with self._lock(folder):
            flux = self._read(self.observed_path).flux
            source = from_pretrained(folder / "pretrained")
            # The synthetic spectra: replayed by the anchored mode, and (chief) the drift.
            anchored = settings.mode == "anchored"
            anchors = self._read(self.synthetic_path).flux if anchored or self.chief else None
            before = _mse(source, flux) if self.chief else None
            tuned = transfer(
                source,
                flux,
                freeze=(source.default_freeze if settings.freeze == "default"
                        else list(settings.freeze) if isinstance(settings.freeze, tuple)
                        else settings.freeze),
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                learning_rate=settings.learning_rate,
                validation_split=settings.validation_split,
                seed=member.seed + 100_000,
                mode=settings.mode,
                anchor_spectra=anchors,
                anchor_weight=settings.anchor_weight if anchored else None,
                checkpoint=folder / "transfer.ckpt.npz",
                strategy=self.recipe.strategy,
                progress=self.progress,
            )
            if not self.chief:
                return
            info = tuned.transfer_info
            metrics = {
                "reconstruction_mse_observed_before": before,
                "reconstruction_mse_observed_after": _mse(tuned, flux),
                "latent_drift": info["latent_drift"],
            }
            records = [dict(zip(tuned.history.history, values, strict=True))
                       for values in zip(*tuned.history.history.values(), strict=True)]
            save_pretrained(
                _inference_copy(tuned),
                folder / "transferred",
                **self._metadata(
                    member,
                    metrics=metrics,
                    extra={
                        "transfer": {
                            "mode": settings.mode,
                            **({"anchor_weight": settings.anchor_weight} if anchored else {}),
                            "frozen_layers": info["frozen_layers"],
                            "learning_rate": info["learning_rate"],
                            "epochs": settings.epochs,
                            "batch_size": settings.batch_size,
                            "validation_split": settings.validation_split,
                        }
                    },
                    training=_history_text(records, "transfer learning"),
                ),
            )
            _remove_checkpoint(folder / "transfer.ckpt")

    def _stage_encode(self, member: AutoencoderMember) -> None:

        folder = self.member_folder(member)
        if not self.chief or (folder / "latents.npz").is_file():
            return
        self._require(
            folder / "pretrained", f"pretraining of {member.name}", f"--member {member.index}"
        )
        if self.recipe.transfer.enabled:
            self._require(
                folder / "transferred", f"transfer of {member.name}", f"--member {member.index}"
            )
        synthetic = self._read(self.synthetic_path)
        observed = self._read(self.observed_path)
        original = from_pretrained(folder / "pretrained")
        tuned = (
            from_pretrained(folder / "transferred") if self.recipe.transfer.enabled else original
        )
        transferred = {}
        if tuned is not original:
            # The synthetic spectra through the fine-tuned encoder: the latent drift.
            transferred["synthetic_transferred"] = encode(tuned, synthetic.flux)
        _atomic_savez(
            folder / "latents.npz",
            **transferred,
            synthetic=encode(original, synthetic.flux),
            observed=encode(tuned, observed.flux),
            observed_no_transfer=encode(original, observed.flux),
            reconstruction_mse_observed=np.array(_mse(tuned, observed.flux)),
            reconstruction_mse_observed_no_transfer=np.array(_mse(original, observed.flux)),
        )

    def label_scaling(self, labels: np.ndarray) -> dict[str, dict[str, float]]:
        """Per parameter the mean and standard deviation of the synthetic labels
        (``mdwarf_zoo.pipeline.LabelScaler``); regressors learn ``(label - mean) / std``."""

        names = self.recipe.regressors.parameters
        scaler = LabelScaler.fit(labels[:, [_COLUMN[n] for n in names]], names)
        return {
            name: {"kind": "standard", "mean": float(mean), "std": float(std)}
            for name, mean, std in zip(names, scaler.mean, scaler.std, strict=True)
        }

    def _stage_regressors(self, member: AutoencoderMember) -> None:
        """Stage 3 through :func:`mdwarf_zoo.pipeline.train_regressors` (the member folder as
        its store: resumable, each regressor saved when trained), then every regressor's
        predictions of the observed stars with and without transfer (``predictions.npz``)."""
        folder = self.member_folder(member)
        # With "multi_worker" this is also where the other workers wait for the chief's latents.
        if self._agree((folder / "predictions.npz").is_file()):
            return
        self._require(
            folder / "latents.npz", f"encoding of {member.name}", f"--member {member.index}"
        )
        synthetic = self._read(self.synthetic_path)
        settings = self.recipe.regressors
        parameters = settings.parameters
        with np.load(folder / "latents.npz") as saved:
            latents = {key: saved[key] for key in saved.files}
        if self.chief:
            (folder / "regressors").mkdir(exist_ok=True)
        with self._lock(folder):
            regressors = train_regressors(
                latents["synthetic"],
                synthetic.labels[:, [_COLUMN[n] for n in parameters]],
                autoencoder=member.name,
                parameters=parameters,
                seeds={name: [_regressor_seed(member, p, k) for k in range(settings.seeds)]
                       for p, name in enumerate(parameters)},
                specs={name: _regressor_spec(settings.settings[name]) for name in parameters},
                scaler=self._label_scaler(synthetic.labels),
                standardize_latents=settings.standardize_latents,
                fused=settings.fused,
                progress=self.progress,
                store=_MemberRegressors(self, member),
            )
            if not self.chief:
                return
            named = {member.name: latents["observed"]}
            observed, _ = predict_ensemble(regressors, named, exact=True)
            named = {member.name: latents["observed_no_transfer"]}
            no_transfer, _ = predict_ensemble(regressors, named, exact=True)
            results: dict[str, np.ndarray] = {}
            scaler = regressors[0].latent_scaler
            if scaler is not None:
                # Kept with the predictions it produced, for pipeline.json: the regressors read
                # these standardised latents.
                results["latent_mean"], results["latent_std"] = scaler.mean, scaler.std
            for name in parameters:
                results[f"{name}_validation_mse"] = np.array(
                    [r.validation_mse for r in regressors if r.parameter == name]
                )
                results[f"{name}_observed"] = observed[name]
                results[f"{name}_observed_no_transfer"] = no_transfer[name]
            _atomic_savez(folder / "predictions.npz", **results)

    def _label_scaler(self, labels: np.ndarray) -> LabelScaler:
        """The regressors' label standardisation (:meth:`label_scaling`) as a scaler."""
        names = self.recipe.regressors.parameters
        scaling = self.label_scaling(labels)
        return LabelScaler(names, [scaling[n]["mean"] for n in names],
                           [scaling[n]["std"] for n in names])

    def _save_regressor(self, member, model, out: Path, name: str,
                        scaling: dict[str, dict[str, float]], val_mse: float, training: str,
                        extra: dict[str, Any]) -> None:
        """A trained latent regressor as a pretrained folder (one-by-one and fused paths)."""

        save_pretrained(
            _inference_copy(model),
            out,
            **self._metadata(
                member,
                labels=[name],
                label_units=[PARAMETER_UNITS[name]],
                label_scaling={name: scaling[name]},
                metrics={"validation_mse_scaled": val_mse},
                training=training,
                **extra,
            ),
        )

    # -- ensemble and report ------------------------------------------------------------------
    def _gather(self) -> dict[str, dict[str, np.ndarray]]:
        members = self.recipe.members()
        missing = [
            m.index for m in members if not (self.member_folder(m) / "predictions.npz").is_file()
        ]
        if missing:
            raise ValueError(
                f"the ensemble needs every member; members {missing} are not finished in "
                f"{self.folder}: run `mdwarf-zoo train {self._recipe_argument()} --out "
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

    def _keep(self) -> int | None:
        return self.recipe.ensemble.best

    def ensemble(self) -> Path:
        """Best-K selection and KDE estimates into ``predictions.<fmt>`` (with the recipe's
        error model and latent alignment); writes ``pipeline.json`` and, with an alignment,
        each member's ``alignment_reference.npz``. The estimate is that of the run folder
        loaded as a pipeline (:meth:`PretrainedPipeline.predict`), so ``mdwarf-zoo predict``
        on the folder reproduces the table."""
        if self.table_path.is_file():
            return self.table_path
        gathered = self._gather()
        observed = self._read(self.observed_path)
        synthetic = self._read(self.synthetic_path)
        if self.recipe.ensemble.latent_alignment is not None:
            self._write_alignment_references(synthetic)
        self._write_pipeline(gathered, synthetic)
        table = load_pipeline(self.folder).predict(
            observed.flux, observed.identifiers, progress=False
        )
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
        where = f"recipe {self._recipe_argument()}: [calibration] labels = {str(settings.labels)!r}"
        labels = load_labels_table(settings.labels, what=f"{where}:")
        if settings.id_column not in labels.colnames:
            raise ValueError(
                f"{where}: no id_column {settings.id_column!r} (columns {labels.colnames}); "
                "expected a column naming the observed stars as the observed set does (e.g. "
                f"{list(table['id'][:3])})"
            )
        try:
            calibration = calibrate(
                table, None, labels, id_column=settings.id_column,
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

    def _chosen(self, gathered: dict[str, dict[str, np.ndarray]]) -> dict[str, set[int]]:
        """Per parameter, the rows of ``gathered`` the best-K selection keeps."""

        keep = self._keep()
        return {
            name: set(select_best(g["mse"], keep or len(g["mse"])).tolist())
            for name, g in gathered.items()
        }

    def _latent_scaler(self, member: AutoencoderMember):
        """The member's ``LatentScaler`` (``None`` without ``standardize_latents``), as its
        regressors stage fitted it."""

        if not self.recipe.regressors.standardize_latents:
            return None
        path = self.member_folder(member) / "predictions.npz"
        with np.load(path) as saved:
            if "latent_mean" not in saved.files:
                raise ValueError(
                    f"{path} holds no latent scaling, but the recipe has [regressors] "
                    f"standardize_latents = true; delete {path.parent / 'regressors'} and "
                    f"{path} to train the member's regressors again"
                )
            return LatentScaler(saved["latent_mean"], saved["latent_std"])

    def _write_alignment_references(self, synthetic) -> None:
        """Per member ``alignment_reference.npz``: its synthetic latents (float32) and their
        labels, the target of the latent alignment (also for ``PretrainedPipeline.predict``)."""
        parameters = self.recipe.regressors.parameters
        labels = synthetic.labels[:, [_COLUMN[n] for n in parameters]].astype(np.float64)
        for member in self.recipe.members():
            folder = self.member_folder(member)
            with np.load(folder / "latents.npz") as saved:
                latents = saved["synthetic"].astype(np.float32)
            _atomic_savez(
                folder / ALIGNMENT_REFERENCE,
                synthetic_latents=latents,
                synthetic_labels=labels,
                parameters=np.array(parameters),
            )

    def _write_pipeline(self, gathered: dict[str, dict[str, np.ndarray]], synthetic) -> None:
        keep = self._keep()
        chosen = self._chosen(gathered)
        settings = self.recipe.ensemble
        members = []
        for member in self.recipe.members():
            folder = self.member_folder(member).relative_to(self.folder).as_posix()
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
                "transferred": f"{folder}/transferred" if self.recipe.transfer.enabled else None,
                "regressors": regressors,
            }
            latent_scaler = self._latent_scaler(member)
            if latent_scaler is not None:
                entry["latent_scaling"] = latent_scaler.to_dict()
            if settings.latent_alignment is not None:
                entry["alignment_reference"] = f"{folder}/{ALIGNMENT_REFERENCE}"
            members.append(entry)
        manifest = {
            "format": PIPELINE_FORMAT,
            "zoo_version": __version__,
            "recipe": {"name": self.recipe.name, "sha256": self.recipe.sha256},
            "parameters": list(self.recipe.regressors.parameters),
            "units": {n: PARAMETER_UNITS[n] for n in self.recipe.regressors.parameters},
            "label_scaling": self.label_scaling(synthetic.labels),
            "preprocessing": self.recipe.preprocessing.preprocessor().to_dict(),
            "transfer": {
                "enabled": self.recipe.transfer.enabled,
                "freeze": self.recipe.transfer.freeze
                if not isinstance(self.recipe.transfer.freeze, tuple)
                else list(self.recipe.transfer.freeze),
                "epochs": self.recipe.transfer.epochs,
                "learning_rate": self.recipe.transfer.learning_rate,
                "batch_size": self.recipe.transfer.batch_size,
                "validation_split": self.recipe.transfer.validation_split,
                "mode": self.recipe.transfer.mode,
            },
            "ensemble": {"best": keep, "error_model": settings.error_model},
            "members": members,
        }
        if settings.latent_alignment is not None:
            manifest["alignment"] = {
                "method": settings.latent_alignment,
                "neighbours": settings.alignment_neighbours,
                "resamples": settings.alignment_resamples,
                "seed": self.recipe.seed,
            }
        _atomic_text(self.folder / PIPELINE_FILE, json.dumps(manifest, indent=2) + "\n")

    def report(self) -> tuple[Path, list[Path], Path]:
        """``diagnostics.json``, the plots and ``report.md``."""


        self._require(self.table_path, "the ensemble stage", "--stage ensemble")
        gathered = self._gather()
        observed = self._read(self.observed_path)
        table = Table.read(self.table_path)
        diagnostics: dict[str, Any] = {
            "recipe": self.recipe.name,
            "recipe_sha256": self.recipe.sha256,
            "n_observed": len(observed),
            "members": {},
        }
        for member in self.recipe.members():
            folder = self.member_folder(member)

            entry = {"pretrained": read_manifest(folder / "pretrained").get("metrics", {})}
            if self.recipe.transfer.enabled:
                entry["transferred"] = read_manifest(folder / "transferred").get("metrics", {})
            diagnostics["members"][member.name] = entry
        diagnostics["domain_gap"] = self._domain_gap()
        if observed.labels is not None:
            diagnostics["accuracy"] = {
                "transfer": _accuracy(table, observed.labels, self.recipe.regressors.parameters),
                "no_transfer": self._no_transfer_accuracy(gathered, observed),
            }
        diagnostics_path = self.folder / "diagnostics.json"
        _atomic_text(diagnostics_path, json.dumps(diagnostics, indent=2) + "\n")
        plots = self._plots(table, observed) if self.recipe.outputs.plots else []
        sha = hashlib.sha256(self.recipe.text.encode("utf-8")).hexdigest()
        lines = [
            f"# Run of recipe `{self.recipe.name}`",
            "",
            f"- recipe sha256: `{sha}`",
            f"- mdwarf_zoo {__version__}",
            f"- run folder: `{self.folder}`",
            f"- predictions: `{self.table_path.name}` ({len(table)} spectra)",
            f"- members: {len(self.recipe.members())}; regressors per parameter: "
            f"{len(self.recipe.members()) * self.recipe.regressors.seeds}, best kept: "
            f"{self._keep() or 'all'}",
            f"- errors: `{self.recipe.ensemble.error_model}`; latent standardisation: "
            f"{'on' if self.recipe.regressors.standardize_latents else 'off'}; latent "
            f"alignment: {self._alignment_text()}",
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
            for name in self.recipe.regressors.parameters:
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
        lines += ["## Recipe", "", "```toml", self.recipe.text.rstrip(), "```", ""]
        report_path = self.folder / "report.md"
        _atomic_text(report_path, "\n".join(lines))
        return report_path, plots, diagnostics_path

    def _domain_gap(self) -> dict[str, Any]:
        """The synthetic gap (``mdwarf_zoo.diagnostics``): mean nearest-synthetic-neighbour
        distance of the observed spectra in flux space and, per member, in latent space before
        and after transfer (MB24: 2.72 and 0.086), with the mean per-dimension KS statistic and
        the MMD of the latents."""

        synthetic = self._read(self.synthetic_path)
        observed = self._read(self.observed_path)
        result: dict[str, Any] = {
            "flux_nn_distance": float(
                nearest_neighbour_distances(observed.flux, synthetic.flux).mean()
            )
        }
        for member in self.recipe.members():
            with np.load(self.member_folder(member) / "latents.npz") as saved:
                syn, before, after = (
                    saved["synthetic"],
                    saved["observed_no_transfer"],
                    saved["observed"],
                )
                result[member.name] = {
                    "latent_nn_distance_before": float(
                        nearest_neighbour_distances(before, syn).mean()
                    ),
                    "latent_nn_distance_after": float(
                        nearest_neighbour_distances(after, syn).mean()
                    ),
                    "ks_mean_before": float(ks_statistics(syn, before).mean()),
                    "ks_mean_after": float(ks_statistics(syn, after).mean()),
                    "mmd_before": _mmd_or_reason(mmd, syn, before),
                    "mmd_after": _mmd_or_reason(mmd, syn, after),
                    "reconstruction_mse_observed_before": float(
                        saved["reconstruction_mse_observed_no_transfer"]
                    ),
                    "reconstruction_mse_observed_after": float(
                        saved["reconstruction_mse_observed"]
                    ),
                }
                if "synthetic_transferred" in saved.files:
                    result[member.name]["latent_drift"] = drift_of_latents(
                        syn, saved["synthetic_transferred"]
                    )
        return result

    def _alignment_text(self) -> str:
        settings = self.recipe.ensemble
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

    def _no_transfer_accuracy(self, gathered, observed) -> dict[str, dict[str, float]]:

        scaling = self.label_scaling(self._read(self.synthetic_path).labels)
        table = ensemble_table(
            {n: g["no_transfer"] for n, g in gathered.items()},
            observed.identifiers,
            validation_mse={n: g["mse"] for n, g in gathered.items()},
            keep=self._keep(),
            error_model=self.recipe.ensemble.error_model,
            validation_rms={n: np.sqrt(g["mse"]) * scaling[n]["std"] for n, g in gathered.items()},
        )
        return _accuracy(table, observed.labels, self.recipe.regressors.parameters)

    def _plots(self, table, observed) -> list[Path]:
        """``mdwarf_zoo.plots`` figures: predicted vs true (when the observed set has true
        labels) and, per member, the latents before and after transfer (PCA)."""
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            logger.warning(
                "matplotlib is not installed: no plots (pip install 'mdwarf-zoo[plots]')"
            )
            return []
        from mdwarf_zoo.plots import plot_latent_projection, plot_predicted_vs_true

        folder = self.folder / "plots"
        folder.mkdir(exist_ok=True)
        parameters = self.recipe.regressors.parameters
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
                    title=f"{self.recipe.name}: ensemble estimates of the observed set",
                )
            )
        for member in self.recipe.members():
            with np.load(self.member_folder(member) / "latents.npz") as saved:
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


def join_cluster(recipe: Recipe) -> bool:
    """Join the ``TF_CONFIG`` cluster if the recipe's strategy is ``"multi_worker"``; return
    whether this process writes the run folder (the chief:
    ``mdwarf_zoo.training.distribute.is_chief``).

    TensorFlow configures its collective ops once, before its first op, so this must run
    before anything builds a model: ``mdwarf-zoo train`` reads the recipe without building
    its models (``load_recipe(..., check_models=False)``), calls this, then validates fully;
    :class:`Run` calls it too (the same strategy is returned again). Without ``TF_CONFIG``
    (reading a run folder, e.g. ``mdwarf-zoo plan``) the process is a lone chief and
    :meth:`Run.run` stops with ``TF_CONFIG``'s error before any work.

    Raises:
        ValueError: for a malformed ``TF_CONFIG``, or when TensorFlow already ran an op.
    """
    if recipe.strategy != "multi_worker" or not os.environ.get("TF_CONFIG", "").strip():
        return True

    try:
        strategy = get_strategy("multi_worker")
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise ValueError(
            f"strategy 'multi_worker' must join its cluster before TensorFlow runs its first op "
            f"({error}); create the Run (or call mdwarf_zoo.runner.join_cluster) before building "
            "any model, e.g. load the recipe with load_recipe(..., check_models=False) first"
        ) from None
    return is_chief(strategy)


def _wait_for(paths: list[Path], what: str, poll_s: float = 0.5) -> None:
    """Wait until every path exists (a multi-worker job's other workers waiting for the chief),
    saying so every minute. There is no time limit: the chief may build a large set for hours;
    the batch system's job time limit ends a job whose chief died."""
    started = last = time.monotonic()
    while not all(path.exists() for path in paths):
        now = time.monotonic()
        if now - last >= 60:
            missing = [str(path) for path in paths if not path.exists()]
            logger.info("waiting %.0f s for %s (%s)", now - started, what, ", ".join(missing))
            last = now
        time.sleep(poll_s)


def _regressor_seed(member: AutoencoderMember, p_index: int, k: int) -> int:
    """The seed of regressor ``k`` of parameter number ``p_index`` of ``member``."""
    return member.seed * 1000 + 100 * (p_index + 1) + k


def _regressor_spec(settings) -> RegressorSpec:
    """A recipe's ``RegressorSettings`` of one parameter as the pipeline's spec."""
    return RegressorSpec(
        settings.architecture,
        {"learning_rate": settings.learning_rate, **settings.overrides},
        settings.epochs,
        settings.batch_size,
        settings.validation_split,
    )


class _MemberRegressors(RegressorStore):
    """A member's ``regressors/`` folder as :func:`train_regressors`' store: models built
    under the recipe's strategy, checkpoints ``<name>.ckpt.npz``, a regressor saved (chief)
    as a pretrained folder ``<parameter>_seed<k>`` as soon as it is trained, and loaded
    instead of trained when that folder exists."""

    def __init__(self, run: Run, member: AutoencoderMember) -> None:
        self.run, self.member = run, member
        self.folder = run.member_folder(member) / "regressors"
        self.scaling = run.label_scaling(run._read(run.synthetic_path).labels)

    def build(self, create):
        with get_strategy(self.run.recipe.strategy).scope():
            return create()

    def trained(self, model):
        if self.run.recipe.strategy == "multi_worker":
            # Barrier: every worker has read the checkpoint (a resumed job that had finished
            # all epochs trains no step, so no collective ordered it) before the chief saves
            # the model and deletes the checkpoint. Then a copy outside the strategy, so
            # evaluation and prediction are local.
            self.run._agree(True)
            return _inference_copy(model)
        return model

    def load(self, job: RegressorJob):
        out = self.folder / job.name
        if not self.run._agree(out.is_dir()):
            return False, None
        return True, (from_pretrained(out) if self.run.chief else None)

    def checkpoint(self, name: str) -> Path:
        return self.folder / f"{name}.ckpt.npz"

    def save(self, regressor, job: RegressorJob, history, fused: bool) -> None:
        if not self.run.chief:
            return
        extra = {}
        if regressor.latent_scaler is not None:
            extra["extra"] = {"latent_scaling": regressor.latent_scaler.to_dict()}
        what = f"{job.parameter} regressor" + (" (fused)" if fused else "")
        self.run._save_regressor(self.member, regressor.model, self.folder / job.name,
                                 job.parameter, self.scaling, regressor.validation_mse,
                                 _history_text(history, what), extra)

    def release(self, name: str) -> None:
        if self.run.chief:
            self.checkpoint(name).unlink(missing_ok=True)


def _accuracy(table, labels: np.ndarray, parameters) -> dict[str, dict[str, float]]:
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


def _inference_copy(model):
    """A copy of ``model`` with the same weights and a fresh, unbuilt optimizer, so the saved
    folder holds the weights only (no Adam moments: a third of the size)."""

    return clone_model(model)


def _mse(model, flux: np.ndarray) -> float:
    reconstruction = model.predict(flux, batch_size=256, verbose=0)
    return float(np.mean((reconstruction - flux) ** 2))


def _remove_checkpoint(checkpoint: Path) -> None:
    """Delete a finished model's checkpoint (``<checkpoint>.npz`` or the folder)."""
    npz = checkpoint.with_name(checkpoint.name + ".npz")
    if npz.is_file():
        npz.unlink()
    if checkpoint.is_dir():
        shutil.rmtree(checkpoint)


def _history_text(history: list[dict[str, float]], what: str) -> str:
    if not history:
        return f"{what}: resumed after its last epoch"
    last = history[-1]
    parts = ", ".join(f"{key} {value:.4g}" for key, value in last.items())
    return f"{what}: {len(history)} epochs; last epoch {parts}"


class _MemberLock:
    """A lock file that keeps two processes off the same member or stage (``--member`` jobs).

    Args:
        path: the lock file.
        wait: wait for a live holder to finish instead of refusing.
    """

    def __init__(self, path: Path, *, wait: bool = False):
        self.path = path
        self.wait = wait

    def __enter__(self) -> _MemberLock:
        host = socket.gethostname()
        while True:
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.path.read_text(encoding="utf-8").split()
                if len(owner) == 2 and owner[0] == host and not _alive(int(owner[1])):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                if self.wait:
                    time.sleep(2.0)
                    continue
                raise FileExistsError(
                    f"{self.path.parent} is being trained by process {' '.join(owner)}; if "
                    f"that process is gone, delete {self.path}"
                ) from None
            with os.fdopen(handle, "w") as stream:
                stream.write(f"{host} {os.getpid()}")
            return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def plan(recipe: Recipe, folder: Path | None = None) -> list[dict[str, Any]]:
    """One row per member: architecture, overrides, seed, parameters, epochs and the work it
    needs (spectra x epochs), plus what a run folder already holds."""


    state = None
    if folder is not None and (folder / "run.json").is_file():
        state = Run(recipe, folder, progress=False).status()["members"]
    rows = []
    n_synthetic = recipe.synthetic.n
    n_observed = recipe.observed.n
    counts: dict[str, int] = {}
    for member in recipe.members():
        key = f"{member.architecture} {sorted(member.overrides.items())}"
        if key not in counts:
            try:
                model = create_model(
                    member.architecture,
                    input_length=recipe.preprocessing.pixels,
                    **member.overrides,
                )
            except (TypeError, ValueError) as error:
                raise RecipeError(
                    f"recipe {recipe.name!r}: [autoencoders.grid] point {member.grid_point} "
                    f"({member.architecture}, {member.overrides}) cannot be built: {error}"
                ) from None
            counts[key] = int(model.count_params())
            del model
            keras.backend.clear_session()
        rows.append(
            {
                "member": member.index,
                "architecture": member.architecture,
                "overrides": member.overrides,
                "seed": member.seed,
                "parameters": counts[key],
                "pretrain": f"{recipe.autoencoders.epochs} epochs x "
                f"{n_synthetic if n_synthetic else '?'} synthetic spectra",
                "transfer": f"{recipe.transfer.epochs} epochs x "
                f"{n_observed if n_observed else '?'} observed spectra"
                if recipe.transfer.enabled
                else "off",
                "regressors": f"{len(recipe.regressors.parameters)} parameters x "
                f"{recipe.regressors.seeds} seeds",
                "done": ", ".join(state[member.name]) if state else "",
            }
        )
    return rows
