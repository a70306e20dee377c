"""Pretrained weights: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``.

A pretrained folder is the Keras 3 unzipped layout (``config.json``, ``metadata.json``,
``model.weights.h5``) plus ``mdwarf_zoo.json`` (the manifest: zoo version, architecture and
constructor arguments, wavelength grid, preprocessing, labels, recipe, provenance and the
sha256 of every other file) and ``README.md`` (a Hugging Face model card). Downloads go through
``huggingface_hub.snapshot_download`` with ``endpoint``, ``cache_dir``, ``revision`` and
``token`` passed explicitly; every file is checked against the manifest before Keras reads it,
and Keras loads it in safe mode.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import keras

from mdwarf_zoo._version import __version__

logger = logging.getLogger(__name__)

MANIFEST_NAME = "mdwarf_zoo.json"
CARD_NAME = "README.md"
#: Version of the manifest layout; a newer one needs a newer zoo.
MANIFEST_FORMAT = 1
#: Files Keras reads from the unzipped layout; each must be listed in the manifest.
KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")

#: Files larger than this are hashed in a thread while the model is being built.
_DEFER_BYTES = 1 << 20
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_METADATA_KEYS = (
    "grid",
    "preprocessor",
    "labels",
    "label_units",
    "label_scaling",
    "recipe",
    "provenance",
    "metrics",
    "license",
    "description",
    "intended_use",
    "limitations",
    "training",
    "tags",
    "model_name",
    "repo_id",
    "extra",
)


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
        from mdwarf_zoo.spectra.grid import WavelengthGrid
        from mdwarf_zoo.spectra.preprocess import Preprocessor

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


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _attach(model: keras.Model, info: PretrainedInfo) -> None:
    # Bypass Keras' attribute tracking: the info is plain data, not a layer, variable or
    # container Keras should serialise or walk for weights.
    object.__setattr__(model, "zoo_metadata", info)


# --------------------------------------------------------------------------------------------
# checksums and the manifest


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def _listed_files(folder: Path) -> list[str]:
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


def _verify_file(folder: Path, name: str, expected: Mapping[str, Any], origin: str) -> None:
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


def _check_unlisted(folder: Path, manifest: Mapping[str, Any], origin: str) -> None:
    unlisted = [
        name
        for name in _listed_files(folder)
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
        _verify_file(folder, name, expected, origin)
    _check_unlisted(folder, manifest, origin)
    return manifest


def _refetch_hint(folder: Path) -> str:
    if "snapshots" in folder.parts:
        return (
            f"If the download was damaged, delete the cached copy ({folder.parents[1]}) and "
            "fetch it again."
        )
    return "Save the folder again or fetch a fresh copy."


# --------------------------------------------------------------------------------------------
# save_pretrained


def _as_grid(value: Any) -> Any:
    from mdwarf_zoo.spectra.grid import WavelengthGrid

    if value is None or isinstance(value, WavelengthGrid):
        return value
    if isinstance(value, Mapping):
        return WavelengthGrid.from_dict(dict(value))
    raise ValueError(
        f"save_pretrained: grid must be a WavelengthGrid or a dict with start, stop, step; got "
        f"{type(value).__name__}"
    )


def _as_preprocessor(value: Any) -> Any:
    from mdwarf_zoo.spectra.preprocess import Preprocessor

    if value is None or isinstance(value, Preprocessor):
        return value
    if isinstance(value, Mapping):
        return Preprocessor.from_dict(dict(value))
    raise ValueError(
        f"save_pretrained: preprocessor must be a Preprocessor or its to_dict() output; got "
        f"{type(value).__name__}"
    )


def _labels(names: Any, units: Any, scaling: Any) -> list[dict[str, Any]]:
    if names is None:
        if units or scaling:
            raise ValueError("save_pretrained: label_units/label_scaling need labels=[names]")
        return []
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"save_pretrained: labels must be a list of names, got {names!r}")
    names = [str(name) for name in names]
    if len(set(names)) != len(names):
        raise ValueError(f"save_pretrained: labels must be unique, got {names}")
    if units is None:
        units = {}
    elif not isinstance(units, Mapping):
        if isinstance(units, str) or len(units) != len(names):
            raise ValueError(
                f"save_pretrained: label_units must be a dict or a list of {len(names)} units "
                f"(one per label {names}), got {units!r}"
            )
        units = dict(zip(names, units, strict=True))
    scaling = dict(scaling or {})
    for what, mapping in (("label_units", units), ("label_scaling", scaling)):
        unknown = set(mapping) - set(names)
        if unknown:
            raise ValueError(f"save_pretrained: {what} names {sorted(unknown)} not in {names}")
    return [
        {
            "name": name,
            "unit": units.get(name),
            "scaling": dict(scaling[name]) if name in scaling else None,
        }
        for name in names
    ]


def _recipe(value: Any) -> dict[str, str] | None:
    """``{"name", "sha256"}`` for a recipe file, a shipped recipe name or such a dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not {"name", "sha256"} <= set(value):
            raise ValueError(f"save_pretrained: recipe dict needs name and sha256, got {value!r}")
        return {"name": str(value["name"]), "sha256": str(value["sha256"])}
    path = Path(value)
    if path.is_file():
        return {"name": path.stem, "sha256": sha256_file(path)}
    from mdwarf_zoo._resources import shipped_folder

    shipped = shipped_folder("training_recipes") / f"{value}.toml"
    if shipped.is_file():
        return {
            "name": str(value),
            "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest(),
        }
    raise ValueError(
        f"save_pretrained: recipe {value!r} is neither a file nor a recipe shipped with "
        "mdwarf_zoo; pass a path to the TOML file or a dict with name and sha256"
    )


