"""Published weights entries: named, immutable records of pretrained checkpoints.

Each entry lives in ``weights_cards/<name>/`` (shipped as the package
``mdwarf_zoo.weights_cards``): ``entry.json`` holds the record and ``README.md`` its model
card. An entry points either to a Hub repository at a pinned 40-hex commit, or to a folder
shipped inside the package (``mdwarf_zoo/data/weights/<folder>/``) for offline use. A named
entry never changes; new weights get a new name.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib.resources
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mdwarf_zoo._resources import shipped_folder
from mdwarf_zoo.hub.cards import read_card
from mdwarf_zoo.hub.manifest import (
    CARD_NAME,
    COMMIT_SHA_PATTERN,
    MANIFEST_NAME,
    REPO_ID_PATTERN,
    ChecksumMismatchError,
    PretrainedError,
    sha256_file,
    verify_folder,
)
from mdwarf_zoo.spectra.grid import WavelengthGrid

ENTRY_FILE = "entry.json"
CARD_FILE = "README.md"

#: Where the entries and the bundled folders are looked up (tests point these elsewhere).
CARDS_ROOT = shipped_folder("weights_cards")
BUNDLED_ROOT = importlib.resources.files("mdwarf_zoo") / "data" / "weights"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: What an entry holds: one model (``from_pretrained``) or a whole pipeline (``load_pipeline``).
KINDS = ("model", "pipeline")
#: The file that makes a pretrained folder a pipeline (autoencoders + regressors + ensemble).
PIPELINE_FILE = "pipeline.json"
#: The format string of a ``pipeline.json`` this version reads and writes.
PIPELINE_FORMAT = "mdwarf_zoo.Pipeline/1"


@dataclass(frozen=True)
class WeightsEntry:
    """A published checkpoint.

    Attributes:
        name: the entry name, e.g. ``"mb24_quickstart_demo"``.
        architecture: the registry name of the architecture (``mdwarf_zoo.list_models()``);
            for a pipeline, that of its top-level autoencoder.
        description: one line for ``mdwarf-zoo weights``.
        license: SPDX-style licence of the weights, e.g. ``"cc-by-4.0"``.
        wavelength_grid: the input grid (Angstrom, vacuum).
        repository: ``"owner/name"`` on the Hub, or ``None`` for a bundled entry.
        revision: the pinned 40-hex commit sha in ``repository``.
        bundled: the folder name under ``mdwarf_zoo/data/weights/`` for a bundled entry.
        metrics: name -> value (read-only).
        recipe: the training recipe name; ``recipe_sha256`` its sha256.
        manifest_sha256: sha256 of the checkpoint's ``mdwarf_zoo.json`` (checked on load).
        parameters: number of parameters.
        paper: the reference, e.g. ``"arXiv:2405.08703"``.
        card_path: the entry's ``README.md``.
        kind: ``"model"`` (load with ``mdwarf_zoo.from_pretrained``) or ``"pipeline"``
            (autoencoders, regressors and ensemble; load with ``mdwarf_zoo.load_pipeline``).

    Raises:
        ValueError: for an entry that is neither a pinned Hub repository nor a bundled folder,
            or a malformed field (the message names it).
    """

    name: str
    architecture: str
    description: str
    license: str
    wavelength_grid: WavelengthGrid
    repository: str | None = None
    revision: str | None = None
    bundled: str | None = None
    metrics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    recipe: str | None = None
    recipe_sha256: str | None = None
    manifest_sha256: str | None = None
    parameters: int | None = None
    paper: str | None = None
    card_path: Path | None = None
    kind: str = "model"
    bundled_root: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"weights entry {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"weights entry name must be lower_snake_case, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.repository is None) == (self.bundled is None):
            raise ValueError(
                f"{where}: give either repository + revision or bundled, got "
                f"repository={self.repository!r}, bundled={self.bundled!r}"
            )
        if self.repository is not None:
            if not REPO_ID_PATTERN.match(self.repository):
                raise ValueError(
                    f"{where}: repository must be 'owner/name', got {self.repository!r}"
                )
            if not isinstance(self.revision, str) or not COMMIT_SHA_PATTERN.match(self.revision):
                raise ValueError(
                    f"{where}: revision must be a pinned 40-hex commit sha, got {self.revision!r}"
                )
        elif self.revision is not None:
            raise ValueError(f"{where}: a bundled entry has no revision, got {self.revision!r}")
        if self.bundled is not None and not _NAME.match(self.bundled):
            raise ValueError(f"{where}: bundled must be a folder name, got {self.bundled!r}")
        for key in ("manifest_sha256", "recipe_sha256"):
            value = getattr(self, key)
            if value is not None and not _SHA256.match(value):
                raise ValueError(f"{where}: {key} must be 64 hex digits, got {value!r}")
        if isinstance(self.wavelength_grid, Mapping):
            object.__setattr__(
                self, "wavelength_grid", WavelengthGrid.from_dict(dict(self.wavelength_grid))
            )
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @property
    def source(self) -> str:
        """``owner/name@sha`` or ``bundled:<folder>``."""
        if self.repository is not None:
            return f"{self.repository}@{self.revision}"
        return f"bundled:{self.bundled}"

    def bundled_folder(self) -> Path:
        """The shipped folder of a bundled entry.

        Raises:
            ValueError: for a Hub entry.
        """
        if self.bundled is None:
            raise ValueError(f"weights entry {self.name!r} is on the Hub ({self.source})")
        root = self.bundled_root if self.bundled_root is not None else BUNDLED_ROOT
        return Path(str(root / self.bundled))

    def card(self):
        """The entry's model card (``huggingface_hub.ModelCard``)."""
        if self.card_path is None:
            raise FileNotFoundError(f"weights entry {self.name!r} has no README.md card")
        return read_card(self.card_path)

    def check_manifest(self, manifest: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint that is not what this entry promises.

        Raises:
            ChecksumMismatchError: when ``manifest_sha256`` is set and differs.
            PretrainedError: when the architecture or the wavelength grid differ.
        """
        if self.manifest_sha256 is not None:
            actual = sha256_file(path)
            if actual != self.manifest_sha256:
                raise ChecksumMismatchError(
                    f"{path} has sha256 {actual} but the weights entry {self.name!r} pins "
                    f"{self.manifest_sha256}"
                )
        architecture = manifest["architecture"].get("registry_name")
        if architecture != self.architecture:
            raise PretrainedError(
                f"weights entry {self.name!r} promises architecture {self.architecture!r} but "
                f"{path} holds {architecture!r}"
            )
        grid = manifest.get("wavelength_grid")
        if grid is None or WavelengthGrid.from_dict(grid) != self.wavelength_grid:
            raise PretrainedError(
                f"weights entry {self.name!r} promises the grid {self.wavelength_grid} but "
                f"{path} records {grid}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record written to ``entry.json``."""
        record = {
            "name": self.name,
            "kind": self.kind,
            "architecture": self.architecture,
            "description": self.description,
            "license": self.license,
            "wavelength_grid": self.wavelength_grid.to_dict(),
            "repository": self.repository,
            "revision": self.revision,
            "bundled": self.bundled,
            "metrics": dict(self.metrics),
            "recipe": self.recipe,
            "recipe_sha256": self.recipe_sha256,
            "manifest_sha256": self.manifest_sha256,
            "parameters": self.parameters,
            "paper": self.paper,
        }
        return {key: value for key, value in record.items() if value is not None}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], **extra: Any) -> WeightsEntry:
        """Build from :meth:`to_dict` output.

        Raises:
            ValueError: for unknown or missing keys.
        """
        known = {
            "name",
            "kind",
            "architecture",
            "description",
            "license",
            "wavelength_grid",
            "repository",
            "revision",
            "bundled",
            "metrics",
            "recipe",
            "recipe_sha256",
            "manifest_sha256",
            "parameters",
            "paper",
        }
        unknown = set(record) - known
        if unknown:
            raise ValueError(
                f"weights entry: unknown keys {sorted(unknown)}; allowed {sorted(known)}"
            )
        missing = {"name", "architecture", "description", "license", "wavelength_grid"}
        missing -= set(record)
        if missing:
            raise ValueError(
                f"weights entry {record.get('name')!r}: missing keys {sorted(missing)}"
            )
        return cls(**record, **extra)


