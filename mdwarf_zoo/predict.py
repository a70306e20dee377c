"""Pretrained pipelines: autoencoders + per-parameter latent regressors + label scaling +
preprocessing, stored as one folder, and predictions with errors for new spectra.

A pipeline folder holds ``pipeline.json`` (format ``mdwarf_zoo.Pipeline/1``) and the
``save_pretrained`` folders it names, by paths relative to the folder::

    {"format": "mdwarf_zoo.Pipeline/1", "parameters": ["teff", ...], "units": {...},
     "label_scaling": {"teff": {"kind": "standard", "mean": ..., "std": ...}, ...},
     "preprocessing": {... Preprocessor.to_dict() ...}, "transfer": {... settings ...},
     "ensemble": {"best": K},
     "members": [{"name", "autoencoder": "<synthetic-trained AE>", "transferred": "<fine-tuned
                  AE or null>", "regressors": {"teff": [{"path", "validation_mse",
                  "selected"}, ...]}, "latent_scaling": {"kind": "standard", "mean": [...],
                  "std": [...]}}]}

``latent_scaling`` is optional: when a member has it, its latents are standardised with it
(``mdwarf_zoo.pipeline.LatentScaler``) before its regressors read them; without it (the bundled
``mb24_quickstart_demo``, MB24) the regressors read raw latents.

A run folder of ``mdwarf-zoo train`` is a pipeline folder; :func:`export_pipeline` copies
the selected parts of one into a self-contained folder (this is how the bundled weights entry
``mb24_quickstart_demo`` was made). A published weights entry whose folder holds a
``pipeline.json`` loads as a pipeline too: the entry's own checkpoint is the first member's
synthetic-trained autoencoder, and the rest sits beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["PretrainedPipeline", "export_pipeline", "load_pipeline"]

logger = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = "mdwarf_zoo.Pipeline/1"


@dataclass
class PretrainedPipeline:
    """A loaded pipeline manifest (models are loaded when needed).

    Attributes:
        folder: the pipeline folder.
        manifest: the content of ``pipeline.json``.
    """

    folder: Path
    manifest: dict[str, Any]

    @property
    def parameters(self) -> list[str]:
        return list(self.manifest["parameters"])

    @property
    def members(self) -> list[dict[str, Any]]:
        return list(self.manifest["members"])

    def preprocessor(self):
        """The :class:`~mdwarf_zoo.spectra.preprocess.Preprocessor` the models expect."""
        from mdwarf_zoo.spectra.preprocess import Preprocessor

        return Preprocessor.from_dict(self.manifest["preprocessing"])

    def _path(self, relative: str) -> Path:
        path = (self.folder / relative).resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{self.folder / PIPELINE_FILE} names {relative!r} but {path} does not exist"
            )
        return path

    def read_spectra(
        self,
        sources: list[str | os.PathLike],
        *,
        template: str | None = None,
        progress: bool = True,
    ) -> tuple[np.ndarray, list[str]]:
        """Preprocessed flux of spectrum files (any layout ``read_spectrum`` reads) or of one
        HDF5 set, with one identifier per spectrum (the ``OBJECT`` header or the file name).

        Raises:
            ValueError: for a set on another wavelength grid, or a file that does not cover the
                window plus margin (the message names it).
        """
        from mdwarf_zoo.spectra.datasets import read_set
        from mdwarf_zoo.spectra.observed import read_spectrum

        preprocessor = self.preprocessor()
        paths = [Path(p) for p in sources]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"spectrum file {path} does not exist")
        if len(paths) == 1 and paths[0].suffix in (".h5", ".hdf5"):
            spectrum_set = read_set(paths[0])
            if spectrum_set.flux.shape[1] != preprocessor.grid.size:
                raise ValueError(
                    f"{paths[0]} has {spectrum_set.flux.shape[1]} pixels; the "
                    f"pipeline needs {preprocessor.grid.size} ({preprocessor.grid})"
                )
            return spectrum_set.flux, list(spectrum_set.identifiers)
        template_spectrum = read_spectrum(template) if template else None
        low, high = preprocessor.span
        fluxes, names = [], []
        for path in tqdm(paths, desc="preprocessing", disable=not progress):
            spectrum = read_spectrum(path, window=(low, high))
            if template_spectrum is not None:
                from mdwarf_zoo.spectra.rv import to_rest_frame

                spectrum, _ = to_rest_frame(spectrum, template_spectrum)
            fluxes.append(preprocessor(spectrum).flux)
            names.append(str(spectrum.metadata.get("object") or path.name))
        return np.stack(fluxes).astype(np.float32), names

    def predict(
        self,
        flux: np.ndarray,
        identifiers: list[str] | None = None,
        *,
        transfer: bool = False,
        seed: int = 0,
        progress: bool = True,
        error_model: str = "spread",
    ):
        """Ensemble estimates (KDE mode, -/+ errors) for preprocessed spectra.

        Args:
            flux: (n, pixels) flux on the pipeline's grid, preprocessed with
                :meth:`preprocessor`.
            identifiers: one name per spectrum.
            transfer: fine-tune each synthetic-trained autoencoder on ``flux`` first
                (``mdwarf_zoo.transfer`` with the pipeline's transfer settings); otherwise
                the pipeline's fine-tuned autoencoders (or, without them, the synthetic ones)
                encode the spectra.
            seed: seed of the fine-tuning.
            progress: show a progress bar over members.
            error_model: ``"spread"`` (MB24) or ``"spread+validation"``: each regressor's
                validation rms, ``sqrt(validation_mse) * label std`` from the manifest, added
                in quadrature (see :mod:`mdwarf_zoo.ensemble`).

        Returns:
            An ``astropy.table.Table`` (see :func:`mdwarf_zoo.ensemble.ensemble_table`).

        Raises:
            ValueError: for a member whose ``latent_scaling`` does not match its latent size.
        """
        from mdwarf_zoo.ensemble import ensemble_table
        from mdwarf_zoo.hub import from_pretrained
        from mdwarf_zoo.pipeline import LatentScaler
        from mdwarf_zoo.transfer import transfer as fine_tune

        flux = np.asarray(flux, dtype=np.float32)
        settings = self.manifest.get("transfer") or {}
        scaling = self.manifest["label_scaling"]
        predictions: dict[str, list[np.ndarray]] = {name: [] for name in self.parameters}
        validation_rms: dict[str, list[float]] = {name: [] for name in self.parameters}
        for member in tqdm(self.members, desc="members", disable=not progress):
            if transfer:
                source = from_pretrained(self._path(member["autoencoder"]))
                freeze = settings.get("freeze", "default")
                if freeze == "default":
                    freeze = source.default_freeze
                encoder_model = fine_tune(
                    source,
                    flux,
                    freeze=freeze,
                    epochs=int(settings.get("epochs", 60)),
                    batch_size=int(settings.get("batch_size", 128)),
                    learning_rate=settings.get("learning_rate"),
                    validation_split=float(settings.get("validation_split", 0.2))
                    if len(flux) >= 5
                    else 0.0,
                    seed=seed,
                    progress=False,
                )
            else:
                key = "transferred" if member.get("transferred") else "autoencoder"
                encoder_model = from_pretrained(self._path(member[key]))
            latents = encoder_model.encoder.predict(flux, verbose=0)
            if member.get("latent_scaling"):
                try:
                    latents = LatentScaler.from_dict(member["latent_scaling"]).transform(latents)
                except ValueError as error:
                    raise ValueError(
                        f"{self.folder / PIPELINE_FILE}, member {member.get('name')!r}: "
                        f"latent_scaling does not fit its autoencoder ({error})"
                    ) from None
            for name in self.parameters:
                for regressor in member["regressors"][name]:
                    if not regressor.get("selected", True):
                        continue
                    model = from_pretrained(self._path(regressor["path"]))
                    value = model.predict(latents, verbose=0)[:, 0]
                    predictions[name].append(value * scaling[name]["std"] + scaling[name]["mean"])
                    validation_rms[name].append(
                        float(np.sqrt(regressor.get("validation_mse", np.nan)))
                        * scaling[name]["std"]
                    )
        table = ensemble_table(
            {n: np.stack(v) for n, v in predictions.items()}, identifiers, keep=None,
            error_model=error_model, validation_rms=validation_rms,
        )
        table.meta["pipeline"] = str(self.folder)
        table.meta["transfer"] = bool(transfer)
        return table


def load_pipeline(source: str | os.PathLike) -> PretrainedPipeline:
    """A pipeline from a folder holding ``pipeline.json`` or a published weights entry name.

    Raises:
        FileNotFoundError: when neither exists (the message lists the published entries).
        ValueError: for a manifest of another format.
    """
    folder = Path(source)
    if not (folder / PIPELINE_FILE).is_file():
        if folder.exists():
            raise FileNotFoundError(
                f"{folder} holds no {PIPELINE_FILE}: not a pipeline folder "
                "(a run folder gets one at its ensemble stage)"
            )
        from mdwarf_zoo.hub import download
        from mdwarf_zoo.weights import list_pretrained

        if str(source) not in list_pretrained():
            raise FileNotFoundError(
                f"no pipeline folder {str(source)!r} and no published weights entry of that "
                f"name; entries: {', '.join(list_pretrained()) or 'none'}"
            )
        folder = Path(download(str(source)).folder)
        if not (folder / PIPELINE_FILE).is_file():
            raise FileNotFoundError(
                f"weights entry {source!r} is a single model, not a "
                f"pipeline ({PIPELINE_FILE} missing in {folder})"
            )
    manifest = json.loads((folder / PIPELINE_FILE).read_text(encoding="utf-8"))
    if manifest.get("format") != PIPELINE_FORMAT:
        raise ValueError(
            f"{folder / PIPELINE_FILE} has format {manifest.get('format')!r}; "
            f"expected {PIPELINE_FORMAT!r}"
        )
    return PretrainedPipeline(folder, manifest)


def export_pipeline(
    run_folder: str | os.PathLike,
    target: str | os.PathLike,
    *,
    members: list[int] | None = None,
    selected_only: bool = True,
    transferred: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Copy a pipeline (e.g. a run folder) into a self-contained folder.

    The first exported member's synthetic-trained autoencoder becomes the folder itself (so
    the folder is also a ``save_pretrained`` folder, loadable with ``from_pretrained``); the
    other models go to ``members/<name>/...`` beside it.

    Args:
        run_folder: a folder with ``pipeline.json``.
        target: the new folder (must not exist).
        members: indices of the members to keep (default all).
        selected_only: keep only the regressors the ensemble selected.
        transferred: keep the fine-tuned autoencoders.
        metadata: ``save_pretrained`` metadata (``license``, ``description``,
            ``intended_use``, ``limitations`` ...) for the folder's own model card; the root
            autoencoder is then re-saved with it instead of copied.

    Returns:
        ``target``.

    Raises:
        FileExistsError: when ``target`` exists.
    """
    source = load_pipeline(run_folder)
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists; it is never overwritten")
    manifest = json.loads(json.dumps(source.manifest))
    chosen = [m for i, m in enumerate(manifest["members"]) if members is None or i in members]
    staging = target.with_name(f".{target.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    if metadata:
        from mdwarf_zoo.hub import from_pretrained, save_pretrained
        from mdwarf_zoo.transfer import clone_model

        # A fresh copy: the weights and their metadata, without optimizer state.
        model = clone_model(from_pretrained(source._path(chosen[0]["autoencoder"])))
        save_pretrained(model, staging, **metadata)

    else:
        shutil.copytree(source._path(chosen[0]["autoencoder"]), staging)
    kept = []
    for index, member in enumerate(chosen):
        base = f"members/{member['name']}"
        if index == 0:
            member["autoencoder"] = "."
        else:
            shutil.copytree(source._path(member["autoencoder"]), staging / base / "pretrained")
            member["autoencoder"] = f"{base}/pretrained"
        if member.get("transferred") and transferred:
            shutil.copytree(source._path(member["transferred"]), staging / base / "transferred")
            member["transferred"] = f"{base}/transferred"
        else:
            member["transferred"] = None
        for name, regressors in member["regressors"].items():
            keep = [r for r in regressors if r.get("selected", True) or not selected_only]
            for regressor in keep:
                relative = f"{base}/regressors/{Path(regressor['path']).name}"
                shutil.copytree(source._path(regressor["path"]), staging / relative)
                regressor["path"] = relative
            member["regressors"][name] = keep
        kept.append(member)
    manifest["members"] = kept
    manifest["exported_from"] = {
        "recipe": manifest.get("recipe"),
        "members": [m["name"] for m in kept],
        "selected_only": selected_only,
    }
    (staging / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    staging.rename(target)
    return target