def _jsonable(what: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"save_pretrained: {what} must be JSON-serialisable ({error})") from None
    return value


def _previous_metadata(model: keras.Model) -> dict[str, Any]:
    """Metadata of a model loaded with ``from_pretrained``, to carry over when re-saving."""
    info = getattr(model, "zoo_metadata", None)
    if not isinstance(info, PretrainedInfo):
        return {}
    manifest = _thaw(info.manifest)
    card = manifest.get("card") or {}
    labels = manifest.get("labels") or []
    previous = {
        "grid": manifest.get("wavelength_grid"),
        "preprocessor": manifest.get("preprocessing"),
        "labels": [label["name"] for label in labels] or None,
        "label_units": {label["name"]: label.get("unit") for label in labels} or None,
        "label_scaling": {
            label["name"]: label["scaling"] for label in labels if label.get("scaling")
        }
        or None,
        "recipe": manifest.get("recipe"),
        "provenance": manifest.get("provenance"),
        "license": card.get("license"),
        "tags": card.get("tags"),
    }
    base = info.repo_id or card.get("base_model")
    if base:
        previous["provenance"] = {
            **(previous["provenance"] or {}),
            "base_model": f"{base}@{info.revision}" if info.revision else base,
        }
        previous["base_model"] = base
    return {key: value for key, value in previous.items() if value is not None}


