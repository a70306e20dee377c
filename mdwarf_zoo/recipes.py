"""TOML training recipes: load, validate and describe a whole training run.

A recipe is one TOML file that names everything a run of the reference pipeline needs:
where the synthetic and observed spectra come from, the preprocessing, the autoencoder
architectures and their hyper-parameter grid, transfer learning, the latent regressors, the
ensemble and the outputs. :func:`load_recipe` checks all of it (unknown keys with close-name
suggestions, types, ranges, architecture names against the registry, files on disk) *before*
any training starts and returns a :class:`Recipe`; :mod:`mdwarf_zoo.runner` executes it.

Sections and keys (see ``training_recipes/*.toml`` for commented examples)::

    [recipe]          name, description, seed, strategy ("default" | "mirrored" | "multi_worker")
    [data.synthetic]  source = "simulator" | "phoenix" | "set"
                      simulator: n, line_list_seed, workers, labels (optional table), limit,
                                 [data.synthetic.label_ranges] teff/logg/mh/vsini = [lo, hi]
                      phoenix:   grid (folder), labels (table), limit, workers
                      set:       path (HDF5 set)
    [data.observed]   source = "simulator" | "files" | "set"
                      simulator: n, snr, seed, [data.observed.label_ranges], [data.observed.gap]
                      files:     files (paths or globs), template (or no_rv = true for spectra
                                 already in the rest frame), rv_range, labels (optional truth)
                      set:       path
    [preprocessing]   window = [start, stop, step] (Angstrom), margin, resolving_power,
                      normalisation, scaling, fill_gaps
    [autoencoders]    members, epochs, batch_size, learning_rate, validation_split, contractive,
                      precision ("float32", "mixed_bfloat16", "mixed_float16"),
                      [autoencoders.grid] architecture = [...], <constructor argument> = [...]
    [transfer]        enabled, freeze, epochs, learning_rate, batch_size, validation_split,
                      mode ("mb24" | "anchored" | "decoder_only"), anchor_weight (anchored)
    [regressors]      architecture, parameters, seeds, epochs, learning_rate, batch_size,
                      validation_split, standardize_latents (not MB24), fused,
                      [regressors.overrides], [regressors.<parameter>]
    [ensemble]        best, error_model ("spread" | "spread+validation"),
                      latent_alignment ("none" | "coral" | "coral_neighbours"),
                      alignment_neighbours (with "coral_neighbours"),
                      alignment_resamples (with an alignment; 0 leaves the bootstrap out)
    [calibration]     labels (a table of known parameters of some observed stars, with an id
                      column), id_column (default "id"), parameters (default: every one
                      labelled): the final table is corrected (``mdwarf_zoo.calibrate``)
    [outputs]         table_format, plots
    [compare]         baselines (read by ``mdwarf-zoo compare``)

Relative paths are relative to the recipe file's folder.
"""

from __future__ import annotations

import copy
import difflib
import glob
import hashlib
import importlib.resources
import itertools
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdwarf_zoo._resources import shipped_folder
from mdwarf_zoo.labels import MB24_LABEL_RANGES, PARAMETER_UNITS, PARAMETERS, TRANSFER_MODES
from mdwarf_zoo.labels import SET_NAME as _SIMULATOR_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on python 3.10 only
    import tomli as tomllib

__all__ = [
    "AutoencoderMember",
    "Recipe",
    "RecipeError",
    "find_recipe",
    "list_recipes",
    "load_recipe",
]

