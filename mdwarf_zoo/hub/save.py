"""``save_pretrained``: write a model as a pretrained folder, its manifest built from the model.

The folder is written next to its target and renamed into place, so a crash never leaves a
half-written folder (the layout is described in :mod:`mdwarf_zoo.hub.manifest`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from mdwarf_zoo._resources import shipped_folder
from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub.cards import build_card
from mdwarf_zoo.hub.manifest import (
    CARD_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PretrainedInfo,
    listed_files,
    sha256_file,
    thaw,
)
from mdwarf_zoo.registry import KINDS, list_models
from mdwarf_zoo.spectra.grid import WavelengthGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor

logger = logging.getLogger(__name__)

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


def _rebuilt(what: str, value: Any, kind: type, allowed: str) -> Any:
    """``value`` as a ``kind`` (``WavelengthGrid`` or ``Preprocessor``), rebuilt from a dict."""
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind.from_dict(dict(value))
    raise ValueError(f"save_pretrained: {what} must be {allowed}; got {type(value).__name__}")


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
    manifest = thaw(info.manifest)
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


def _is_zoo_architecture(model: Any) -> bool:
    """Whether ``model`` is a zoo architecture, told without importing ``mdwarf_zoo.models``
    (the hub sits below it): its class is the one Keras has registered under the package
    ``mdwarf_zoo`` (what ``from_pretrained`` will rebuild) and its ``kind`` is one the
    registry knows."""
    registered = keras.saving.get_registered_name(type(model))
    return (
        isinstance(model, keras.Model)
        and registered.startswith("mdwarf_zoo>")
        and keras.saving.get_registered_object(registered) is type(model)
        and getattr(model, "kind", None) in KINDS
    )


def build_manifest(model: keras.Model, **metadata: Any) -> dict[str, Any]:
    """The manifest of ``model`` without its ``files`` entry (see :func:`save_pretrained`).

    Raises:
        ValueError: for a model that is not a zoo architecture, an unknown metadata keyword or
            inconsistent metadata (e.g. a grid whose size differs from the model's input).
    """
    if not _is_zoo_architecture(model):
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

    grid = _rebuilt(
        "grid",
        merged.get("grid"),
        WavelengthGrid,
        "a WavelengthGrid or a dict with start, stop, step",
    )
    preprocessor = _rebuilt(
        "preprocessor",
        merged.get("preprocessor"),
        Preprocessor,
        "a Preprocessor or its to_dict() output",
    )
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
    return {
        "format": MANIFEST_FORMAT,
        "zoo_version": __version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": {
            "class": type(model).__name__,
            "registered_name": keras.saving.get_registered_name(type(model)),
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
            for name in listed_files(built)
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