def build_manifest(model: keras.Model, **metadata: Any) -> dict[str, Any]:
    """The manifest of ``model`` without its ``files`` entry (see :func:`save_pretrained`).

    Raises:
        ValueError: for a model that is not a zoo architecture, an unknown metadata keyword or
            inconsistent metadata (e.g. a grid whose size differs from the model's input).
    """
    from mdwarf_zoo.models._base import ZooModel
    from mdwarf_zoo.registry import list_models

    if not isinstance(model, ZooModel):
        raise ValueError(
            f"save_pretrained: expected a mdwarf_zoo architecture (a ZooModel such as "
            f"mdwarf_zoo.create_model('dense_ae_1024')), got {type(model).__name__}"
        )
    unknown = set(metadata) - set(_METADATA_KEYS)
    if unknown:
        raise ValueError(
            f"save_pretrained: unknown metadata keyword(s) {sorted(unknown)}; allowed: "
            f"{', '.join(_METADATA_KEYS)}"
        )
    previous = _previous_metadata(model)
    base_model = previous.pop("base_model", None)
    merged = {**previous, **{k: v for k, v in metadata.items() if v is not None}}

    grid = _as_grid(merged.get("grid"))
    preprocessor = _as_preprocessor(merged.get("preprocessor"))
    if grid is None and preprocessor is not None:
        grid = preprocessor.grid
    if grid is not None and preprocessor is not None and preprocessor.grid != grid:
        raise ValueError(
            f"save_pretrained: preprocessor.grid {preprocessor.grid} differs from grid {grid}"
        )
    input_length = model.input_shape[-1]
    if grid is not None and model.kind == "autoencoder" and input_length != grid.size:
        raise ValueError(
            f"save_pretrained: the wavelength grid has {grid.size} points but the model "
            f"{model.name!r} takes {input_length} flux values"
        )
    config = model.get_config()
    card = {
        key: merged[key]
        for key in ("license", "description", "intended_use", "limitations", "training")
        if merged.get(key) is not None
    }
    card["tags"] = [str(tag) for tag in merged.get("tags") or []]
    if merged.get("model_name"):
        card["model_name"] = str(merged["model_name"])
    if base_model:
        card["base_model"] = base_model
    registered = keras.saving.get_registered_name(type(model))
    return {
        "format": MANIFEST_FORMAT,
        "zoo_version": __version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": {
            "class": type(model).__name__,
            "registered_name": registered,
            "registry_name": model.name if model.name in list_models() else None,
            "kind": model.kind,
            "parameters": int(model.count_params()),
            "input_shape": list(model.input_shape[1:]),
            "config": _jsonable("the model config", config),
        },
        "wavelength_grid": grid.to_dict() if grid is not None else None,
        "preprocessing": preprocessor.to_dict() if preprocessor is not None else None,
        "labels": _labels(
            merged.get("labels"), merged.get("label_units"), merged.get("label_scaling")
        ),
        "recipe": _recipe(merged.get("recipe")),
        "provenance": _jsonable("provenance", dict(merged.get("provenance") or {})),
        "metrics": _jsonable("metrics", dict(merged.get("metrics") or {})),
        "card": _jsonable("card text", card),
        "extra": _jsonable("extra", dict(merged.get("extra") or {})),
    }


def _check_target(directory: Path, overwrite: bool) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"save_pretrained: {directory} exists and is not a folder")
    contents = sorted(p.name for p in directory.iterdir())
    if not contents:
        return
    if not overwrite:
        raise FileExistsError(
            f"save_pretrained: {directory} is not empty ({len(contents)} entries); pass "
            "overwrite=True to replace a pretrained folder, or choose a new folder"
        )
    if MANIFEST_NAME not in contents:
        raise FileExistsError(
            f"save_pretrained: {directory} holds files but is not a pretrained folder "
            f"(no {MANIFEST_NAME}); overwrite=True only replaces pretrained folders, so "
            f"{contents[:5]} stay untouched"
        )


