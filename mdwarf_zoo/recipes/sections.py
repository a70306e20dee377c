"""The section readers: each takes the :class:`Checker` of one recipe table and returns that
section's settings (or refuses the table), in the order :func:`parse_recipe` calls them.

Heavy modules (simulator, preprocessing, registry, calibration) are imported inside the readers
that need them: the CLI imports this package for --help, which must not load TensorFlow.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from mdwarf_zoo.labels import MB24_LABEL_RANGES, PARAMETER_UNITS, PARAMETERS, TRANSFER_MODES
from mdwarf_zoo.labels import SET_NAME as _SIMULATOR_NAMES
from mdwarf_zoo.recipes.checker import Checker, is_numbers, show, unknown_key
from mdwarf_zoo.recipes.schema import (
    BASELINES,
    OBSERVED_SOURCES,
    STRATEGIES,
    SYNTHETIC_SOURCES,
    TABLE_FORMATS,
    Autoencoders,
    CalibrationSettings,
    Compare,
    Ensemble,
    ObservedData,
    Outputs,
    Preprocessing,
    RecipeError,
    Regressors,
    RegressorSettings,
    SyntheticData,
    Transfer,
)


def read_head(c: Checker) -> tuple[str, str, int, str]:
    """``[recipe]``: name, description, seed and strategy."""
    name = c.required("name", "a short name for the run")
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise c.fail("name", name, "a non-empty string of letters, digits, '-', '_', '.'")
    description = c.string("description", "") or ""
    seed = c.integer("seed", 0)
    strategy = c.choice("strategy", STRATEGIES, "default")
    c.finish()
    return name, description, seed, strategy


def check_data_tables(c: Checker) -> None:
    """``[data]`` holds the two tables ``[data.synthetic]`` and ``[data.observed]`` only."""
    for key in c.table:
        if key not in ("synthetic", "observed"):
            raise RecipeError(
                f"recipe {c.origin}: unknown table [data.{key}]; allowed: "
                "[data.synthetic], [data.observed]"
            )


def read_synthetic(c: Checker) -> SyntheticData:
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


def read_observed(c: Checker, synthetic: SyntheticData) -> ObservedData:
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
        if not is_numbers(rv, 3) or not rv[0] < rv[1] or rv[2] <= 0:
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


def read_preprocessing(c: Checker) -> Preprocessing:
    from mdwarf_zoo.spectra.preprocess import NORMALISATIONS, SCALINGS

    window = c.raw("window", [8800.0, 8835.0, 0.01])
    if not is_numbers(window, 3) or not 0 < window[0] < window[1] or window[2] <= 0:
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


def read_autoencoders(c: Checker) -> Autoencoders:
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


def _precision(c: Checker) -> str:
    from mdwarf_zoo.registry import PRECISIONS

    value = c.raw("precision", "float32")
    if value not in PRECISIONS:
        raise RecipeError(
            f"recipe {c.origin}: [autoencoders] precision = {value!r}: expected one of "
            f"{', '.join(repr(p) for p in PRECISIONS)}"
        )
    return value


def _freeze(c: Checker, value: Any) -> int | str | tuple[int | str, ...]:
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


def read_transfer(c: Checker, strategy: str) -> Transfer:
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
        raise c.fail(
            "anchor_weight",
            c.raw("anchor_weight"),
            'no anchor_weight: it is a setting of mode = "anchored"',
        )
    c.finish()
    if result.mode == "anchored" and strategy != "default":
        raise RecipeError(
            f'recipe {c.origin}: [transfer] mode = "anchored" trains with strategy = "default" '
            f'only (got strategy = {strategy!r}); use mode = "decoder_only" or strategy = '
            '"default"'
        )
    return result


_REGRESSOR_KEYS = (
    "architecture",
    "epochs",
    "learning_rate",
    "batch_size",
    "validation_split",
    "overrides",
)


def read_regressors(c: Checker, strategy: str) -> Regressors:
    parameters = c.raw("parameters", list(PARAMETERS))
    if not _is_parameter_list(parameters):
        raise c.fail(
            "parameters", parameters, f"a non-empty list of distinct names from {list(PARAMETERS)}"
        )
    seeds = c.integer("seeds", 5, minimum=1)
    standardize_latents = c.boolean("standardize_latents", False)
    # On by default where it can run (one process): the same weights as one by one to float32
    # rounding, never slower (benchmarks/RESULTS.md, "Fused regressors").
    fused = c.boolean("fused", strategy == "default")
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
        sub = Checker(f"{c.where}.{parameter}", table, c.origin, c.base, c.check_files)
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
    if fused and strategy != "default":
        raise RecipeError(
            f"recipe {c.origin}: [regressors] fused = true trains a member's regressors in one "
            f'process; it needs [recipe] strategy = "default", got {strategy!r} (set fused '
            "= false to train them one by one under the strategy)"
        )
    return Regressors(
        parameters=tuple(parameters),
        seeds=seeds,
        settings=settings,
        standardize_latents=standardize_latents,
        fused=fused,
    )


def read_ensemble(
    c: Checker, autoencoders: Autoencoders, regressors: Regressors, synthetic: SyntheticData
) -> Ensemble:
    from mdwarf_zoo.pipeline import ALIGNMENTS
    from mdwarf_zoo.pipeline.ensemble import ERROR_MODELS
    from mdwarf_zoo.pipeline.gap import DEFAULT_COVERAGE_BINS

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
    error_model = c.choice("error_model", ERROR_MODELS, "spread+validation+gap")
    gap = c.raw("gap")
    if gap is not None:
        if error_model != "spread+validation+gap":
            raise c.fail(
                "gap",
                gap,
                f'the key only with error_model = "spread+validation+gap", '
                f"got error_model = {error_model!r}",
            )
        if isinstance(gap, str):
            if gap not in ("prior", "simulator"):
                raise c.fail("gap", gap, '"prior", "simulator" or a table parameter -> scale')
            if gap == "simulator" and synthetic.source != "simulator":
                raise c.fail(
                    "gap",
                    gap,
                    '"prior" or a table: "simulator" measures the gap on simulated twins of '
                    'the synthetic set, which needs [data.synthetic] source = "simulator" '
                    f"(got {synthetic.source!r})",
                )
        else:
            gap = _gap_scales(c, gap)
    elif error_model == "spread+validation+gap":
        gap = "simulator" if synthetic.source == "simulator" else "prior"
    if c.has("error_scale_bins") and gap != "simulator":
        raise c.fail(
            "error_scale_bins",
            c.table["error_scale_bins"],
            'the key only with gap = "simulator" (the bins of the coverage factor measured on '
            f"the simulated twins); gap is {gap!r}",
        )
    result = Ensemble(
        best=c.integer("best", None, minimum=1),
        error_model=error_model,
        gap=gap,
        error_scale_bins=c.integer("error_scale_bins", DEFAULT_COVERAGE_BINS, minimum=1),
        latent_alignment=None if alignment == "none" else alignment,
        alignment_neighbours=c.integer("alignment_neighbours", 20, minimum=1),
        alignment_resamples=resamples,
    )
    c.finish()
    n_regressors = autoencoders.members * regressors.seeds
    if result.best is not None and result.best > n_regressors:
        raise c.fail(
            "best",
            result.best,
            f"at most {n_regressors} (members {autoencoders.members} x seeds "
            f"{regressors.seeds} regressors per parameter)",
        )
    return result


def read_calibration(c: Checker) -> CalibrationSettings:
    if not c.table:
        return CalibrationSettings()
    labels = c.path("labels", required=True)
    id_column = c.string("id_column", "id")
    if not id_column:
        raise c.fail("id_column", id_column, "the name of the column that names the stars")
    parameters = c.raw("parameters")
    if parameters is not None and not _is_parameter_list(parameters):
        raise c.fail("parameters", parameters, f"a list of distinct names from {list(PARAMETERS)}")
    c.finish()
    if c.check_files:
        _check_calibration_labels(c, labels, id_column, parameters)
    return CalibrationSettings(labels, id_column, None if parameters is None else tuple(parameters))


def read_outputs(c: Checker) -> Outputs:
    result = Outputs(
        table_format=c.choice("table_format", TABLE_FORMATS, "ecsv"),
        plots=c.boolean("plots", True),
    )
    c.finish()
    return result


def read_compare(c: Checker) -> Compare:
    baselines = c.raw("baselines", [])
    if not isinstance(baselines, list) or any(b not in BASELINES for b in baselines):
        raise c.fail("baselines", baselines, f"a list with items from {list(BASELINES)}")
    c.finish()
    return Compare(tuple(baselines))


def _is_parameter_list(value: Any) -> bool:
    """A non-empty list of distinct parameter names."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(p in PARAMETERS for p in value)
        and len(set(value)) == len(value)
    )