#: The stages of a run in order; ``MEMBER_STAGES`` run once per autoencoder member.
STAGES = ("sets", "pretrain", "transfer", "encode", "regressors", "ensemble", "report")
MEMBER_STAGES = ("pretrain", "transfer", "encode", "regressors")
STRATEGIES = ("default", "mirrored", "multi_worker")
TABLE_FORMATS = ("ecsv", "fits", "csv")
SYNTHETIC_SOURCES = ("simulator", "phoenix", "set")
OBSERVED_SOURCES = ("simulator", "files", "set")
BASELINES = ("no_transfer", "spectrum_cnn")


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, the key, the value and the fix."""


# --------------------------------------------------------------------------------------------
# The validated recipe
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticData:
    """Where the labelled synthetic training spectra come from (``[data.synthetic]``)."""

    source: str
    n: int | None = None
    label_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    labels: Path | None = None
    limit: int | None = None
    grid: Path | None = None
    path: Path | None = None
    line_list_seed: int = 0
    workers: int = 1


@dataclass(frozen=True)
class ObservedData:
    """Where the unlabelled observed spectra come from (``[data.observed]``)."""

    source: str
    n: int | None = None
    snr: float | None = 150.0
    seed: int = 1
    label_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    gap: dict[str, float] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    template: Path | None = None
    rv_range: tuple[float, float, float] = (-300.0, 300.0, 0.25)
    no_rv: bool = False
    labels: Path | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Preprocessing:
    """The shared preprocessing of both domains (``[preprocessing]``)."""

    window: tuple[float, float, float] = (8800.0, 8835.0, 0.01)
    margin: float = 5.0
    resolving_power: float | None = 94600.0
    normalisation: str = "gisic"
    scaling: str = "clip"
    fill_gaps: bool = False

    def preprocessor(self):
        """The :class:`mdwarf_zoo.spectra.preprocess.Preprocessor` of this section."""
        from mdwarf_zoo.spectra.grid import WavelengthGrid
        from mdwarf_zoo.spectra.preprocess import Preprocessor

        return Preprocessor(
            grid=WavelengthGrid(*self.window),
            margin=self.margin,
            resolving_power=self.resolving_power,
            normalisation=self.normalisation,
            scaling=self.scaling,
            fill_gaps=self.fill_gaps,
        )

    @property
    def pixels(self) -> int:
        from mdwarf_zoo.spectra.grid import WavelengthGrid

        return len(WavelengthGrid(*self.window))


@dataclass(frozen=True)
class AutoencoderMember:
    """One ensemble member: an autoencoder configuration and its seed.

    Attributes:
        index: the member number (``--member I``).
        architecture: registry name.
        overrides: constructor arguments from the grid (``input_length`` and ``seed`` are added
            by the runner).
        seed: the member's seed (initial weights, split, batch order).
        grid_point: index of the grid point this member trains.
    """

    index: int
    architecture: str
    overrides: dict[str, Any]
    seed: int
    grid_point: int

    @property
    def name(self) -> str:
        return f"member_{self.index:03d}"


@dataclass(frozen=True)
class Autoencoders:
    """Autoencoder pretraining on synthetic spectra (``[autoencoders]``)."""

    grid: dict[str, tuple[Any, ...]]
    members: int
    epochs: int = 120
    batch_size: int = 128
    learning_rate: float = 1e-4
    validation_split: float = 0.3
    contractive: float | None = None
    precision: str = "float32"

    def grid_points(self) -> list[dict[str, Any]]:
        """The cartesian product of the grid, in the order the keys were written."""
        keys = list(self.grid)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]


@dataclass(frozen=True)
class Transfer:
    """Deep transfer learning on the observed spectra (``[transfer]``)."""

    enabled: bool = True
    freeze: int | str | tuple[int | str, ...] = "default"
    epochs: int = 60
    learning_rate: float | None = 1e-4
    batch_size: int = 128
    validation_split: float = 0.2
    #: What is re-trained (``mdwarf_zoo.transfer``'s ``mode``): ``"mb24"`` as MB24 wrote it,
    #: ``"anchored"`` (the synthetic latents held in place by replayed synthetic spectra) or
    #: ``"decoder_only"``.
    mode: str = "mb24"
    #: Weight of the anchor penalty (``mode = "anchored"``).
    anchor_weight: float = 1.0


@dataclass(frozen=True)
class RegressorSettings:
    """Training settings of the regressors of one parameter."""

    architecture: str
    overrides: dict[str, Any]
    epochs: int
    learning_rate: float
    batch_size: int
    validation_split: float


@dataclass(frozen=True)
class Regressors:
    """Latent regressors, one per parameter and seed per autoencoder (``[regressors]``).

    ``standardize_latents`` (not in MB24): each member's regressors read its latents
    standardised with the mean and standard deviation of its synthetic latents
    (``mdwarf_zoo.pipeline.LatentScaler``).

    ``fused``: a member's regressors of one architecture, batch size and epoch count are
    trained together as the branches of one model (``mdwarf_zoo.fused.train_fused``), with the
    same seeds, splits, batch order and Adam as one by one, so the same weights to float32
    rounding; needs ``strategy = "default"``.
    """

    parameters: tuple[str, ...]
    seeds: int
    settings: dict[str, RegressorSettings]
    standardize_latents: bool = False
    fused: bool = False


@dataclass(frozen=True)
class Ensemble:
    """Ensemble selection, errors and latent alignment (``[ensemble]``).

    Attributes:
        best: K of the best-K selection (``None``: all regressors).
        error_model: ``"spread"`` (MB24) or ``"spread+validation"``
            (``mdwarf_zoo.pipeline.ensemble.ensemble_table``).
        latent_alignment: ``None`` (MB24), ``"coral"`` or ``"coral_neighbours"``
            (``mdwarf_zoo.pipeline.align_latents``).
        alignment_neighbours: ``neighbours`` of ``"coral_neighbours"``.
        alignment_resamples: bootstrap draws of the alignment whose per-star spread is added
            to the errors (``mdwarf_zoo.pipeline.alignment_uncertainty``; 0: not added).
    """

    best: int | None = None
    error_model: str = "spread"
    latent_alignment: str | None = None
    alignment_neighbours: int = 20
    alignment_resamples: int = 30


@dataclass(frozen=True)
class CalibrationSettings:
    """A calibration on stars with known parameters (``[calibration]``), applied to the run's
    final table (:func:`mdwarf_zoo.calibrate`).

    Attributes:
        labels: the table of known parameters (``None``: no calibration).
        id_column: its column naming the observed stars (as the observed set names them).
        parameters: the parameters to calibrate (``None``: every one labelled).
    """

    labels: Path | None = None
    id_column: str = "id"
    parameters: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Outputs:
    """What the run writes besides the models (``[outputs]``)."""

    table_format: str = "ecsv"
    plots: bool = True


@dataclass(frozen=True)
class Compare:
    """Options of ``mdwarf-zoo compare`` (``[compare]``)."""

    baselines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A validated training recipe.

    Attributes:
        name, description, seed, strategy: from ``[recipe]``.
        synthetic, observed, preprocessing, autoencoders, transfer, regressors, ensemble,
        outputs, compare: one object per section.
        text: the recipe's TOML text, exactly as read.
        sha256: hex digest of ``text`` (what a run folder is tied to).
        source: the file it came from (``None`` for text).
    """

    name: str
    description: str
    seed: int
    strategy: str
    synthetic: SyntheticData
    observed: ObservedData
    preprocessing: Preprocessing
    autoencoders: Autoencoders
    transfer: Transfer
    regressors: Regressors
    ensemble: Ensemble
    outputs: Outputs
    compare: Compare
    text: str
    sha256: str
    source: Path | None = None
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    def members(self) -> list[AutoencoderMember]:
        """The autoencoder members: grid points in order, cycled with fresh seeds.

        Member ``i`` trains grid point ``i % len(grid)`` with seed ``recipe.seed + i``, so a
        recipe with more members than grid points repeats the grid with new seeds.
        """
        points = self.autoencoders.grid_points()
        members = []
        for index in range(self.autoencoders.members):
            point = dict(points[index % len(points)])
            architecture = point.pop("architecture")
            if self.autoencoders.contractive is not None:
                point.setdefault("contractive", self.autoencoders.contractive)
            point.setdefault("learning_rate", self.autoencoders.learning_rate)
            members.append(
                AutoencoderMember(
                    index, architecture, point, self.seed + index, index % len(points)
                )
            )
        return members