def save_pretrained(
    model: keras.Model, directory: str | os.PathLike, *, overwrite: bool = False, **metadata: Any
) -> Path:
    """Write ``model`` as a pretrained folder ready for the Hugging Face Hub.

    The folder holds the Keras 3 unzipped layout (``config.json``, ``metadata.json``,
    ``model.weights.h5``; ``keras.saving.load_model(folder)`` reads it), ``mdwarf_zoo.json``
    and a ``README.md`` model card. It is written to a temporary folder next to ``directory``
    and renamed into place, so a crash never leaves a half-written folder. Metadata of a model
    loaded with :func:`from_pretrained` is carried over unless given again.

    Args:
        model: a zoo architecture (``mdwarf_zoo.create_model(...)`` or a loaded one).
        directory: the folder to create.
        overwrite: replace an existing pretrained folder (a folder with other files is
            never replaced).
        **metadata: any of ``grid`` (``WavelengthGrid``), ``preprocessor`` (``Preprocessor``),
            ``labels`` (names in output order), ``label_units`` (dict or list, e.g. ``K``,
            ``dex``, ``km/s``), ``label_scaling`` (dict name -> JSON-ready scaling),
            ``recipe`` (TOML path, shipped recipe name or ``{name, sha256}``), ``provenance``
            (JSON-ready dict: data set, number of spectra, seeds ...), ``metrics`` (name ->
            value), ``license``, ``description``, ``intended_use``, ``limitations``,
            ``training`` (free text for the card), ``tags``, ``model_name``, ``repo_id`` (for
            the card's example), ``extra`` (JSON-ready dict).

    Returns:
        The folder, as a ``pathlib.Path``.

    Raises:
        FileExistsError: when ``directory`` is not empty and ``overwrite`` is false, or holds
            files that are not a pretrained folder.
        ValueError: for a model that is not a zoo architecture or invalid metadata.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.spectra.grid import MB24_GRID
        >>> model = mdwarf_zoo.create_model("dense_ae_1024")
        >>> mdwarf_zoo.save_pretrained(model, "dense_ae_1024_mb24", grid=MB24_GRID,
        ...                            labels=["teff", "logg", "mh", "vsini"],
        ...                            label_units=["K", "dex", "dex", "km/s"])  # doctest: +SKIP
        PosixPath('dense_ae_1024_mb24')
    """
    from mdwarf_zoo.hub.cards import build_card

    directory = Path(directory)
    _check_target(directory, overwrite)
    repo_id = metadata.pop("repo_id", None)
    manifest = build_manifest(model, **metadata)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
    try:
        keras.saving.save_model(model, staging / "model", zipped=False)
        built = staging / "model"
        card = build_card(manifest, repo_id=repo_id)
        (built / CARD_NAME).write_text(str(card), encoding="utf-8")
        manifest["files"] = {
            name: {"sha256": sha256_file(built / name), "size": (built / name).stat().st_size}
            for name in _listed_files(built)
        }
        (built / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        _replace(built, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.debug("saved %s to %s", type(model).__name__, directory)
    return directory


def _replace(built: Path, directory: Path) -> None:
    """Move ``built`` to ``directory``; an old pretrained folder is swapped out, then removed."""
    if directory.exists() and not any(directory.iterdir()):
        directory.rmdir()
    if not directory.exists():
        built.rename(directory)
        return
    retired = built.parent / "retired"
    directory.rename(retired)
    try:
        built.rename(directory)
    except OSError:
        retired.rename(directory)
        raise


# --------------------------------------------------------------------------------------------
# from_pretrained


@dataclass(frozen=True)
class _Source:
    """A parsed ``source``: a local folder, or a Hub repository at a revision."""

    text: str
    folder: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    entry: Any = None


def _parse_source(source: str | os.PathLike, revision: str | None) -> _Source:
    from mdwarf_zoo.hub import catalogue as weights

    if isinstance(source, os.PathLike) or Path(str(source)).is_dir():
        if revision is not None:
            raise ValueError(
                f"from_pretrained: revision={revision!r} makes no sense for the local folder "
                f"{source!s}"
            )
        return _Source(str(source), folder=Path(source))
    if not isinstance(source, str) or not source:
        raise ValueError(f"from_pretrained: source must be a non-empty string, got {source!r}")
    text = source
    if source.startswith("hf://"):
        repo_id, at, pinned = source[len("hf://") :].partition("@")
        if not _REPO_ID.match(repo_id) or (at and not pinned):
            raise ValueError(
                f"from_pretrained: {source!r} is not hf://owner/name or hf://owner/name@revision"
            )
        if pinned and revision is not None and pinned != revision:
            raise ValueError(
                f"from_pretrained: {source!r} pins revision {pinned!r} but revision={revision!r}"
            )
        return _Source(text, repo_id=repo_id, revision=pinned or revision)
    if source in weights.list_pretrained():
        entry = weights.get_pretrained(source)
        if revision is not None and revision != entry.revision:
            raise ValueError(
                f"from_pretrained: the published entry {source!r} is pinned to "
                f"{entry.revision or 'a bundled folder'}; to load revision {revision!r} use "
                f"its repository: from_pretrained({entry.repository!r}, revision={revision!r})"
            )
        if entry.bundled is not None:
            return _Source(text, folder=entry.bundled_folder(), entry=entry)
        return _Source(text, repo_id=entry.repository, revision=entry.revision, entry=entry)
    if _REPO_ID.match(source):
        return _Source(text, repo_id=source, revision=revision)
    published = weights.list_pretrained()
    raise ValueError(
        f"from_pretrained: {source!r} is not an existing folder, a Hub repository "
        "('owner/name' or 'hf://owner/name[@revision]') nor a published weights entry "
        f"({', '.join(published) if published else 'none installed'})"
    )


def _fetch_hint(parsed: _Source, endpoint: str | None, cache_dir: object) -> str:
    command = f"mdwarf-zoo download {parsed.text}"
    if parsed.revision and parsed.entry is None and "@" not in parsed.text:
        command += f" --revision {parsed.revision}"
    if endpoint:
        command += f" --endpoint {endpoint}"
    if cache_dir:
        command += f" --cache-dir {cache_dir}"
    return command


def _snapshot(
    parsed: _Source,
    *,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    endpoint: str | None,
    token: str | bool | None,
) -> Path:
    import huggingface_hub
    from huggingface_hub import errors

    where = f"{parsed.repo_id}@{parsed.revision or 'main'}"
    server = endpoint or huggingface_hub.constants.ENDPOINT
    try:
        folder = huggingface_hub.snapshot_download(
            parsed.repo_id,
            revision=parsed.revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            token=token,
            library_name="mdwarf_zoo",
            library_version=__version__,
        )
    except errors.RevisionNotFoundError as error:
        raise PretrainedNotFoundError(
            f"revision {parsed.revision!r} of {parsed.repo_id!r} does not exist on {server}; "
            "check the branch, tag or commit sha"
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise PretrainedNotFoundError(
            f"repository {parsed.repo_id!r} (revision {parsed.revision or 'main'!r}) was not "
            f"found on {server}: check the name and revision, and pass token= for a private "
            "repository"
        ) from error
    except errors.LocalEntryNotFoundError as error:
        offline = local_files_only or huggingface_hub.constants.is_offline_mode()
        reason = (
            "downloads are switched off (local_files_only=True or HF_HUB_OFFLINE=1)"
            if offline
            else f"{server} could not be reached"
        )
        raise PretrainedNotFoundError(
            f"{parsed.text!r} ({where}) is not in the local cache "
            f"({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}) and {reason}. Fetch it "
            f"once while online: `{_fetch_hint(parsed, endpoint, cache_dir)}`"
        ) from error
    except errors.EntryNotFoundError as error:
        raise PretrainedNotFoundError(
            f"a file of {where} could not be downloaded from {server}: {error}"
        ) from error
    return Path(folder)


def _fetch(
    source: str | os.PathLike,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    endpoint: str | None,
    token: str | bool | None,
    defer_large: bool = False,
) -> tuple[PretrainedInfo, str, list[str]]:
    """Locate (download) a pretrained folder and verify it.

    Returns ``(info, origin, deferred)``: with ``defer_large``, files above
    ``_DEFER_BYTES`` are not verified yet and are named in ``deferred`` for the caller to check
    (in parallel with building the model) before it reads them.
    """
    parsed = _parse_source(source, revision)
    if parsed.folder is not None:
        folder = parsed.folder
        if not folder.is_dir():
            raise PretrainedNotFoundError(f"pretrained folder {folder} does not exist")
        commit = None
        origin = str(folder)
    else:
        folder = _snapshot(
            parsed,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            token=token,
        )
        commit = folder.name if _COMMIT_SHA.match(folder.name) else parsed.revision
        origin = f"{parsed.repo_id}@{commit}"
    manifest = read_manifest(folder)
    deferred = []
    for name, expected in manifest["files"].items():
        if defer_large and expected.get("size", 0) > _DEFER_BYTES:
            deferred.append(name)
        else:
            _verify_file(folder, name, expected, origin)
    _check_unlisted(folder, manifest, origin)
    entry = parsed.entry
    if entry is not None:
        entry.check_manifest(manifest, folder / MANIFEST_NAME)
    info = PretrainedInfo.from_manifest(
        manifest,
        source=parsed.text,
        folder=folder,
        repo_id=parsed.repo_id,
        revision=commit,
        entry=entry.name if entry is not None else None,
    )
    return info, origin, deferred


def download(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> PretrainedInfo:
    """Fetch a pretrained folder into the cache (or find it locally) and verify its files.

    Takes the arguments of :func:`from_pretrained` and returns where the verified folder is,
    without building the model.

    Returns:
        A :class:`PretrainedInfo`; ``info.folder`` is the verified folder and ``info.revision``
        the commit sha for Hub sources.

    Raises:
        See :func:`from_pretrained`.
    """
    info, _, _ = _fetch(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        token=token,
    )
    return info


def _check_architecture(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse, before Keras sees it, a config that is not a known zoo architecture."""
    architecture = manifest["architecture"]
    wanted = architecture.get("registered_name") or f"mdwarf_zoo>{architecture.get('class')}"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if registered != wanted or not str(registered).startswith("mdwarf_zoo>"):
        raise PretrainedError(
            f"{folder / 'config.json'} describes {registered or config.get('class_name')!r}, "
            f"not the mdwarf_zoo architecture {wanted!r} named in {MANIFEST_NAME}; refusing to "
            "load arbitrary Keras objects"
        )
    if keras.saving.get_registered_object(wanted) is None:
        needed = manifest.get("zoo_version")
        raise UnknownArchitectureError(
            f"{folder} needs the architecture {architecture.get('class')!r}, which mdwarf_zoo "
            f"{__version__} does not have; it was saved with mdwarf_zoo {needed}: "
            f"pip install -U 'mdwarf-zoo>={needed}'"
        )


def from_pretrained(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> keras.Model:
    """Load a pretrained zoo model, verified, with its metadata in ``model.zoo_metadata``.

    Args:
        source: a local pretrained folder, ``"owner/name"``, ``"hf://owner/name[@revision]"``
            or the name of a published weights entry (:func:`mdwarf_zoo.list_pretrained`).
        revision: branch, tag or 40-hex commit sha of a Hub repository (default ``main``).
            A cached commit sha loads without any network request.
        cache_dir: the Hugging Face cache folder (default: ``HF_HUB_CACHE``).
        local_files_only: never touch the network; use the cache only.
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).
        token: a Hub token for private repositories (default: the stored login).

    Returns:
        The model (an instance of its zoo class), with ``model.zoo_metadata``, a
        :class:`PretrainedInfo` (wavelength grid, ``Preprocessor``, labels, recipe,
        provenance, where it came from).

    Raises:
        PretrainedNotFoundError: for a missing folder, repository, revision or file, or a
            model not in the cache while offline (the message says how to fetch it).
        ChecksumMismatchError: when a file differs from the manifest (the message names it).
        UnknownArchitectureError: for an architecture the installed zoo does not know.
        PretrainedError: for a malformed manifest or a config that is not a zoo architecture
            or needs code Keras' safe mode refuses (e.g. a ``Lambda`` layer).
        ValueError: for a malformed ``source``.

    Examples:
        >>> import mdwarf_zoo
        >>> source = "hf://acme/dense_ae_1024_mb24@0123abc..."
        >>> model = mdwarf_zoo.from_pretrained(source)  # doctest: +SKIP
        >>> model.zoo_metadata.grid  # doctest: +SKIP
        WavelengthGrid(start=8800.0, stop=8835.0, step=0.01)
    """
    info, origin, deferred = _fetch(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        token=token,
        defer_large=True,
    )
    folder = info.folder
    # Hash the weights while Keras builds the graph from the (verified) config; the weights
    # are read only once their checksum has passed.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        checks = [
            pool.submit(_verify_file, folder, name, info.manifest["files"][name], origin)
            for name in deferred
        ]
        try:
            _check_architecture(folder, info.manifest)
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            try:
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            except (TypeError, ValueError) as error:
                raise PretrainedError(
                    f"Keras (safe mode) refused to build the model in {folder}: {error}"
                ) from error
        finally:
            for check in checks:
                check.result()
    try:
        model.load_weights(folder / "model.weights.h5")
    except ValueError as error:
        raise PretrainedError(
            f"{folder / 'model.weights.h5'} does not fit the {type(model).__name__} described "
            f"by config.json: {error}"
        ) from error
    _attach(model, info)
    logger.debug("loaded %s from %s", type(model).__name__, info)
    return model


# --------------------------------------------------------------------------------------------
# push_to_hub


def push_to_hub(
    model_or_directory: keras.Model | str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool = False,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> str:
    """Publish a model or a pretrained folder to a Hub repository.

    A model is first written with :func:`save_pretrained` (its metadata carried over); a folder
    is verified against its manifest before anything is sent. The repository is created when
    missing, and so is the branch ``revision``.

    Args:
        model_or_directory: a zoo model or a folder written by :func:`save_pretrained`.
        repo_id: ``"owner/name"``.
        revision: the branch to commit to (default ``main``).
        commit_message: the commit summary.
        private: create the repository as private (an existing one keeps its visibility).
        token: a Hub token with write access (default: the stored login).
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).

    Returns:
        The 40-hex sha of the commit, to pin in ``from_pretrained(..., revision=sha)``.

    Raises:
        ValueError: for a malformed ``repo_id`` or a folder that fails verification.
        huggingface_hub.errors.HfHubHTTPError: when the Hub refuses (authentication ...).

    Examples:
        >>> folder = "dense_ae_1024_mb24"  # written by save_pretrained
        >>> sha = mdwarf_zoo.push_to_hub(folder, "acme/dense_ae_1024_mb24")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise ValueError(f"push_to_hub: repo_id must look like 'owner/name', got {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="mdwarf_zoo-push-") as scratch:
        if isinstance(model_or_directory, keras.Model):
            folder = save_pretrained(model_or_directory, Path(scratch) / "model", repo_id=repo_id)
        else:
            folder = Path(model_or_directory)
            if not folder.is_dir():
                raise FileNotFoundError(f"push_to_hub: {folder} is not a folder")
        manifest = verify_folder(folder)
        files = [MANIFEST_NAME, *manifest["files"]]
        api = HfApi(
            endpoint=endpoint,
            token=token,
            library_name="mdwarf_zoo",
            library_version=__version__,
        )
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        architecture = manifest["architecture"]
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            allow_patterns=files,
            commit_message=commit_message
            or f"Upload {architecture.get('registry_name') or architecture['class']} "
            f"(mdwarf_zoo {manifest['zoo_version']})",
        )
    logger.info("pushed %s to %s: commit %s", folder, repo_id, info.oid)
    return info.oid