def _read_entry(folder: Any, bundled_root: Any) -> WeightsEntry:
    path = folder / ENTRY_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        entry = WeightsEntry.from_dict(
            record,
            card_path=Path(str(folder / CARD_FILE)) if (folder / CARD_FILE).is_file() else None,
            bundled_root=bundled_root,
        )
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from error
    if entry.name != folder.name:
        raise ValueError(f"{path}: entry name {entry.name!r} differs from its folder name")
    return entry


def _catalogue() -> dict[str, WeightsEntry]:
    entries = {}
    if CARDS_ROOT.is_dir():
        for folder in CARDS_ROOT.iterdir():
            if folder.is_dir() and (folder / ENTRY_FILE).is_file():
                entry = _read_entry(folder, BUNDLED_ROOT)
                entries[entry.name] = entry
    return dict(sorted(entries.items()))


def list_pretrained(pattern: str | None = None, *, kind: str | None = None) -> list[str]:
    """Names of the published weights entries, sorted.

    Args:
        pattern: an ``fnmatch`` pattern such as ``"mb24_*"``; ``None`` lists all.
        kind: ``"model"`` or ``"pipeline"`` keeps that kind only (``get_pretrained(name).kind``
            tells an entry's kind).

    Returns:
        The matching entry names (load a model with ``mdwarf_zoo.from_pretrained(name)``, a
        pipeline with ``mdwarf_zoo.load_pipeline(name)``).

    Raises:
        ValueError: for an unknown ``kind``.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.list_pretrained()  # doctest: +SKIP
        ['mb24_quickstart_demo']
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"list_pretrained: kind must be one of {KINDS}, got {kind!r}")
    entries = _catalogue()
    names = [name for name, entry in entries.items() if kind in (None, entry.kind)]
    if pattern is not None:
        names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    return names


def get_pretrained(name: str) -> WeightsEntry:
    """The published entry ``name``.

    Raises:
        ValueError: for an unknown name (the message lists close names).
    """
    entries = _catalogue()
    try:
        return entries[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(entries), n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown weights entry {name!r}.{hint} Published entries: "
            f"{', '.join(entries) or 'none'}"
        ) from None


def write_entry(
    name: str,
    folder: str | Path,
    *,
    description: str,
    license: str,
    cards_root: str | Path,
    repository: str | None = None,
    revision: str | None = None,
    bundled: str | None = None,
    paper: str | None = None,
) -> WeightsEntry:
    """Create ``cards_root/<name>/`` (``entry.json`` + ``README.md``) from a pretrained folder.

    The architecture, grid, metrics, recipe and manifest sha256 are read from the folder's
    verified manifest, so the entry and the checkpoint agree.

    Args:
        name: the new entry name (lower_snake_case).
        folder: the pretrained folder (as written by ``save_pretrained`` or downloaded).
        description: one line for ``mdwarf-zoo weights``.
        license: licence of the weights.
        cards_root: the ``weights_cards`` folder to write into.
        repository, revision: the Hub repository and the pinned commit sha, or
        bundled: the folder name under ``mdwarf_zoo/data/weights/``.
        paper: the reference.

    Returns:
        The new entry.

    Raises:
        FileExistsError: when the entry already exists (entries are immutable).
        ValueError: when the folder fails verification or has no wavelength grid.
    """
    folder = Path(folder)
    manifest = verify_folder(folder)
    if not manifest.get("wavelength_grid"):
        raise ValueError(f"{folder}: a published entry needs a wavelength grid in its manifest")
    architecture = manifest["architecture"]
    if not architecture.get("registry_name"):
        raise ValueError(f"{folder}: a published entry needs a registered architecture name")
    recipe = manifest.get("recipe") or {}
    entry = WeightsEntry(
        name=name,
        architecture=architecture["registry_name"],
        description=description,
        license=license,
        wavelength_grid=manifest["wavelength_grid"],
        repository=repository,
        revision=revision,
        bundled=bundled,
        metrics=manifest.get("metrics") or {},
        recipe=recipe.get("name"),
        recipe_sha256=recipe.get("sha256"),
        manifest_sha256=sha256_file(folder / MANIFEST_NAME),
        parameters=architecture.get("parameters"),
        paper=paper,
        kind="pipeline" if (folder / PIPELINE_FILE).is_file() else "model",
    )
    target = Path(cards_root) / name
    if target.exists():
        raise FileExistsError(
            f"weights entry {name!r} already exists in {target}; entries are "
            "immutable, choose a new name"
        )
    target.mkdir(parents=True)
    (target / ENTRY_FILE).write_text(json.dumps(entry.to_dict(), indent=2) + "\n", encoding="utf-8")
    (target / CARD_FILE).write_bytes((folder / CARD_NAME).read_bytes())
    return dataclasses.replace(entry, card_path=target / CARD_FILE)
