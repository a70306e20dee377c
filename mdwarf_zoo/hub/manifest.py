"""The manifest ``mdwarf_zoo.json`` of a pretrained folder: its layout, reading and checking it.

A pretrained folder is the Keras 3 unzipped layout (``config.json``, ``metadata.json``,
``model.weights.h5``) plus ``mdwarf_zoo.json`` (the manifest: zoo version, architecture and
constructor arguments, wavelength grid, preprocessing, labels, recipe, provenance and the
sha256 of every other file) and ``README.md`` (a Hugging Face model card). Every file is checked
against the manifest before Keras reads it. Reading needs no Keras, so the catalogue and the
pipeline readers that use this module stay free of TensorFlow; writing a manifest
(``build_manifest``) lives with ``save_pretrained`` in :mod:`mdwarf_zoo.hub.save`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mdwarf_zoo._version import __version__
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor

MANIFEST_NAME = "mdwarf_zoo.json"
CARD_NAME = "README.md"
#: Version of the manifest layout; a newer one needs a newer zoo.
MANIFEST_FORMAT = 1
#: Files Keras reads from the unzipped layout; each must be listed in the manifest.
KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")

#: A pinned Hub revision (a 40-hex commit sha) and a Hub repository id (``owner/name``).
COMMIT_SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class PretrainedError(ValueError):
    """A pretrained folder or source that cannot be used (bad manifest, hostile config ...)."""


class ChecksumMismatchError(PretrainedError):
    """A file whose size or sha256 differs from the manifest."""


class UnknownArchitectureError(PretrainedError):
    """A checkpoint whose architecture this version of mdwarf_zoo does not know."""


class PretrainedNotFoundError(FileNotFoundError):
    """A repository, revision, file or cached copy that is not there."""


# --------------------------------------------------------------------------------------------
# metadata that travels with a loaded model


@dataclass(frozen=True)
class Label:
    """One output (or training label) of a model.

    Attributes:
        name: e.g. ``"teff"``.
        unit: e.g. ``"K"``, ``"dex"``, ``"km/s"``; ``None`` when not recorded.
        scaling: how the label was scaled for training (JSON-ready mapping), or ``None``.
    """

    name: str
    unit: str | None = None
    scaling: Mapping[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class PretrainedInfo:
    """What a pretrained folder says about its model; ``model.zoo_metadata`` after loading.

    Attributes:
        source: what was asked for (a folder, ``owner/name``, ``hf://...`` or an entry name).
        folder: the local folder the files were read from (a cache snapshot for Hub sources).
        repo_id: the Hub repository, or ``None`` for a local or bundled folder.
        revision: the commit sha that was loaded (Hub sources), else ``None``.
        entry: the published weights entry name, when loaded by name.
        manifest: the whole ``mdwarf_zoo.json`` content (read-only).
        grid: the wavelength grid of the model's input, or ``None`` when not recorded.
        preprocessor: the preprocessing chain used for the training data, or ``None``.
        labels: the labels, in output order.

    Examples:
        >>> model = mdwarf_zoo.from_pretrained("path/to/folder")  # doctest: +SKIP
        >>> model.zoo_metadata.grid.size  # doctest: +SKIP
        3501
    """

    source: str
    folder: Path
    repo_id: str | None
    revision: str | None
    entry: str | None
    manifest: Mapping[str, Any]
    grid: Any = None
    preprocessor: Any = None
    labels: tuple[Label, ...] = field(default_factory=tuple)

    @classmethod
    def from_manifest(
        cls,
        manifest: Mapping[str, Any],
        *,
        source: str,
        folder: Path,
        repo_id: str | None = None,
        revision: str | None = None,
        entry: str | None = None,
    ) -> PretrainedInfo:
        """Build from a manifest, rebuilding the grid and the ``Preprocessor``.

        Raises:
            PretrainedError: when the recorded grid or preprocessing cannot be rebuilt by the
                installed zoo (the message names the folder and the zoo version that wrote it).
        """
        where = f"{folder / MANIFEST_NAME}"
        grid = preprocessor = None
        try:
            if manifest.get("wavelength_grid"):
                grid = WavelengthGrid.from_dict(manifest["wavelength_grid"])
            if manifest.get("preprocessing"):
                preprocessor = Preprocessor.from_dict(manifest["preprocessing"])
        except (TypeError, ValueError) as error:
            raise PretrainedError(
                f"{where}: cannot rebuild the recorded wavelength grid / preprocessing with "
                f"mdwarf_zoo {__version__} (written by {manifest.get('zoo_version')}): {error}"
            ) from error
        labels = tuple(
            Label(item["name"], item.get("unit"), _freeze(item.get("scaling")))
            for item in manifest.get("labels") or []
        )
        return cls(
            source=source,
            folder=Path(folder),
            repo_id=repo_id,
            revision=revision,
            entry=entry,
            manifest=_freeze(manifest),
            grid=grid,
            preprocessor=preprocessor,
            labels=labels,
        )

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def label_units(self) -> dict[str, str | None]:
        return {label.name: label.unit for label in self.labels}

    @property
    def label_scaling(self) -> dict[str, Mapping[str, Any] | None]:
        return {label.name: label.scaling for label in self.labels}

    @property
    def zoo_version(self) -> str:
        return str(self.manifest.get("zoo_version"))

    @property
    def architecture(self) -> Mapping[str, Any]:
        return self.manifest["architecture"]

    @property
    def recipe(self) -> Mapping[str, Any] | None:
        return self.manifest.get("recipe")

    @property
    def provenance(self) -> Mapping[str, Any]:
        return self.manifest.get("provenance") or MappingProxyType({})

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.manifest.get("metrics") or MappingProxyType({})

    def __repr__(self) -> str:
        where = f"{self.repo_id}@{self.revision}" if self.repo_id else str(self.folder)
        return (
            f"PretrainedInfo(source={self.source!r}, from={where!r}, "
            f"architecture={self.architecture.get('class')!r}, labels={self.label_names})"
        )


def _freeze(value: Any) -> Any:
    """A read-only deep copy of JSON data (mappings become ``MappingProxyType``)."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A mutable deep copy of :func:`_freeze` output (read-only mappings become dicts)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------
# checksums and the manifest


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def listed_files(folder: Path) -> list[str]:
    """Every file below ``folder`` except the manifest, as sorted POSIX relative paths."""
    names = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative != MANIFEST_NAME and not relative.startswith(".cache/"):
            names.append(relative)
    return sorted(names)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and check the layout of ``mdwarf_zoo.json`` in ``folder`` (no checksums).

    Raises:
        PretrainedError: when the manifest is missing, not JSON, of a newer format, or lacks
            a required key.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise PretrainedError(
            f"{folder} is not a mdwarf_zoo pretrained folder: {MANIFEST_NAME} is missing "
            f"(files present: {present or 'none'}); write one with mdwarf_zoo.save_pretrained"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PretrainedError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(manifest, dict):
        raise PretrainedError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format")
    if not isinstance(version, int):
        raise PretrainedError(f"{path}: 'format' must be an integer, got {version!r}")
    if version > MANIFEST_FORMAT:
        raise PretrainedError(
            f"{path} has manifest format {version}, this mdwarf_zoo {__version__} reads up to "
            f"{MANIFEST_FORMAT}; it was written by mdwarf_zoo {manifest.get('zoo_version')}: "
            f"pip install -U 'mdwarf-zoo>={manifest.get('zoo_version')}'"
        )
    for key in ("zoo_version", "architecture", "files"):
        if key not in manifest:
            raise PretrainedError(f"{path}: required key {key!r} is missing")
    files = manifest["files"]
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise PretrainedError(f"{path}: 'files' must map file names to {{sha256, size}}")
    missing = [name for name in KERAS_FILES if name not in files]
    if missing:
        raise PretrainedError(f"{path}: 'files' does not list the Keras file(s) {missing}")
    return manifest


def verify_file(folder: Path, name: str, expected: Mapping[str, Any], origin: str) -> None:
    """Check one listed file's size and sha256; ``origin`` names the folder in messages."""
    path = folder / name
    if not path.is_file():
        raise PretrainedNotFoundError(
            f"{name} is listed in {MANIFEST_NAME} but missing from {origin}"
        )
    size = path.stat().st_size
    if "size" in expected and size != expected["size"]:
        hint = " (truncated?)" if size < expected["size"] else ""
        raise ChecksumMismatchError(
            f"{name} from {origin} has {size:,} bytes but {MANIFEST_NAME} expects "
            f"{expected['size']:,}{hint}; refusing to load it. {_refetch_hint(folder)}"
        )
    actual = sha256_file(path)
    if actual != expected.get("sha256"):
        raise ChecksumMismatchError(
            f"{name} from {origin} has sha256 {actual} but {MANIFEST_NAME} expects "
            f"{expected.get('sha256')}; refusing to load it. {_refetch_hint(folder)}"
        )


def check_unlisted(folder: Path, manifest: Mapping[str, Any], origin: str) -> None:
    """Refuse a file Keras would read that the manifest does not list."""
    unlisted = [
        name
        for name in listed_files(folder)
        if name not in manifest["files"] and (name in KERAS_FILES or name.startswith("assets/"))
    ]
    if unlisted:
        raise PretrainedError(
            f"{origin}: {unlisted} would be read by Keras but are not listed in {MANIFEST_NAME}"
        )


def verify_folder(folder: str | Path, *, where: str | None = None) -> dict[str, Any]:
    """Check every file of a pretrained folder against the sha256 and size in its manifest.

    Args:
        folder: the pretrained folder.
        where: how to name the folder's origin in messages (e.g. ``"acme/demo@<sha>"``).

    Returns:
        The manifest.

    Raises:
        PretrainedError: for a missing or malformed manifest, or a file Keras would read that
            the manifest does not list.
        PretrainedNotFoundError: when a listed file is missing.
        ChecksumMismatchError: when a file's size or sha256 differs (the message names it).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    origin = where or str(folder)
    for name, expected in manifest["files"].items():
        verify_file(folder, name, expected, origin)
    check_unlisted(folder, manifest, origin)
    return manifest


def _refetch_hint(folder: Path) -> str:
    if "snapshots" in folder.parts:
        return (
            f"If the download was damaged, delete the cached copy ({folder.parents[1]}) and "
            "fetch it again."
        )
    return "Save the folder again or fetch a fresh copy."
