"""The data sets of a run folder: the synthetic training set and the observed set, simulated,
read from files, or built from observed spectrum files (``data/synthetic.h5``,
``data/observed.h5``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.gap import coverage_profile, measure_gap
from mdwarf_zoo.pipeline.pretrained import read_template, rest_frame
from mdwarf_zoo.recipes import (
    cluster,
)
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

if TYPE_CHECKING:
    from mdwarf_zoo.recipes.run import Run

logger = logging.getLogger(__name__)


# -- stage: sets ---------------------------------------------------------------------------
def build_sets(run: Run) -> None:
    """Write ``data/synthetic.h5`` and ``data/observed.h5`` unless they exist."""
    if not run.chief:
        # The other workers of a multi-worker job read the chief's files instead of building
        # the sets themselves: every worker must feed the data-parallel steps the very same
        # arrays, and a set built elsewhere (another CPU, numpy or BLAS build; PHOENIX files
        # or observed FITS files read through a per-node mount) may differ in its last bits,
        # or, for a PHOENIX build, would race the chief on data/phoenix_build.h5. Waiting
        # costs nothing: training cannot start before the sets exist anyway.
        cluster.wait_for(
            [run.synthetic_path, run.observed_path], "the chief worker to build the sets"
        )
        return
    (run.folder / "data").mkdir(exist_ok=True)
    # Member jobs started together wait for the one that builds the sets.
    with cluster.MemberLock(run.folder / "data" / ".lock", wait=True):
        if not run.synthetic_path.is_file():
            _write_set(run, run.synthetic_path, _synthetic_set(run))
        if not run.observed_path.is_file():
            _write_set(run, run.observed_path, _observed_set(run))


def _write_set(run: Run, path: Path, spectrum_set) -> None:
    partial = path.with_name(f".{path.name}.partial.h5")
    if partial.exists():
        partial.unlink()
    write_set(partial, spectrum_set)
    os.replace(partial, path)
    logger.info("wrote %s (%d spectra)", path, len(spectrum_set))


def _random_labels(self, n: int, ranges: dict[str, tuple[float, float]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(*ranges[name], n) for name in PARAMETERS])


def _simulation_grid(run: Run) -> WavelengthGrid:
    """The grid the simulator works on: the window, plus the margin the continuum fit needs."""
    prep = run.recipe.preprocessing
    preprocessor = prep.preprocessor()
    if prep.normalisation == "none":
        return preprocessor.grid
    low, high = preprocessor.span
    return WavelengthGrid(low, high, prep.window[2])


def _prepared(run: Run, grid: WavelengthGrid, flux: np.ndarray) -> np.ndarray:
    """Simulator flux on ``grid`` through the recipe's normalisation and scaling."""
    prep = run.recipe.preprocessing
    if prep.normalisation == "none":
        return scale(flux, prep.scaling).astype(np.float32)
    preprocessor = prep.preprocessor()
    return np.stack([preprocessor.finish(grid.wavelength, row)[0] for row in flux]).astype(
        np.float32
    )


def _synthetic_flux(
    run: Run, labels: np.ndarray, grid: WavelengthGrid, *, progress: bool
) -> np.ndarray:
    """The recipe's simulated synthetic spectra of ``labels`` on ``grid``, before preprocessing."""
    synthetic = run.recipe.synthetic
    return synthetic_spectra(
        labels,
        grid,
        seed=synthetic.line_list_seed,
        resolving_power=run.recipe.preprocessing.resolving_power,
        workers=synthetic.workers,
        progress=progress,
    )


def _simulated_flux(run: Run, labels: np.ndarray, *, observed: bool) -> np.ndarray:
    """Simulator flux on the window, through the recipe's normalisation and scaling."""
    prep = run.recipe.preprocessing
    grid = _simulation_grid(run)
    synthetic = run.recipe.synthetic
    flux = _synthetic_flux(run, labels, grid, progress=run.progress)
    if observed:
        source = run.recipe.observed
        flux = observe(
            flux,
            labels,
            snr=source.snr,
            seed=source.seed,
            grid=grid,
            resolving_power=prep.resolving_power,
            synthetic_seed=synthetic.line_list_seed,
            workers=synthetic.workers,
            progress=run.progress,
            **source.gap,
        )
    return _prepared(run, grid, flux)