# --------------------------------------------------------------------------------------------
# Finding recipes
# --------------------------------------------------------------------------------------------
def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``training_recipes/*.toml``)."""
    folder = shipped_folder("training_recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_recipe(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """The TOML text of a recipe and its file.

    Args:
        name_or_path: a path to a ``.toml`` file, or the name of a shipped recipe
            (``"quickstart"``, ``"mb24_reference"``, ... see :func:`list_recipes`).

    Returns:
        ``(text, path)``; ``path`` is the file a shipped recipe was read from.

    Raises:
        FileNotFoundError: for a path that does not exist or an unknown recipe name.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path.read_text(encoding="utf-8"), path.resolve()
    name = str(name_or_path)
    if name.endswith(".toml") or os.sep in name or "/" in name:
        raise FileNotFoundError(f"recipe file {name!r} does not exist")
    resource = shipped_folder("training_recipes") / f"{name}.toml"
    if not resource.is_file():
        shipped = list_recipes()
        close = difflib.get_close_matches(name, shipped, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise FileNotFoundError(
            f"no recipe file {name!r} and no shipped recipe of that name.{hint} Shipped "
            f"recipes: {', '.join(shipped)}"
        )
    with importlib.resources.as_file(resource) as file:
        return Path(file).read_text(encoding="utf-8"), Path(file)


def load_recipe(
    name_or_path: str | os.PathLike, *, check_files: bool = True, check_models: bool = True
) -> Recipe:
    """Read and validate a recipe.

    Args:
        name_or_path: a ``.toml`` path or the name of a shipped recipe.
        check_files: refuse paths that do not exist (turn off to inspect a recipe whose data
            paths are still to be filled in, e.g. ``mb24_reference``).
        check_models: build every autoencoder grid point and regressor once, so a constructor
            argument of a wrong type or out of range fails here rather than mid-run.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        FileNotFoundError: for an unknown recipe.
        RecipeError: for any invalid content; the message names the key, the value and what
            is allowed.

    Examples:
        >>> from mdwarf_zoo.recipes import load_recipe
        >>> recipe = load_recipe("quickstart")
        >>> recipe.name
        'quickstart'
    """
    text, path = find_recipe(name_or_path)
    return parse_recipe(text, source=path, check_files=check_files, check_models=check_models)


def recipe_sha256(text: str) -> str:
    """The hex sha256 of a recipe's text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
class _Checker:
    """Reads one table of the TOML document, recording every key it consumes."""

    def __init__(
        self,
        where: str,
        table: Mapping[str, Any],
        origin: str,
        base: Path | None,
        check_files: bool,
    ):
        self.where = where
        self.table = table
        self.origin = origin
        self.base = base
        self.check_files = check_files
        self.used: set[str] = set()

    def fail(self, key: str, value: Any, expected: str) -> RecipeError:
        return RecipeError(
            f"recipe {self.origin}: [{self.where}] {key} = {_show(value)}: expected {expected}"
        )

    def has(self, key: str) -> bool:
        return key in self.table

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.table.get(key, default)

    def required(self, key: str, expected: str) -> Any:
        if key not in self.table:
            raise RecipeError(
                f"recipe {self.origin}: [{self.where}] is missing the key {key!r} ({expected})"
            )
        return self.raw(key)

    def integer(
        self, key: str, default: Any = None, *, minimum: int = 0, required: bool = False
    ) -> int | None:
        value = (
            self.required(key, f"an integer >= {minimum}") if required else self.raw(key, default)
        )
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, value, f"an integer >= {minimum}")
        return int(value)

    def number(
        self,
        key: str,
        default: Any = None,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float | None:
        value = self.raw(key, default)
        if value is None and key not in self.table:
            return None
        bounds = _bounds_text(low, high, low_open, high_open)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise self.fail(key, value, f"a number{bounds}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise self.fail(key, value, f"a number{bounds}")
        if high is not None and (value > high or (high_open and value == high)):
            raise self.fail(key, value, f"a number{bounds}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def choice(
        self, key: str, allowed: tuple[str, ...], default: Any = None, *, required: bool = False
    ) -> str:
        if required:
            value = self.required(key, f"one of {list(allowed)}")
        else:
            value = self.raw(key, default)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(key, value, f"one of {list(allowed)}{hint}")
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.raw(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, value, "a string")
        return value

    def path(self, key: str, *, kind: str = "file", required: bool = False) -> Path | None:
        if required:
            value = self.required(key, f"the path of a {kind}")
        else:
            value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, f"the path of a {kind} (a string)")
        resolved = self.resolve(value)
        if self.check_files:
            exists = resolved.is_dir() if kind == "folder" else resolved.is_file()
            if not exists:
                raise RecipeError(
                    f"recipe {self.origin}: [{self.where}] {key} = {value!r}: no such {kind} "
                    f"({resolved}); fix the path (relative paths are relative to the recipe's "
                    f"folder{'' if self.base is None else f' {self.base}'})"
                )
        return resolved

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        return path

    def sub(self, key: str, *, required: bool = False) -> Mapping[str, Any]:
        value = self.raw(key, None)
        if value is None:
            if required:
                raise RecipeError(
                    f"recipe {self.origin}: the table [{self.where}.{key}] is missing"
                )
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, value, f"a table ([{self.where}.{key}])")
        return value

    def finish(self, allowed: tuple[str, ...] | None = None) -> None:
        """Refuse keys that were never read, suggesting close names."""
        known = tuple(self.used) if allowed is None else allowed
        for key in self.table:
            if key not in self.used and key not in (allowed or ()):
                close = difflib.get_close_matches(
                    key, sorted(set(known) | self.used), n=1, cutoff=0.6
                )
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RecipeError(
                    f"recipe {self.origin}: [{self.where}] has an unknown key {key!r}{hint} "
                    f"Allowed keys: {', '.join(sorted(set(known) | self.used))}"
                )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bounds_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return f" {' and '.join(parts)}" if parts else ""


def _label_ranges(
    checker: _Checker, key: str, default: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    from mdwarf_zoo.spectra.simulate import LABEL_RANGES

    table = checker.sub(key)
    where = f"{checker.where}.{key}"
    ranges = dict(default)
    for name, value in table.items():
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RecipeError(
                f"recipe {checker.origin}: [{where}] has an unknown key "
                f"{name!r}{hint} Allowed keys: {', '.join(PARAMETERS)}"
            )
        lo_allowed, hi_allowed = LABEL_RANGES[_SIMULATOR_NAMES[name]]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not lo_allowed <= value[0] <= value[1] <= hi_allowed
        ):
            raise RecipeError(
                f"recipe {checker.origin}: [{where}] {name} = {_show(value)}: expected [low, "
                f"high] with {lo_allowed:g} <= low <= high <= {hi_allowed:g} "
                f"({PARAMETER_UNITS[name]}; the simulator's range)"
            )
        ranges[name] = (float(value[0]), float(value[1]))
    return ranges


def _gap(checker: _Checker) -> dict[str, float]:
    from dataclasses import fields

    from mdwarf_zoo.spectra.simulate import GapConfig

    table = dict(checker.sub("gap"))
    knobs = [f.name for f in fields(GapConfig)]
    for name, value in table.items():
        if name not in knobs:
            close = difflib.get_close_matches(name, knobs, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RecipeError(
                f"recipe {checker.origin}: [{checker.where}.gap] has an unknown "
                f"key {name!r}{hint} Allowed keys: {', '.join(knobs)}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(
                f"recipe {checker.origin}: [{checker.where}.gap] {name} = "
                f"{_show(value)}: expected a number"
            )
    try:
        GapConfig(**table)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"recipe {checker.origin}: [{checker.where}.gap]: {error}") from None
    return table


def _section(
    document: Mapping[str, Any],
    name: str,
    origin: str,
    base: Path | None,
    check_files: bool,
    *,
    required: bool = False,
) -> _Checker:
    parts = name.split(".")
    table: Any = document
    for part in parts:
        table = table.get(part, {}) if isinstance(table, Mapping) else None
        if not isinstance(table, Mapping):
            raise RecipeError(f"recipe {origin}: [{name}] must be a table, got {_show(table)}")
    if required and not table:
        raise RecipeError(f"recipe {origin}: the table [{name}] is missing")
    return _Checker(name, table, origin, base, check_files)


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------
_TOP = (
    "recipe",
    "data",
    "preprocessing",
    "autoencoders",
    "transfer",
    "regressors",
    "ensemble",
    "calibration",
    "outputs",
    "compare",
)


def parse_recipe(
    text: str, *, source: Path | None = None, check_files: bool = True, check_models: bool = True
) -> Recipe:
    """Validate recipe text; see :func:`load_recipe` (relative paths resolve against the
    folder of ``source``, or the working directory when it is ``None``)."""
    origin = repr(str(source)) if source is not None else "<text>"
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"recipe {origin} is not valid TOML: {error}") from None
    base = source.parent if source is not None else Path.cwd()
    for key in document:
        if key not in _TOP:
            close = difflib.get_close_matches(key, _TOP, n=1, cutoff=0.5)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise RecipeError(
                f"recipe {origin}: unknown table [{key}]{hint} Allowed tables: "
                f"{', '.join(f'[{t}]' for t in _TOP)}"
            )

    def section(name: str, required: bool = False) -> _Checker:
        return _section(document, name, origin, base, check_files, required=required)

    # [recipe]
    head = section("recipe", required=True)
    name = head.required("name", "a short name for the run")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise head.fail("name", name, "a non-empty string of letters, digits, '-', '_', '.'")
    description = head.string("description", "") or ""
    seed = head.integer("seed", 0)
    strategy = head.choice("strategy", STRATEGIES, "default")
    head.finish()

    data = section("data", required=True)
    for key in data.table:
        if key not in ("synthetic", "observed"):
            raise RecipeError(
                f"recipe {origin}: unknown table [data.{key}]; allowed: "
                "[data.synthetic], [data.observed]"
            )
    synthetic = _synthetic(section("data.synthetic", required=True))
    observed = _observed(section("data.observed", required=True), synthetic)
    preprocessing = _preprocessing(section("preprocessing"))
    autoencoders = _autoencoders(section("autoencoders", required=True))
    transfer = _transfer(section("transfer"))
    if transfer.mode == "anchored" and strategy != "default":
        raise RecipeError(
            f'recipe {origin}: [transfer] mode = "anchored" trains with strategy = "default" '
            f"only (got strategy = {strategy!r}); use mode = \"decoder_only\" or strategy = "
            '"default"'
        )
    regressors = _regressors(section("regressors", required=True))
    if regressors.fused and strategy != "default":
        raise RecipeError(
            f"recipe {origin}: [regressors] fused = true trains a member's regressors in one "
            f"process; it needs [recipe] strategy = \"default\", got {strategy!r} (set fused "
            "= false to train them one by one under the strategy)"
        )
    ens = section("ensemble")
    ensemble = _ensemble(ens)
    n_regressors = autoencoders.members * regressors.seeds
    if ensemble.best is not None and ensemble.best > n_regressors:
        raise ens.fail(
            "best",
            ensemble.best,
            f"at most {n_regressors} (members {autoencoders.members} x seeds "
            f"{regressors.seeds} regressors per parameter)",
        )
    calibration = _calibration(section("calibration"))
    out = section("outputs")
    outputs = Outputs(
        table_format=out.choice("table_format", TABLE_FORMATS, "ecsv"),
        plots=out.boolean("plots", True),
    )
    out.finish()
    cmp_ = section("compare")
    baselines = cmp_.raw("baselines", [])
    if not isinstance(baselines, list) or any(b not in BASELINES for b in baselines):
        raise cmp_.fail("baselines", baselines, f"a list with items from {list(BASELINES)}")
    cmp_.finish()

    recipe = Recipe(
        name=name,
        description=description,
        seed=seed,
        strategy=strategy,
        synthetic=synthetic,
        observed=observed,
        preprocessing=preprocessing,
        autoencoders=autoencoders,
        transfer=transfer,
        regressors=regressors,
        ensemble=ensemble,
        outputs=outputs,
        compare=Compare(tuple(baselines)),
        text=text,
        sha256=recipe_sha256(text),
        source=source,
        calibration=calibration,
    )
    _check_architectures(recipe, origin, check_models)
    return recipe


def _synthetic(c: _Checker) -> SyntheticData:
    source = c.choice("source", SYNTHETIC_SOURCES, required=True)
    if source == "simulator":
        labels = c.path("labels")
        n = c.integer("n", None, minimum=1, required=labels is None)
        result = SyntheticData(
            source,
            n=n,
            label_ranges=_label_ranges(c, "label_ranges", MB24_LABEL_RANGES),
            labels=labels,
            limit=c.integer("limit", None, minimum=1),
            line_list_seed=c.integer("line_list_seed", 0),
            workers=c.integer("workers", 1, minimum=1),
        )
        if labels is not None and c.has("n"):
            raise c.fail(
                "n",
                c.table["n"],
                "no n when labels is given (use limit to take the first rows of the table)",
            )
    elif source == "phoenix":
        result = SyntheticData(
            source,
            grid=c.path("grid", kind="folder", required=True),
            labels=c.path("labels", required=True),
            limit=c.integer("limit", None, minimum=1),
            workers=c.integer("workers", 1, minimum=1),
        )
    else:
        result = SyntheticData(source, path=c.path("path", required=True))
    c.finish()
    return result


def _observed(c: _Checker, synthetic: SyntheticData) -> ObservedData:
    source = c.choice("source", OBSERVED_SOURCES, required=True)
    if source == "simulator":
        ranges = _label_ranges(c, "label_ranges", synthetic.label_ranges or MB24_LABEL_RANGES)
        snr = c.raw("snr", 150.0)
        if snr is not None and snr != 0:
            snr = c.number("snr", 150.0, low=0, low_open=True)
        result = ObservedData(
            source,
            n=c.integer("n", None, minimum=1, required=True),
            snr=snr or None,
            seed=c.integer("seed", 1),
            label_ranges=ranges,
            gap=_gap(c),
        )
    elif source == "files":
        patterns = c.required("files", "a list of paths or glob patterns")
        if isinstance(patterns, str):
            patterns = [patterns]
        if (
            not isinstance(patterns, list)
            or not patterns
            or not all(isinstance(p, str) and p for p in patterns)
        ):
            raise c.fail("files", patterns, "a non-empty list of paths or glob patterns")
        files: list[Path] = []
        for pattern in patterns:
            resolved = str(c.resolve(pattern))
            matches = sorted(Path(p) for p in glob.glob(resolved))
            if not matches and c.check_files:
                raise RecipeError(
                    f"recipe {c.origin}: [{c.where}] files: {pattern!r} matches no file "
                    f"({resolved}); fix the path (relative paths are relative to the "
                    "recipe's folder)"
                )
            files.extend(matches)
        rv = c.raw("rv_range", [-300.0, 300.0, 0.25])
        if (
            not isinstance(rv, list)
            or len(rv) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rv)
            or not rv[0] < rv[1]
            or rv[2] <= 0
        ):
            raise c.fail("rv_range", rv, "[min, max, step] in km/s with min < max, step > 0")
        template, no_rv = c.path("template"), c.boolean("no_rv", False)
        if (template is None) == (not no_rv):
            raise RecipeError(
                f"recipe {c.origin}: [{c.where}] give either template = a radial-velocity "
                "template file (each spectrum is moved to its rest frame against it) or "
                "no_rv = true (the spectra are already in the rest frame), not "
                + ("both" if no_rv else "neither")
            )
        result = ObservedData(
            source,
            files=tuple(files),
            template=template,
            rv_range=tuple(float(v) for v in rv),
            no_rv=no_rv,
            labels=c.path("labels"),
        )
    else:
        result = ObservedData(source, path=c.path("path", required=True), labels=c.path("labels"))
    c.finish()
    return result


def _preprocessing(c: _Checker) -> Preprocessing:
    from mdwarf_zoo.spectra.preprocess import NORMALISATIONS, SCALINGS

    window = c.raw("window", [8800.0, 8835.0, 0.01])
    if (
        not isinstance(window, list)
        or len(window) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in window)
        or not 0 < window[0] < window[1]
        or window[2] <= 0
    ):
        raise c.fail(
            "window", window, "[start, stop, step] in Angstrom with 0 < start < stop and step > 0"
        )
    resolving_power = c.raw("resolving_power", 94600.0)
    if resolving_power not in (None, 0, "none"):
        resolving_power = c.number("resolving_power", 94600.0, low=0, low_open=True)
    else:
        resolving_power = None
    result = Preprocessing(
        window=tuple(float(v) for v in window),
        margin=c.number("margin", 5.0, low=0),
        resolving_power=resolving_power,
        normalisation=c.choice("normalisation", NORMALISATIONS, "gisic"),
        scaling=c.choice("scaling", SCALINGS, "clip"),
        fill_gaps=c.boolean("fill_gaps", False),
    )
    try:
        result.preprocessor()
    except (TypeError, ValueError) as error:
        raise RecipeError(f"recipe {c.origin}: [preprocessing]: {error}") from None
    c.finish()
    return result


def _autoencoders(c: _Checker) -> Autoencoders:
    grid_table = c.sub("grid", required=True)
    where = f"{c.where}.grid"
    if "architecture" not in grid_table:
        raise RecipeError(
            f"recipe {c.origin}: [{where}] is missing the key 'architecture' (a "
            "registry name or a list of them; see `mdwarf-zoo models`)"
        )
    grid: dict[str, tuple[Any, ...]] = {}
    for key, value in grid_table.items():
        values = value if isinstance(value, list) else [value]
        if not values:
            raise RecipeError(
                f"recipe {c.origin}: [{where}] {key} = []: expected a value or a "
                "non-empty list of values"
            )
        if key in ("input_length", "seed", "name"):
            raise RecipeError(
                f"recipe {c.origin}: [{where}] {key}: set by the runner (from "
                "[preprocessing] window and the member seed); remove it"
            )
        grid[key] = tuple(values)
    n_points = math.prod(len(v) for v in grid.values())
    result = Autoencoders(
        grid=grid,
        members=c.integer("members", n_points, minimum=1),
        epochs=c.integer("epochs", 120, minimum=1),
        batch_size=c.integer("batch_size", 128, minimum=1),
        learning_rate=c.number("learning_rate", 1e-4, low=0, low_open=True),
        validation_split=c.number("validation_split", 0.3, low=0, high=1, high_open=True),
        contractive=c.number("contractive", None, low=0),
        precision=_precision(c),
    )
    c.finish()
    return result


def _precision(c: _Checker) -> str:
    from mdwarf_zoo.registry import PRECISIONS

    value = c.raw("precision", "float32")
    if value not in PRECISIONS:
        raise RecipeError(
            f"recipe {c.origin}: [autoencoders] precision = {value!r}: expected one of "
            f"{', '.join(repr(p) for p in PRECISIONS)}"
        )
    return value


def _freeze(c: _Checker, value: Any) -> int | str | tuple[int | str, ...]:
    if value == "default":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, list)
        and value
        and all(
            (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str) for v in value
        )
    ):
        return tuple(value)
    raise c.fail(
        "freeze",
        value,
        '"default" (the architecture\'s MB24 rule), an integer N '
        "(freeze layers[:N]) or a list of layer indices/names",
    )


def _transfer(c: _Checker) -> Transfer:
    lr = c.raw("learning_rate", 1e-4)
    result = Transfer(
        enabled=c.boolean("enabled", True),
        freeze=_freeze(c, c.raw("freeze", "default")),
        epochs=c.integer("epochs", 60, minimum=1),
        learning_rate=None
        if lr == "default"
        else c.number("learning_rate", 1e-4, low=0, low_open=True),
        batch_size=c.integer("batch_size", 128, minimum=1),
        validation_split=c.number("validation_split", 0.2, low=0, high=1, high_open=True),
        mode=c.choice("mode", TRANSFER_MODES, "mb24"),
        anchor_weight=c.number("anchor_weight", 1.0, low=0),
    )
    if c.has("anchor_weight") and result.mode != "anchored":
        raise c.fail("anchor_weight", c.raw("anchor_weight"),
                     'no anchor_weight: it is a setting of mode = "anchored"')
    c.finish()
    return result


_REGRESSOR_KEYS = (
    "architecture",
    "epochs",
    "learning_rate",
    "batch_size",
    "validation_split",
    "overrides",
)


def _regressors(c: _Checker) -> Regressors:
    parameters = c.raw("parameters", list(PARAMETERS))
    if (
        not isinstance(parameters, list)
        or not parameters
        or any(p not in PARAMETERS for p in parameters)
        or len(set(parameters)) != len(parameters)
    ):
        raise c.fail(
            "parameters", parameters, f"a non-empty list of distinct names from {list(PARAMETERS)}"
        )
    seeds = c.integer("seeds", 5, minimum=1)
    standardize_latents = c.boolean("standardize_latents", False)
    fused = c.boolean("fused", False)
    defaults = {
        "architecture": c.string("architecture", "latent_cnn"),
        "epochs": c.integer("epochs", 200, minimum=1),
        "learning_rate": c.number("learning_rate", 0.01, low=0, low_open=True),
        "batch_size": c.integer("batch_size", 128, minimum=1),
        "validation_split": c.number(
            "validation_split", 0.3, low=0, high=1, low_open=True, high_open=True
        ),
        "overrides": dict(c.sub("overrides")),
    }
    _check_overrides(c, "overrides", defaults["overrides"])
    settings = {}
    for parameter in PARAMETERS:
        table = c.sub(parameter)
        if parameter not in parameters and table:
            raise RecipeError(
                f"recipe {c.origin}: [{c.where}.{parameter}] is given but "
                f"{parameter!r} is not in [{c.where}] parameters = {parameters}"
            )
        sub = _Checker(f"{c.where}.{parameter}", table, c.origin, c.base, c.check_files)
        values = dict(defaults)
        if sub.has("architecture"):
            values["architecture"] = sub.string("architecture")
        if sub.has("epochs"):
            values["epochs"] = sub.integer("epochs", minimum=1)
        if sub.has("learning_rate"):
            values["learning_rate"] = sub.number("learning_rate", low=0, low_open=True)
        if sub.has("batch_size"):
            values["batch_size"] = sub.integer("batch_size", minimum=1)
        if sub.has("validation_split"):
            values["validation_split"] = sub.number(
                "validation_split", low=0, high=1, low_open=True, high_open=True
            )
        if sub.has("overrides"):
            extra = dict(sub.sub("overrides"))
            _check_overrides(sub, "overrides", extra)
            values["overrides"] = {**defaults["overrides"], **extra}
        sub.finish(_REGRESSOR_KEYS)
        if parameter in parameters:
            settings[parameter] = RegressorSettings(**values)
    c.finish()
    return Regressors(
        parameters=tuple(parameters),
        seeds=seeds,
        settings=settings,
        standardize_latents=standardize_latents,
        fused=fused,
    )


def _ensemble(c: _Checker) -> Ensemble:
    from mdwarf_zoo.pipeline import ALIGNMENTS
    from mdwarf_zoo.pipeline.ensemble import ERROR_MODELS

    alignment = c.choice("latent_alignment", ("none", *ALIGNMENTS), "none")
    if c.has("alignment_neighbours") and alignment != "coral_neighbours":
        raise c.fail(
            "alignment_neighbours",
            c.table["alignment_neighbours"],
            'the key only with latent_alignment = "coral_neighbours" (the number of synthetic '
            f"neighbours per star of that method); latent_alignment is {alignment!r}",
        )
    if c.has("alignment_resamples") and alignment == "none":
        raise c.fail(
            "alignment_resamples",
            c.table["alignment_resamples"],
            "the key only with a latent_alignment (the bootstrap draws of the alignment); "
            "latent_alignment is 'none'",
        )
    resamples = c.integer("alignment_resamples", 30, minimum=0)
    if resamples == 1:
        raise c.fail("alignment_resamples", resamples, "0 (no bootstrap) or at least 2 draws")
    result = Ensemble(
        best=c.integer("best", None, minimum=1),
        error_model=c.choice("error_model", ERROR_MODELS, "spread"),
        latent_alignment=None if alignment == "none" else alignment,
        alignment_neighbours=c.integer("alignment_neighbours", 20, minimum=1),
        alignment_resamples=resamples,
    )
    c.finish()
    return result


def _calibration(c: _Checker) -> CalibrationSettings:
    if not c.table:
        return CalibrationSettings()
    labels = c.path("labels", required=True)
    id_column = c.string("id_column", "id")
    if not id_column:
        raise c.fail("id_column", id_column, "the name of the column that names the stars")
    parameters = c.raw("parameters")
    if parameters is not None and (
        not isinstance(parameters, list)
        or not parameters
        or any(p not in PARAMETERS for p in parameters)
        or len(set(parameters)) != len(parameters)
    ):
        raise c.fail("parameters", parameters, f"a list of distinct names from {list(PARAMETERS)}")
    c.finish()
    if c.check_files:
        _check_calibration_labels(c, labels, id_column, parameters)
    return CalibrationSettings(labels, id_column, None if parameters is None else tuple(parameters))


def _check_calibration_labels(
    c: _Checker, path: Path, id_column: str, parameters: list[str] | None
) -> None:
    """Read the labels table now, so that a bad one stops the run before any training."""
    from mdwarf_zoo.pipeline.calibration import column_values, load_labels_table

    where = f"recipe {c.origin}: [calibration] labels = {str(path)!r}"
    try:
        table = load_labels_table(path, what="table")
    except ValueError as error:
        raise RecipeError(f"{where}: {error}") from None
    wanted = list(parameters or [p for p in PARAMETERS if p in table.colnames])
    problem = None
    if id_column not in table.colnames:
        problem = f"no id_column {id_column!r}"
    elif not wanted or any(p not in table.colnames for p in wanted):
        problem = f"no column for {[p for p in wanted if p not in table.colnames] or 'any'}"
    if problem:
        raise RecipeError(
            f"{where}: {problem} (columns {table.colnames}); expected the column {id_column!r} "
            f"naming observed stars and columns from {list(PARAMETERS)}"
        )
    for name in wanted:
        values = column_values(table[name])
        bad = [str(i) for i, v in zip(table[id_column], values, strict=True)
               if not math.isfinite(v)]
        if bad:
            raise RecipeError(f"{where}: {name!r} is NaN or missing for star(s) {bad}")


def _check_overrides(c: _Checker, key: str, overrides: Mapping[str, Any]) -> None:
    for name in ("latent_dim", "seed", "name", "learning_rate"):
        if name in overrides:
            hint = (
                "use the learning_rate key"
                if name == "learning_rate"
                else "it is set by the runner"
            )
            raise RecipeError(f"recipe {c.origin}: [{c.where}.{key}] {name}: {hint}")


def _check_architectures(recipe: Recipe, origin: str, build: bool) -> None:
    """Architecture names against the registry; optionally build each configuration once."""
    from mdwarf_zoo.registry import get_entry

    def entry(name: Any, where: str, kind: str):
        try:
            found = get_entry(name)
        except ValueError as error:
            raise RecipeError(
                f"recipe {origin}: [{where}] architecture = {_show(name)}: {error}"
            ) from None
        if found.kind != kind:
            raise RecipeError(
                f"recipe {origin}: [{where}] architecture = {name!r} is a "
                f"{found.kind}; expected a {kind} (see `mdwarf-zoo models --kind "
                f"{kind}`)"
            )
        return found

    for name in recipe.autoencoders.grid["architecture"]:
        entry(name, "autoencoders.grid", "autoencoder")
    for parameter, settings in recipe.regressors.settings.items():
        entry(settings.architecture, f"regressors.{parameter}", "regressor")
    if not build:
        return
    import keras

    pixels = recipe.preprocessing.pixels
    latent_dims = set()
    seen = set()
    for member in recipe.members():
        key = (member.architecture, repr(sorted(member.overrides.items())))
        if key in seen:
            continue
        seen.add(key)
        try:
            model = get_entry(member.architecture).builder(
                **{**copy.deepcopy(member.overrides), "input_length": pixels}
            )
        except (TypeError, ValueError) as error:
            raise RecipeError(
                f"recipe {origin}: [autoencoders.grid] point {member.grid_point} "
                f"({member.architecture}, {member.overrides}) cannot be built: {error}"
            ) from None
        latent_dims.add(int(model.latent_dim))
        del model
        keras.backend.clear_session()
    _check_alignment_sample(recipe, origin, max(latent_dims))
    for parameter, settings in recipe.regressors.settings.items():
        for latent_dim in sorted(latent_dims):
            try:
                get_entry(settings.architecture).builder(
                    **{
                        **settings.overrides,
                        "latent_dim": latent_dim,
                        "learning_rate": settings.learning_rate,
                    }
                )
            except (TypeError, ValueError) as error:
                raise RecipeError(
                    f"recipe {origin}: [regressors.{parameter}] {settings.architecture} with "
                    f"overrides {settings.overrides} cannot be built: {error}"
                ) from None
    keras.backend.clear_session()


def _check_alignment_sample(recipe: Recipe, origin: str, latent_dim: int) -> None:
    """Latent alignment estimates the covariance of the observed latents: refuse, before any
    training, an observed sample of known size that is too small for it."""
    alignment = recipe.ensemble.latent_alignment
    observed = recipe.observed
    if alignment is None:
        return
    if observed.source == "simulator":
        n_observed, where = observed.n, "n"
    elif observed.source == "files" and observed.files:
        n_observed, where = len(observed.files), "files"
    else:
        return  # an HDF5 set: its size is known once it is read (align_latents checks it)
    if n_observed < 2 * latent_dim:
        raise RecipeError(
            f"recipe {origin}: [ensemble] latent_alignment = {alignment!r} needs at least "
            f"{2 * latent_dim} observed spectra (2 x the {latent_dim}-d latent space, to estimate "
            f"their covariance); [data.observed] {where} gives {n_observed}. Use more observed "
            'spectra or latent_alignment = "none"'
        )