def _check_calibration_labels(
    c: Checker, path: Path, id_column: str, parameters: list[str] | None
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
        bad = [
            str(i) for i, v in zip(table[id_column], values, strict=True) if not math.isfinite(v)
        ]
        if bad:
            raise RecipeError(f"{where}: {name!r} is NaN or missing for star(s) {bad}")


def _check_overrides(c: Checker, key: str, overrides: Mapping[str, Any]) -> None:
    for name in ("latent_dim", "seed", "name", "learning_rate"):
        if name in overrides:
            hint = (
                "use the learning_rate key"
                if name == "learning_rate"
                else "it is set by the runner"
            )
            raise RecipeError(f"recipe {c.origin}: [{c.where}.{key}] {name}: {hint}")


def _label_ranges(
    checker: Checker, key: str, default: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    from mdwarf_zoo.spectra.simulate import LABEL_RANGES

    table = checker.sub(key)
    where = f"{checker.where}.{key}"
    ranges = dict(default)
    for name, value in table.items():
        if name not in PARAMETERS:
            raise unknown_key(checker.origin, where, name, PARAMETERS)
        lo_allowed, hi_allowed = LABEL_RANGES[_SIMULATOR_NAMES[name]]
        if not is_numbers(value, 2) or not lo_allowed <= value[0] <= value[1] <= hi_allowed:
            raise RecipeError(
                f"recipe {checker.origin}: [{where}] {name} = {show(value)}: expected [low, "
                f"high] with {lo_allowed:g} <= low <= high <= {hi_allowed:g} "
                f"({PARAMETER_UNITS[name]}; the simulator's range)"
            )
        ranges[name] = (float(value[0]), float(value[1]))
    return ranges


def _gap(checker: Checker) -> dict[str, float]:
    from mdwarf_zoo.spectra.simulate import GapConfig

    table = dict(checker.sub("gap"))
    knobs = [f.name for f in fields(GapConfig)]
    for name, value in table.items():
        if name not in knobs:
            raise unknown_key(checker.origin, f"{checker.where}.gap", name, knobs)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(
                f"recipe {checker.origin}: [{checker.where}.gap] {name} = "
                f"{show(value)}: expected a number"
            )
    try:
        GapConfig(**table)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"recipe {checker.origin}: [{checker.where}.gap]: {error}") from None
    return table


def _gap_scales(c: Checker, gap: object) -> dict[str, float]:
    """``[ensemble] gap`` given as a table: checked parameter -> scale."""
    from mdwarf_zoo.pipeline.gap import check_gap

    try:
        return check_gap(gap, "gap")
    except ValueError as error:
        raise c.fail(
            "gap",
            gap,
            "a table parameter -> finite scale >= 0 in physical units "
            f"(K, dex, dex, km/s), e.g. {{ teff = 60, mh = 0.2 }} ({error})",
        ) from None