#: Held-out simulated stars whose observed twins measure ``[ensemble] gap = "simulator"`` and
#: the coverage factor of the errors (:func:`measure_simulated_errors`).
GAP_TWINS = 300


def twin_labels(run: Run, synthetic_labels: np.ndarray) -> np.ndarray:
    """The labels of :func:`measure_simulated_errors`'s held-out stars (see there)."""
    synthetic = run.recipe.synthetic
    ranges = synthetic.label_ranges
    if synthetic.labels is not None:
        ranges = {
            name: (float(np.min(column)), float(np.max(column)))
            for name, column in zip(PARAMETERS, np.asarray(synthetic_labels).T, strict=True)
        }
    return _random_labels(run, GAP_TWINS, ranges, run.recipe.seed + 7919)


def measure_simulated_errors(
    run: Run, pipeline, synthetic_labels: np.ndarray
) -> tuple[dict[str, float], dict[str, float | dict[str, list[float]]]]:
    """The gap scale of ``[ensemble] gap = "simulator"`` and the coverage factor of the errors
    that use it, both measured on the same stars: ``GAP_TWINS`` new simulated stars (uniform
    over the recipe's label ranges, or, for a synthetic set simulated from a labels table, over
    the ranges of ``synthetic_labels``; a seed of their own) and their observed twins
    (``observe`` with the calibrated ``GapConfig`` defaults, not the recipe's own observed
    knobs, at the observed set's S/N) through ``pipeline``'s own estimate.

    The gap is :func:`mdwarf_zoo.pipeline.gap.measure_gap` (``kind="excess"``). The factor
    ``c`` of each parameter is :func:`mdwarf_zoo.pipeline.gap.coverage_profile` of the twins'
    estimates and residuals against their errors under ``"spread+validation+gap"`` with that
    gap, each star's error on the side of its truth, in ``[ensemble] error_scale_bins`` bins
    of the estimate: with ``c`` applied, +-1 sigma covers 68.27 % of the twins of each bin.

    Returns:
        ``(gap, error_scale)``: parameter -> gap scale (physical units), parameter -> profile
        ``{"edges": [...], "factors": [...]}`` (a factor when one bin).
    """
    synthetic = run.recipe.synthetic
    labels = twin_labels(run, synthetic_labels)
    grid = _simulation_grid(run)
    flux = _synthetic_flux(run, labels, grid, progress=False)
    snr = run.recipe.observed.snr if run.recipe.observed.source == "simulator" else 150
    tables = []

    def estimate(spectra: np.ndarray) -> dict[str, np.ndarray]:
        # The values do not depend on the error model; the errors without the gap are kept
        # to add the measured gap to them afterwards (terms add in quadrature, in any order).
        table = pipeline.predict(
            _prepared(run, grid, spectra), error_model="spread+validation", progress=False
        )
        tables.append(table)
        return {name: np.asarray(table[name], dtype=np.float64) for name in pipeline.parameters}

    gap = measure_gap(
        estimate,
        flux,
        labels,
        snr=snr,
        seed=run.recipe.seed + 7920,
        grid=grid,
        resolving_power=run.recipe.preprocessing.resolving_power,
        synthetic_seed=synthetic.line_list_seed,
    )
    twins = tables[-1]  # measure_gap predicts the synthetic spectra first, then their twins
    scale = {}
    for name in pipeline.parameters:
        errors = [np.asarray(twins[f"{name}_err_{side}"]) for side in ("lower", "upper")]
        residuals = np.asarray(twins[name]) - labels[:, PARAMETERS.index(name)]
        profile = coverage_profile(
            np.asarray(twins[name]), residuals, np.hypot(errors, gap[name]),
            bins=run.recipe.ensemble.error_scale_bins,
        )
        scale[name] = profile if profile["edges"] else profile["factors"][0]
    return gap, scale


