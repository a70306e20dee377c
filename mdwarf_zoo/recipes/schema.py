"""The validated recipe: one frozen dataclass per section, the stage names and the constants
the parser checks against (kept free of heavy imports: the CLI reads ``STAGES`` for --help)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINES",
    "MEMBER_STAGES",
    "OBSERVED_SOURCES",
    "STAGES",
    "STRATEGIES",
    "SYNTHETIC_SOURCES",
    "TABLE_FORMATS",
    "AutoencoderMember",
    "Autoencoders",
    "CalibrationSettings",
    "Compare",
    "Ensemble",
    "ObservedData",
    "Outputs",
    "Preprocessing",
    "Recipe",
    "RecipeError",
    "RegressorSettings",
    "Regressors",
    "SyntheticData",
    "Transfer",
    "recipe_sha256",
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

    ``fused``: a member's regressors of one architecture, batch size and epoch count are trained
    together as the branches of one model (``mdwarf_zoo.training.fused.train_fused``), with the same
    seeds, splits, batch order and Adam as one by one, so the same weights to float32 rounding;
    needs ``strategy = "default"``, where it is the default.
    """

    parameters: tuple[str, ...]
    seeds: int
    settings: dict[str, RegressorSettings]
    standardize_latents: bool = False
    fused: bool = True


@dataclass(frozen=True)
class Ensemble:
    """Ensemble selection, errors and latent alignment (``[ensemble]``).

    Attributes:
        best: K of the best-K selection (``None``: all regressors).
        error_model: ``"spread+validation+gap"`` (default: the ensemble spread, the
            regressors' validation rms and a domain-gap scale in quadrature),
            ``"spread+validation"`` or ``"spread"`` (MB24)
            (``mdwarf_zoo.pipeline.ensemble.ensemble_table``).
        gap: the domain-gap scale of ``"spread+validation+gap"``: a dict parameter -> scale
            (physical units; a parameter left out takes the prior
            ``mdwarf_zoo.pipeline.gap.GAP_PRIOR``), ``"prior"``, or ``"simulator"``
            (measured by the ensemble stage: ``GAP_TWINS`` held-out simulated stars and their
            observed twins through the run's own pipeline, ``measure_gap``; the same twins
            give the coverage factor ``ensemble.error_scale`` of the errors,
            ``coverage_profile``). ``None``:
            ``"simulator"`` when the synthetic set is simulated, else ``"prior"``.
        error_scale_bins: with ``gap = "simulator"``, the bins of the estimate in which the
            coverage factor is measured (``mdwarf_zoo.pipeline.gap.coverage_profile``; fewer
            when the twins do not fill that many bins of ``MIN_BIN_STARS``; 1: one factor per
            parameter).
        latent_alignment: ``None`` (MB24), ``"coral"`` or ``"coral_neighbours"``
            (``mdwarf_zoo.pipeline.align_latents``).
        alignment_neighbours: ``neighbours`` of ``"coral_neighbours"``.
        alignment_resamples: bootstrap draws of the alignment whose per-star spread is added
            to the errors (``mdwarf_zoo.pipeline.alignment_uncertainty``; 0: not added).
    """

    best: int | None = None
    error_model: str = "spread+validation+gap"
    gap: dict[str, float] | str | None = None
    error_scale_bins: int = 5
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


def recipe_sha256(text: str) -> str:
    """The hex sha256 of a recipe's text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
