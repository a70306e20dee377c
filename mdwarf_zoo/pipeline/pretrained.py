"""Pretrained pipelines: autoencoders + per-parameter latent regressors + label scaling +
preprocessing, stored as one folder, and predictions with errors for new spectra.

A pipeline folder holds ``pipeline.json`` (format ``mdwarf_zoo.Pipeline/1``) and the
``save_pretrained`` folders it names, by paths relative to the folder::

    {"format": "mdwarf_zoo.Pipeline/1", "parameters": ["teff", ...], "units": {...},
     "label_scaling": {"teff": {"kind": "standard", "mean": ..., "std": ...}, ...},
     "preprocessing": {... Preprocessor.to_dict() ...}, "transfer": {... settings ...},
     "ensemble": {"best": K, "error_model": "spread+validation+gap",
                  "gap": {"teff": 60.0, ...}, "gap_source": "...",
                  "error_scale": {"teff": 0.8, ...}, "error_scale_source": "..."},
     "alignment": {"method": "coral", "neighbours": 20, "resamples": 30, "seed": 0},
     "members": [{"name", "autoencoder": "<synthetic-trained AE>", "transferred": "<fine-tuned
                  AE or null>", "regressors": {"teff": [{"path", "validation_mse",
                  "selected"}, ...]}, "latent_scaling": {"kind": "standard", "mean": [...],
                  "std": [...]}, "alignment_reference": "members/<name>/alignment_reference.npz"
                 }]}

Optional parts (the bundled ``mb24_quickstart_demo`` and MB24 have none of them, and predict as
they always did):

* ``latent_scaling`` of a member: its latents are standardised with it
  (``mdwarf_zoo.pipeline.LatentScaler``) before its regressors read them; without it the
  regressors read raw latents.
* ``ensemble.error_model``: the default ``error_model`` of :meth:`PretrainedPipeline.predict`;
  when absent, ``"spread+validation+gap"`` if every selected regressor has a
  ``validation_mse``, else ``"spread"`` (MB24) with a warning.
* ``ensemble.gap`` (parameter -> scale, physical units) and ``ensemble.gap_source`` (a string):
  the domain-gap scales of ``"spread+validation+gap"``; parameters without one take the prior
  :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR`.
* ``ensemble.error_scale`` (parameter -> factor ``c`` > 0, or a profile ``{"edges": [...],
  "factors": [...]}`` of factors in bins of the estimate,
  :func:`mdwarf_zoo.pipeline.gap.coverage_profile`) and ``ensemble.error_scale_source``:
  the factor by which ``"spread+validation+gap"`` multiplies both errors so that they cover
  the truth 68.27 % of the time on stars with known labels
  (:func:`mdwarf_zoo.pipeline.gap.coverage_scale`; a recipe with ``[ensemble] gap =
  "simulator"`` measures it on the same simulated twins as the gap). It belongs to the stored
  gap: it applies when ``predict`` takes the manifest's gap, not a ``gap=`` of its own.
  Without it ``c = 1``; ``table.meta["error_scale"]`` and ``["error_scale_source"]`` say which.
* ``alignment`` and each member's ``alignment_reference`` (latent alignment, not in MB24):
  ``method`` is ``"coral"`` or ``"coral_neighbours"`` and ``neighbours`` the latter's
  neighbours per star (``mdwarf_zoo.pipeline.align_latents``). The reference file is an ``.npz``
  with ``synthetic_latents`` (n, latent_dim) float32, the member's synthetic-trained encoder's
  latents of the synthetic training spectra; ``synthetic_labels`` (n, len(parameters)) float64,
  their labels in the order of ``parameters``; and ``parameters``, those names. The raw (not
  yet standardised) latents of the new spectra are mapped onto the reference before the
  regressors read them; for ``"coral_neighbours"`` the preliminary estimates are the medians of
  the selected regressors' predictions without alignment
  (``mdwarf_zoo.pipeline.align_observed_latents``). ``resamples`` (default 30; 0: none) and
  ``seed`` (default 0) set the bootstrap of the alignment
  (``mdwarf_zoo.pipeline.alignment_uncertainty``) whose per-star spread is added in quadrature
  to the errors.

``rv_template`` (``{"file", "sha256", ...}``): the radial-velocity template that
``predict`` and :meth:`PretrainedPipeline.read_spectra` correct the velocities against by
default (:func:`write_rv_template` adds one; a pipeline without it asks for ``--template`` or
``--no-rv``).

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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from tqdm.auto import tqdm

from mdwarf_zoo.hub import (
    download,
    from_pretrained,
    get_pretrained,
    list_pretrained,
    save_pretrained,
    sha256_file,
)
from mdwarf_zoo.hub.catalogue import PIPELINE_FILE, PIPELINE_FORMAT
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline.alignment import ALIGNMENTS
from mdwarf_zoo.pipeline.ensemble import ERROR_MODELS
from mdwarf_zoo.pipeline.estimate import Alignment, check_choice, estimate
from mdwarf_zoo.pipeline.gap import check_error_scale, check_gap
from mdwarf_zoo.pipeline.regressors import LatentRegressor
from mdwarf_zoo.pipeline.scaling import LabelScaler, LatentScaler
from mdwarf_zoo.spectra.datasets import read_set
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.observed import read_spectrum
from mdwarf_zoo.spectra.phoenix import GRID_NAME, read_phoenix_spectrum
from mdwarf_zoo.spectra.preprocess import Preprocessor
from mdwarf_zoo.spectra.rv import doppler_shift, star_name, to_rest_frame
from mdwarf_zoo.spectra.simulate import synthetic_spectra
from mdwarf_zoo.training.transfer import clone_model
from mdwarf_zoo.training.transfer import transfer as fine_tune

__all__ = [
    "PretrainedPipeline",
    "export_pipeline",
    "load_pipeline",
    "read_template",
    "rest_frame",
    "write_rv_template",
]

logger = logging.getLogger(__name__)



@dataclass
class PretrainedPipeline:
    """A loaded pipeline manifest (models are loaded when needed).

    Attributes:
        folder: the pipeline folder.
        manifest: the content of ``pipeline.json``.
    """

    folder: Path
    manifest: dict[str, Any]
    # Models already loaded (and checksum-verified), by their path in the folder: a pipeline
    # predicts many times without reading its files again.
    _models: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def model(self, relative: str):
        """The Keras model at ``relative`` in the folder, loaded and verified once per
        pipeline (:func:`mdwarf_zoo.from_pretrained`); later calls return the same object."""
        if relative not in self._models:

            self._models[relative] = from_pretrained(self._path(relative))
        return self._models[relative]

    @property
    def parameters(self) -> list[str]:
        return list(self.manifest["parameters"])

    @property
    def members(self) -> list[dict[str, Any]]:
        return list(self.manifest["members"])

    def preprocessor(self):
        """The :class:`~mdwarf_zoo.spectra.preprocess.Preprocessor` the models expect."""

        return Preprocessor.from_dict(self.manifest["preprocessing"])

    def _path(self, relative: str) -> Path:
        path = (self.folder / relative).resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{self.folder / PIPELINE_FILE} names {relative!r} but {path} does not exist"
            )
        return path

    def _file(self, relative: str, what: str) -> Path:
        path = (self.folder / relative).resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.folder / PIPELINE_FILE} names {relative!r} but {path} does not exist; "
                f"expected {what}"
            )
        return path

    @property
    def error_model(self) -> str:
        """The error model ``predict(error_model="default")`` uses: the manifest's
        ``ensemble.error_model``; without one ``"spread+validation+gap"`` when every selected
        regressor has a finite ``validation_mse``, else ``"spread"`` (MB24), logging why."""
        named = (self.manifest.get("ensemble") or {}).get("error_model")
        if named is not None:
            return str(named)
        missing = [
            f"{member['name']}/{name}"
            for member in self.members
            for name in self.parameters
            for regressor in member["regressors"][name]
            if regressor.get("selected", True)
            and not np.isfinite(regressor.get("validation_mse", np.nan))
        ]
        if missing:
            logger.warning(
                "%s names no ensemble.error_model and regressors %s have no finite "
                "validation_mse, so the errors cannot include the validation rms or the gap: "
                "using 'spread' (MB24, the ensemble spread only)",
                self.folder / PIPELINE_FILE,
                ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""),
            )
            return "spread"
        return "spread+validation+gap"

    def gap(self) -> tuple[dict[str, float] | None, str]:
        """The manifest's ``ensemble.gap`` (checked) and ``gap_source``; ``(None, "")`` when
        it has none (the prior applies)."""
        return self._ensemble_scales("gap", check_gap)

    def error_scale(self) -> tuple[dict[str, float | dict[str, list[float]]] | None, str]:
        """The manifest's ``ensemble.error_scale`` (checked) and ``error_scale_source``;
        ``(None, "")`` when it has none (``c = 1``)."""
        return self._ensemble_scales("error_scale", check_error_scale)

    def _ensemble_scales(self, key: str, check) -> tuple[dict[str, float] | None, str]:
        """``ensemble.<key>`` checked with ``check`` and its ``<key>_source`` (default: where
        it was read); ``(None, "")`` when the manifest has none."""
        ensemble = self.manifest.get("ensemble") or {}
        if ensemble.get(key) is None:
            return None, ""
        where = f"{self.folder / PIPELINE_FILE} ensemble.{key}"
        return check(ensemble[key], where), str(ensemble.get(f"{key}_source") or where)

    @property
    def latent_alignment(self) -> str | None:
        """The pipeline's latent alignment method (``None``: none, MB24)."""
        return (self.manifest.get("alignment") or {}).get("method")

    def _reference_text(self, latent_dim: int | str = "latent_dim") -> str:
        return (
            f"an .npz with synthetic_latents (n, {latent_dim}) float32, synthetic_labels (n, "
            f"{len(self.parameters)}) for parameters {self.parameters} and parameters (the names)"
        )

    def alignment_reference(self, member: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The synthetic latents and labels a member's observed latents are aligned onto.

        Raises:
            ValueError: for a member without a reference, or a file that is not a reference
                of this pipeline (the message names the file and what it must hold).
            FileNotFoundError: for a reference file that does not exist.
        """

        name = member.get("name")
        relative = member.get("alignment_reference")
        if not relative:
            raise ValueError(
                f"{self.folder / PIPELINE_FILE}, member {name!r}: no alignment_reference (the "
                "pipeline was made without latent alignment), so its latents cannot be aligned; "
                "predict with latent_alignment='none'"
            )
        expected = self._reference_text()
        path = self._file(relative, f"{expected} (member {name!r}'s alignment reference)")
        try:
            with np.load(path, allow_pickle=False) as saved:
                latents = saved["synthetic_latents"]
                labels = saved["synthetic_labels"]
                names = [str(v) for v in saved["parameters"]]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"alignment reference {path} (member {name!r}) cannot be read ({error}); "
                f"expected {expected}"
            ) from None
        problem = None
        if names != self.parameters:
            problem = f"parameters {names}"
        elif latents.ndim != 2 or not np.issubdtype(latents.dtype, np.floating):
            problem = f"synthetic_latents of shape {latents.shape} and dtype {latents.dtype}"
        elif labels.shape != (latents.shape[0], len(self.parameters)):
            problem = f"synthetic_labels of shape {labels.shape} for {latents.shape[0]} latents"
        elif not (np.all(np.isfinite(latents)) and np.all(np.isfinite(labels))):
            problem = "non-finite values"
        if problem:
            raise ValueError(
                f"alignment reference {path} (member {name!r}) holds {problem}; expected "
                f"{self._reference_text(latents.shape[-1] if latents.ndim else 'latent_dim')}"
            )
        return latents, labels.astype(np.float64)

    def rv_template(self):
        """The radial-velocity template that travels with the pipeline, or ``None``.

        ``pipeline.json`` names it under ``rv_template`` (``file``, ``sha256``; see
        :func:`write_rv_template`).

        Raises:
            ValueError: when the file's sha256 differs from the manifest's.
            FileNotFoundError: when the file named does not exist.
        """

        entry = self.manifest.get("rv_template")
        if not entry:
            return None
        path = self._file(entry["file"], "a 1-D FITS radial-velocity template")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ValueError(
                f"radial-velocity template {path} has sha256 {actual} but {PIPELINE_FILE} "
                f"expects {entry.get('sha256')}; refusing to use it"
            )
        facts: dict = {"source": str(path)}
        if self.preprocessor().resolving_power is not None:
            facts["resolving_power"] = float(self.preprocessor().resolving_power)
        return read_spectrum(path).replace(metadata=facts)

    def read_spectra(
        self,
        sources: list[str | os.PathLike],
        *,
        template: str | os.PathLike | None = None,
        rv: bool = True,
        rv_range: tuple[float, float] = (-300.0, 300.0),
        progress: bool = True,
        velocities: list[dict] | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Preprocessed flux of spectrum files (any layout ``read_spectrum`` reads) or of one
        HDF5 set, with one identifier per spectrum (the ``OBJECT`` header or the file name).

        Each file is first moved to the rest frame (:func:`rest_frame`: all orders within
        200 A below and 50 A above the window, then a second pass on the model's window),
        against ``template`` or the pipeline's own :meth:`rv_template`.

        Args:
            sources: spectrum files, or one ``.h5`` set written by ``prepare-observed`` (used
                as it is: its provenance says whether it was corrected).
            template: a template file (a PHOENIX HiRes file or any spectrum read_spectrum
                reads); default the pipeline's.
            rv: ``False`` when the spectra are already in the rest frame (no correction).
            rv_range: trial velocities, km/s.
            progress: show a progress bar.
            velocities: a list that receives one record per spectrum (``rv``, ``rv_error``,
                ``berv``, ``berv_source``, ``barycentric_rv``, ``rv_peak``,
                ``rv_second_peak_ratio``, ``rv_orders``, ``rv_orders_agreeing``,
                ``rv_flag``).

        Raises:
            ValueError: for a set on another wavelength grid, no template with ``rv=True``,
                a file that does not cover the window plus margin, or whose S/N is too low for
                a radial velocity (the message names the star).
        """

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
            if velocities is not None:
                records = (spectrum_set.provenance or {}).get("spectra") or []
                for i in range(len(spectrum_set.flux)):
                    record = records[i] if i < len(records) else {}
                    velocities.append({k: v for k, v in record.items()
                                       if k.startswith("rv") or "berv" in k
                                       or k == "barycentric_rv"})
            return spectrum_set.flux, list(spectrum_set.identifiers)
        low, high = preprocessor.span
        template_spectrum = None
        if rv:
            template_spectrum = (read_template(template, (low - RV_REACH[0], high + RV_REACH[1]),
                                               max(map(abs, rv_range)))
                                 if template else self.rv_template())
            if template_spectrum is None:
                raise ValueError(
                    f"pipeline {self.folder} carries no radial-velocity template ({PIPELINE_FILE}"
                    " has no 'rv_template'), so the spectra cannot be moved to the rest frame. "
                    "Pass a template (mdwarf-zoo predict --template FITS; e.g. a PHOENIX "
                    "model near your stars), add one to the pipeline "
                    "(mdwarf_zoo.pipeline.pretrained.write_rv_template), or, if the spectra are "
                    "already in the rest frame, say so with --no-rv (rv=False)"
                )
        fluxes, names = [], []
        for path in tqdm(paths, desc="preprocessing", disable=not progress):
            spectrum = read_spectrum(path, window=(low, high))
            if template_spectrum is None:
                record = {"rv_flag": "not measured (rest frame assumed)"}
            else:
                spectrum, velocity = rest_frame(path, spectrum, template_spectrum, preprocessor,
                                                rv_range)
                record = velocity.record()
            try:
                fluxes.append(preprocessor(spectrum).flux)
            except ValueError as error:
                raise ValueError(f"star {star_name(spectrum)}: {error}") from None
            names.append(str(spectrum.metadata.get("object") or path.name))
            if velocities is not None:
                velocities.append(record)
        return np.stack(fluxes).astype(np.float32), names

    def predict(
        self,
        flux: np.ndarray,
        identifiers: list[str] | None = None,
        *,
        transfer: bool = False,
        seed: int = 0,
        progress: bool = True,
        error_model: str = "default",
        latent_alignment: str | None = "default",
        alignment_neighbours: int | None = None,
        alignment_resamples: int | None = None,
        gap: dict[str, float] | None = None,
        error_scale: dict[str, float | dict[str, list[float]]] | None = None,
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
            error_model: ``"default"`` (the manifest's ``ensemble.error_model``; without one
                ``"spread+validation+gap"``, see :attr:`error_model`), ``"spread"`` (MB24),
                ``"spread+validation"`` (each regressor's validation rms,
                ``sqrt(validation_mse) * label std`` from the manifest, added in quadrature)
                or ``"spread+validation+gap"`` (and a domain-gap scale per parameter); see
                :mod:`mdwarf_zoo.pipeline.ensemble`. ``table.meta["error_model"]`` says which.
            latent_alignment: ``"default"`` (the pipeline's ``alignment``, none when absent),
                ``None`` or ``"none"`` (off), or ``"coral"`` / ``"coral_neighbours"`` (needs the
                members' alignment references). The alignment is estimated from the spectra
                given, so pass the whole sample in one call: at least twice the latent size of
                spectra, and a covariance of few spectra is noisy.
            alignment_neighbours: neighbours per star of ``"coral_neighbours"`` (default the
                pipeline's, else 20).
            alignment_resamples: with an alignment, the bootstrap draws whose per-star spread
                is added to the errors (``mdwarf_zoo.pipeline.alignment_uncertainty``, seeded
                with the manifest's ``alignment.seed``); default the pipeline's ``resamples``,
                else 30; 0 leaves it out.
            gap: with ``"spread+validation+gap"``, parameter -> gap scale (physical units);
                default the manifest's ``ensemble.gap``, else the prior
                :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR` (``table.meta["gap_source"]``).
            error_scale: parameter -> factor ``c`` on both errors of the gap model, or a
                profile of factors in bins of the estimate (``{"edges": [...], "factors":
                [...]}``); default the manifest's ``ensemble.error_scale`` with the manifest's
                gap, else 1.

        Returns:
            An ``astropy.table.Table`` (see :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`).

        Raises:
            ValueError: for a member whose ``latent_scaling`` does not match its latent size,
                an unknown error model or alignment, a bad gap or error scale (or one
                without the gap model), an alignment reference that is missing from the manifest or
                unreadable, or too few spectra for the alignment.
            FileNotFoundError: for a reference file that does not exist.

        Examples:
            >>> from mdwarf_zoo.pipeline.pretrained import load_pipeline
            >>> pipeline = load_pipeline("runs/q")  # doctest: +SKIP
            >>> flux, names = pipeline.read_spectra(["a.fits", "b.fits"])  # doctest: +SKIP
            >>> pipeline.predict(flux, names, latent_alignment="none")  # doctest: +SKIP
        """
        method = self.latent_alignment if latent_alignment == "default" else latent_alignment
        method = None if method == "none" else method
        if error_model == "default":
            error_model = self.error_model
        check_choice("predict", "error_model", error_model, ERROR_MODELS, "'default' or ")
        gap_source = scale_source = "given to predict"
        if error_model == "spread+validation+gap" and gap is None:
            gap, gap_source = self.gap()
            if error_scale is None:  # calibrated with the stored gap: only with that gap
                error_scale, scale_source = self.error_scale()
        if method is not None:
            check_choice("predict", "latent_alignment", method, ALIGNMENTS, "'default', 'none' or ")
        flux = np.asarray(flux, dtype=np.float32)
        alignment = None
        if method is not None:
            alignment = self._alignment(method, len(flux), alignment_neighbours,
                                        alignment_resamples)
        latents = {
            member["name"]: self.encode(member, flux, transfer=transfer, seed=seed)
            for member in tqdm(self.members, desc="members", disable=not progress)
        }
        if alignment is not None:
            for member in self.members:
                self._check_reference_size(member, alignment, latents[member["name"]])
        scales = {"error_scale": error_scale, "error_scale_source": scale_source}
        result = estimate(self.regressors(), latents, identifiers, keep=None,
                          error_model=error_model, alignment=alignment,
                          parameters=self.parameters, gap=gap, gap_source=gap_source, **scales)
        table = result.table
        table.meta["pipeline"] = str(self.folder)
        table.meta["transfer"] = bool(transfer)
        return table

    def regressors(self) -> list[LatentRegressor]:
        """The selected regressors of every member, in the order of the manifest (models
        loaded once per pipeline)."""
        scaling = self.manifest["label_scaling"]
        label_scaler = LabelScaler(
            self.parameters,
            [scaling[n]["mean"] for n in self.parameters],
            [scaling[n]["std"] for n in self.parameters],
        )
        out = []
        for member in self.members:
            latent_scaler = self._latent_scaler(member)
            for name in self.parameters:
                for regressor in member["regressors"][name]:
                    if not regressor.get("selected", True):
                        continue
                    mse = regressor.get("validation_mse", np.nan)
                    out.append(LatentRegressor(
                        name, member["name"], 0, self.model(regressor["path"]), label_scaler,
                        mse, float(np.sqrt(mse)) * scaling[name]["std"],
                        latent_scaler=latent_scaler,
                    ))
        return out

    def encode(self, member: dict[str, Any], flux: np.ndarray, *, transfer: bool = False,
               seed: int = 0) -> np.ndarray:
        """The raw latents of ``flux`` through ``member``'s encoder (fine-tuned on ``flux``
        first with ``transfer``)."""
        latents = encode(self._encoder(member, flux, transfer, seed), flux)
        scaler = self._latent_scaler(member)
        if scaler is not None and scaler.mean.size != latents.shape[1]:
            raise ValueError(
                f"{self.folder / PIPELINE_FILE}, member {member.get('name')!r}: latent_scaling "
                f"does not fit its autoencoder (LatentScaler: fitted on {scaler.mean.size}-d "
                f"latents, the encoder gives {latents.shape[1]}-d ones)"
            )
        return latents

    def _alignment(self, method: str, n_spectra: int, neighbours: int | None,
                   resamples: int | None) -> Alignment:
        """The alignment of the pipeline's members onto their synthetic references."""
        settings = self.manifest.get("alignment") or {}
        references = {}
        for member in self.members:
            references[member["name"]] = self.alignment_reference(member)
            self._check_alignment_sample(method, member, references, n_spectra)
        first, *others = self.members
        labels = references[first["name"]][1]
        for member in others:
            other = references[member["name"]][1]
            if other.shape != labels.shape or not np.array_equal(other, labels):
                # One synthetic set for all members, as in a run (the preliminary estimates of
                # "coral_neighbours" pick neighbours by these labels).
                raise ValueError(
                    f"alignment reference {member['alignment_reference']!r} of member "
                    f"{member['name']!r} holds other synthetic labels than "
                    f"{first['alignment_reference']!r} of member {first['name']!r}; every "
                    "member must be aligned onto the same synthetic set"
                )
        if resamples is None:
            resamples = int(settings.get("resamples", 30))
        try:
            return Alignment(
                method,
                {name: reference[0] for name, reference in references.items()},
                labels,
                neighbours=int(settings.get("neighbours", 20)) if neighbours is None
                else neighbours,
                resamples=resamples,
                seed=int(settings.get("seed", 0)),
            )
        except ValueError as error:
            raise ValueError(f"predict: {error}") from None

    def _check_reference_size(self, member: dict[str, Any], alignment: Alignment,
                              latents: np.ndarray) -> None:
        reference = alignment.synthetic_latents[member["name"]]
        if reference.shape[1] != latents.shape[1]:
            raise ValueError(
                f"alignment reference {member['alignment_reference']!r} of member "
                f"{member['name']!r} holds {reference.shape[1]}-d latents but its "
                f"encoder gives {latents.shape[1]}-d ones; expected "
                f"{self._reference_text(latents.shape[1])}"
            )

    def _encoder(self, member: dict[str, Any], flux: np.ndarray, transfer: bool, seed: int):
        """The autoencoder that encodes ``flux`` for ``member`` (fine-tuned on it first with
        ``transfer``)."""

        if not transfer:
            key = "transferred" if member.get("transferred") else "autoencoder"
            return self.model(member[key])
        settings = self.manifest.get("transfer") or {}
        mode = settings.get("mode", "mb24")
        if mode == "anchored":
            raise ValueError(
                f"pipeline {self.folder}: its transfer mode is 'anchored', which replays the "
                "synthetic training spectra, and a pipeline folder does not carry them; predict "
                "without transfer (the run's fine-tuned encoders are used when the pipeline has "
                "them)"
            )
        # transfer() fine-tunes a clone: the cached model stays as it was loaded.
        source = self.model(member["autoencoder"])
        freeze = settings.get("freeze", "default")
        if freeze == "default":
            freeze = source.default_freeze
        return fine_tune(
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
            mode=mode,
        )

    def _latent_scaler(self, member: dict[str, Any]) -> LatentScaler | None:
        """The member's ``latent_scaling`` (``None`` without one)."""
        if not member.get("latent_scaling"):
            return None
        try:
            return LatentScaler.from_dict(member["latent_scaling"])
        except ValueError as error:
            raise ValueError(
                f"{self.folder / PIPELINE_FILE}, member {member.get('name')!r}: "
                f"latent_scaling is not a latent scaling ({error})"
            ) from None

    def _check_alignment_sample(
        self, method: str, member: dict[str, Any], references: dict, n_spectra: int
    ) -> None:
        latent_dim = references[member["name"]][0].shape[1]
        if n_spectra < 2 * latent_dim:
            raise ValueError(
                f"latent alignment {method!r} of pipeline {self.folder} estimates the covariance "
                f"of the latents of the spectra given: it needs at least {2 * latent_dim} "
                f"spectra in one call (2 x the {latent_dim}-d latent space of member "
                f"{member['name']!r}), got {n_spectra}. Predict the whole sample at once (far "
                "more spectra than that give a steadier alignment), or switch the alignment "
                "off with latent_alignment='none' (mdwarf-zoo predict --latent-alignment none)"
            )


RV_TEMPLATE_FILE = "rv_template.fits"
#: Angstrom below and above a model's window whose orders the radial velocity also uses.
RV_REACH = (200.0, 50.0)


def rest_frame(path, spectrum, template, preprocessor, rv_range=(-300.0, 300.0),
               read_options: dict | None = None, rv_step: float = 0.25):
    """``spectrum`` (read from ``path`` for ``preprocessor``'s window) moved to its rest frame.

    The velocity is measured on every order of the file within :data:`RV_REACH` of the window
    (read again with all orders, so that the orders can check each other), then refined on the
    model's window (:func:`mdwarf_zoo.spectra.rv.to_rest_frame`).

    Returns:
        ``(shifted_spectrum, RadialVelocity)``.

    Raises:
        ValueError: when no velocity can be measured (the message names the star).
    """

    low, high = preprocessor.span
    every_order = read_spectrum(path, **(read_options or {}))
    _, velocity = to_rest_frame(
        every_order, template, rv_min=rv_range[0], rv_max=rv_range[1], rv_step=rv_step,
        window=(low - RV_REACH[0], high + RV_REACH[1]),
        refine_window=(preprocessor.grid.start, preprocessor.grid.stop),
    )
    shifted = doppler_shift(spectrum, velocity.rv, to_rest=True).replace(
        metadata={"rv": velocity.rv, "rv_error": velocity.uncertainty, "rv_flag": velocity.flag}
    )
    return shifted, velocity


def read_template(path: str | os.PathLike, span: tuple[float, float], rv_limit: float):
    """A radial-velocity template file: a PHOENIX HiRes file (cut to ``span`` plus the largest
    shift) or any spectrum ``read_spectrum`` reads."""

    if not Path(path).name.endswith(f"{GRID_NAME}-HiRes.fits"):
        return read_spectrum(path)
    pad = span[1] * rv_limit / 299792.458 + 1.0
    return read_phoenix_spectrum(path, span[0] - pad, span[1] + pad)


def write_rv_template(
    folder: str | os.PathLike,
    *,
    labels: tuple[float, float, float, float] = (3300.0, 4.9, 0.0, 2.0),
    seed: int = 0,
    margin: float = 15.0,
) -> Path:
    """Give a pipeline folder its radial-velocity template: a spectrum of its own synthetic
    domain (the project's simulator) over the window plus ``margin`` on each side, written as a
    1-D FITS file and recorded with its sha256 under ``rv_template`` in ``pipeline.json``.

    A pipeline trained on PHOENIX spectra is better served by a PHOENIX template near its
    stars (``predict --template``); this one is what the simulator-trained demo carries.

    Args:
        folder: the pipeline folder (its ``pipeline.json`` is updated; an existing template is
            never replaced).
        labels: Teff (K), log g, [M/H], v sin i (km/s) of the template.
        seed: the simulator's line-list seed (the pipeline's ``line_list_seed``).
        margin: Angstrom beyond the window plus preprocessing margin (covers +-300 km/s at
            8800 A with 15 A).

    Returns:
        The template's path.

    Raises:
        FileExistsError: when the folder already has a template.
    """


    pipeline = load_pipeline(folder)
    target = pipeline.folder / RV_TEMPLATE_FILE
    if pipeline.manifest.get("rv_template") or target.exists():
        raise FileExistsError(f"{pipeline.folder} already has a radial-velocity template")
    preprocessor = pipeline.preprocessor()
    low, high = preprocessor.span
    step = preprocessor.grid.step
    grid = WavelengthGrid(low - margin, high + margin, step)
    flux = synthetic_spectra([list(labels)], grid, seed=seed,
                             resolving_power=preprocessor.resolving_power)[0]
    hdu = fits.PrimaryHDU(flux.astype(np.float32))
    hdu.header.update(CRVAL1=grid.start, CDELT1=step, CRPIX1=1.0, CUNIT1="Angstrom",
                      AIRORVAC="vac", OBJECT="mdwarf_zoo radial-velocity template")
    hdu.header["COMMENT"] = (f"mdwarf_zoo simulator, labels {list(labels)}, line-list seed "
                             f"{seed}, R {preprocessor.resolving_power}")
    hdu.writeto(target)
    manifest = dict(pipeline.manifest)
    manifest["rv_template"] = {
        "file": RV_TEMPLATE_FILE,
        "sha256": sha256_file(target),
        "source": "mdwarf_zoo.spectra.simulate.synthetic_spectra",
        "labels": [float(v) for v in labels],
        "line_list_seed": int(seed),
    }
    (pipeline.folder / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2) + "\n",
                                                encoding="utf-8")
    return target


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

        if str(source) not in list_pretrained():
            raise FileNotFoundError(
                f"no pipeline folder {str(source)!r} and no published weights entry of that "
                f"name; pipeline entries: {', '.join(list_pretrained(kind='pipeline')) or 'none'}"
            )
        if get_pretrained(str(source)).kind != "pipeline":
            raise ValueError(
                f"weights entry {source!r} is a single model (kind 'model'), not a pipeline; load "
                f"it with mdwarf_zoo.from_pretrained({str(source)!r}). Pipeline entries: "
                f"{', '.join(list_pretrained(kind='pipeline')) or 'none'}"
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


def _drop_measurements(manifest: dict, why: str) -> None:
    """Remove from an exported manifest what was measured through the source ensemble's own
    estimates: the coverage factor ``ensemble.error_scale`` and a *measured* ``ensemble.gap``
    (a gap given by the recipe, e.g. a table, is kept). An export with other members or
    encoders makes other estimates, which those numbers do not describe; the export then
    predicts with the gap prior and c = 1, and ``exported_from.dropped`` says what went."""
    ensemble = manifest.get("ensemble") or {}
    dropped = []
    if ensemble.get("error_scale") is not None:
        dropped.append("error_scale")
    if ensemble.get("gap") is not None and str(ensemble.get("gap_source", "")).startswith(
        "measured"
    ):
        dropped.append("gap")
    if not dropped:
        return
    for key in dropped:
        ensemble.pop(key)
        ensemble.pop(f"{key}_source", None)
    manifest["exported_from"]["dropped"] = (
        f"{' and '.join(dropped)}: measured through the source's whole ensemble, not this one "
        f"({why}); measure them again on this pipeline (benchmarks/make_demo_bundle.py shows how)"
    )
    logger.warning("export_pipeline: %s", manifest["exported_from"]["dropped"])


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
        run_folder: a folder with ``pipeline.json`` (its members' alignment references, when
            it has them, are copied too).
        target: the new folder (must not exist).
        members: indices of the members to keep (default all).
        selected_only: keep only the regressors the ensemble selected.
        transferred: keep the fine-tuned autoencoders. An export with fewer members or
            without them drops the source's measured gap and coverage factor (they describe
            the source's estimates; see ``exported_from.dropped`` in its manifest).
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
        if member.get("alignment_reference"):
            reference = source._file(
                member["alignment_reference"],
                source._reference_text() + " (an alignment reference)",
            )
            relative = f"{base}/{reference.name}"
            (staging / base).mkdir(parents=True, exist_ok=True)
            shutil.copy2(reference, staging / relative)
            member["alignment_reference"] = relative
        for name, regressors in member["regressors"].items():
            keep = [r for r in regressors if r.get("selected", True) or not selected_only]
            for regressor in keep:
                relative = f"{base}/regressors/{Path(regressor['path']).name}"
                shutil.copytree(source._path(regressor["path"]), staging / relative)
                regressor["path"] = relative
            member["regressors"][name] = keep
        kept.append(member)
    manifest["members"] = kept
    if manifest.get("rv_template"):
        shutil.copy2(source._file(manifest["rv_template"]["file"], "a radial-velocity template"),
                     staging / RV_TEMPLATE_FILE)
        manifest["rv_template"]["file"] = RV_TEMPLATE_FILE
    manifest["exported_from"] = {
        "recipe": manifest.get("recipe"),
        "members": [m["name"] for m in kept],
        "selected_only": selected_only,
    }
    changed = []
    if len(kept) < len(source.manifest["members"]):
        changed.append(f"{len(kept)} of its {len(source.manifest['members'])} members")
    if not transferred and any(m.get("transferred") for m in source.manifest["members"]):
        changed.append("no fine-tuned autoencoders")
    if changed:
        _drop_measurements(manifest, "this export keeps " + " and ".join(changed))
    (staging / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    staging.rename(target)
    return target