def _synthetic_set(run: Run) -> SpectrumSet:
    """The recipe's ``[data.synthetic]``: a set file, PHOENIX spectra, or simulated ones."""
    source = run.recipe.synthetic
    if source.source == "set":
        return _given_set(run, source.path, "[data.synthetic] path", labelled=True)
    if source.labels is not None:
        labels = load_labels(source.labels)
        if source.limit is not None:
            labels = labels[: source.limit]
    else:
        labels = _random_labels(run, source.n, source.label_ranges, run.recipe.seed)
    if source.source == "phoenix":
        # build_training_set resumes an interrupted build of the same file.
        partial = run.folder / "data" / "phoenix_build.h5"
        build_training_set(
            source.grid,
            labels,
            partial,
            preprocessor=run.recipe.preprocessing.preprocessor(),
            workers=source.workers,
            progress=run.progress,
        )
        return read_set(partial)
    return _simulated_set(
        run,
        labels,
        observed=False,
        provenance={
            "source": "mdwarf_zoo.spectra.simulate (toy simulator; not PHOENIX)",
            "recipe": run.recipe.name,
            "line_list_seed": source.line_list_seed,
            "labels": str(source.labels) if source.labels else "uniform random",
            "seed": run.recipe.seed,
        },
    )


def _observed_set(run: Run) -> SpectrumSet:
    """The recipe's ``[data.observed]``: a set file, spectrum files, or simulated spectra."""
    source = run.recipe.observed
    if source.source == "set":
        spectrum_set = _given_set(run, source.path, "[data.observed] path", labelled=False)
        if source.labels is not None:
            spectrum_set.labels = load_labels(source.labels)
        return spectrum_set
    if source.source == "files":
        return _observed_files(run, run.recipe.preprocessing.preprocessor())
    # Its own stream, so the observed labels never repeat the synthetic ones.
    labels = _random_labels(run, source.n, source.label_ranges, source.seed + 7919)
    return _simulated_set(
        run,
        labels,
        observed=True,
        provenance={
            "source": "mdwarf_zoo.spectra.simulate observe() (toy simulator)",
            "recipe": run.recipe.name,
            "snr": source.snr,
            "seed": source.seed,
            "gap": dict(source.gap),
            "labels": "true labels of the simulation",
        },
    )


def _observed_files(run: Run, preprocessor):
    source = run.recipe.observed
    low, high = preprocessor.span
    template = None
    if not source.no_rv:
        template = read_template(source.template, (low, high), max(map(abs, source.rv_range[:2])))
    fluxes, names, velocities = [], [], []
    for path in tqdm(source.files, desc="observed files", disable=not run.progress):
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


def _check_set(run: Run, spectrum_set, path: Path, key: str, *, labelled: bool) -> None:
    pixels = run.recipe.preprocessing.pixels
    if spectrum_set.flux.shape[1] != pixels:
        raise ValueError(
            f"{key} = {str(path)!r} has {spectrum_set.flux.shape[1]} pixels but "
            f"[preprocessing] window gives {pixels}"
        )
    if labelled and spectrum_set.labels is None:
        raise ValueError(f"{key} = {str(path)!r} has no labels; a training set needs them")


def _simulated_set(
    run: Run, labels: np.ndarray, *, observed: bool, provenance: dict[str, object]
) -> SpectrumSet:
    """Simulated spectra of ``labels`` as the run's synthetic (training) or observed set."""
    preprocessor = run.recipe.preprocessing.preprocessor()
    name = "observed_{:05d}" if observed else "synthetic_{:06d}"
    return SpectrumSet(
        flux=_simulated_flux(run, labels, observed=observed),
        wavelength=preprocessor.grid.wavelength,
        labels=labels,
        identifiers=[name.format(i) for i in range(len(labels))],
        preprocessing=preprocessor,
        provenance=provenance,
        kind="observed" if observed else "training",
    )


def _given_set(run: Run, path: Path, what: str, *, labelled: bool) -> SpectrumSet:
    """A set file named by the recipe, checked against the recipe's preprocessing."""
    spectrum_set = read_set(path)
    _check_set(run, spectrum_set, path, what, labelled=labelled)
    return spectrum_set
