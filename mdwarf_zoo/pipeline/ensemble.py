"""Ensemble estimates with asymmetric errors (stage 4 of Mas-Buitrago et al. 2024, MB24).

For each parameter many latent regressors are trained (MB24: 5 seeds x 26 autoencoders = 130);
the best K by validation MSE are kept (MB24: 80), and for each star the K predictions become one
value with lower/upper errors:

* **value** = the mode of a Gaussian kernel density estimate of the K predictions
  (``scipy.stats.gaussian_kde``, Scott's bandwidth), located on a grid of 2048 points spanning
  the predictions +- 3 bandwidths and refined by a parabola through the highest grid point and
  its neighbours;
* **lower error** = ``max(mode - P16, 0)`` and **upper error** = ``max(P84 - mode, 0)``, where
  P16 and P84 are the 16th and 84th percentiles of the K predictions themselves
  (``numpy.percentile``, linear interpolation). For a Gaussian spread they are the usual
  1-sigma errors; for a skewed spread they differ, and the error on the side of the long tail is
  larger. The density is used for the mode only, so the errors are not inflated by the kernel
  width;
* **degenerate case**: when all K predictions are equal (a spread of at most 1e-12 of their
  magnitude) the density is undefined: the value is that prediction and both errors are 0.

The spread of K regressors measures how much they disagree, not how wrong they all are: on the
simulator (``benchmarks/RESULTS.md``) the P16/P84 errors of a few regressors covered the truth
for only 10-21 % of the stars. Three ``error_model`` choices:

* ``"spread"``: MB24's rule above, nothing added;
* ``"spread+validation"``: the regressors' own validation scatter added in quadrature::

      s     = sqrt(mean over the K kept regressors of validation_rms**2)   (physical units)
      lower = sqrt((mode - P16)**2 + s**2),  upper = sqrt((P84 - mode)**2 + s**2)

  ``validation_rms`` is each regressor's root mean square error on its held-out synthetic
  validation split (:attr:`mdwarf_zoo.pipeline.LatentRegressor.validation_rms`). It leaves out
  the domain gap (synthetic vs observed), so it is a lower bound on the observed error: +-1
  sigma covered the truth for 41-66 % of the simulator's stars;
* ``"spread+validation+gap"`` (the default of ``PretrainedPipeline.predict`` and of new
  recipes): a domain-gap scale ``g`` per parameter (physical units) added as well::

      lower = sqrt((mode - P16)**2 + s**2 + g**2),  upper = sqrt((P84 - mode)**2 + s**2 + g**2)

  ``g`` is, in this order: the ``gap=`` given (a dict parameter -> scale, e.g. the
  ``ensemble.gap`` of a ``pipeline.json`` or the recipe key ``[ensemble] gap``, or measured on
  the simulator with :func:`mdwarf_zoo.pipeline.gap.measure_gap`); otherwise the prior
  :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR`, measured on real stars: the rms over MB24's 286
  CARMENES stars of (the PHOENIX-trained CNN of Passegger et al. 2020, no transfer) - (MB24's
  estimates): 50.6 K in Teff (mean -34.5 K), 0.060 dex in log g (mean -0.039), 0.248 dex in
  [M/H] (mean +0.233) and 1.60 km/s in v sin i (mean +0.10; only the 39 stars with a measured
  v sin i, the others are upper limits). ``table.meta["gap"]`` and ``["gap_source"]`` and the
  error columns' descriptions say which. Its limits: it is a population-level scale, the same
  for every star, not a per-star error; and the prior assumes the user's gap is like
  CARMENES-vs-PHOENIX (another instrument, another synthetic grid or a simulator gap may be
  larger or smaller: measure it).

  Under this model both errors are then multiplied by a coverage factor ``c`` per parameter
  (``error_scale=``; ``PretrainedPipeline.predict`` takes the manifest's ``ensemble.error_scale``
  with its gap; ``c = 1`` when none is given, as ``table.meta["error_scale_source"]`` says)::

      lower = c * sqrt((mode - P16)**2 + s**2 + g**2),  upper = c * sqrt(... + g**2)

  ``c`` (:func:`mdwarf_zoo.pipeline.gap.coverage_scale`) is the 68.27 % quantile, over stars
  with known labels, of ``|estimate - true| / error`` (each star's error on the side of its
  truth), so that +-1 sigma covers 68.27 % of them. Why it is needed: ``s`` is each member's
  rms and ``g`` an rms too, while the ensemble's residuals are heavy-tailed (on the simulator,
  Teff rms 170 K, yet +-160 K covered 91 % of the stars), so the unscaled errors over-cover
  (``c < 1``); where they under-cover, ``c > 1``. A recipe with ``[ensemble] gap =
  "simulator"`` measures ``c`` on the simulated observed twins it measures the gap on. One
  ``c`` per parameter fixes the fraction covered over a population like the twins, not each
  kind of star: ``s`` and ``g`` barely change from star to star while the residuals do (v sin
  i on the simulator: +-0.44 km/s for every star covered 95 % of the stars at 8 km/s and 9 %
  at 30 km/s). So ``c`` may be a profile in bins of the estimate
  (:func:`mdwarf_zoo.pipeline.gap.coverage_profile`; the recipe measures one, ``[ensemble]
  error_scale_bins``): each star takes the ``c`` of the bin its estimate falls in, and each
  range of estimates is covered 68 % of the time. A gap unlike the simulator's calls for a
  ``c`` measured on stars like it.

``mode - P16`` and ``P84 - mode`` are floored at 0 as above.

When the observed latents were aligned onto the synthetic ones (``latent_alignment`` of
:func:`mdwarf_zoo.pipeline.run_pipeline`), the alignment itself was estimated from the observed
sample; ``alignment_error`` (each star's standard deviation over bootstrap resamples of the
stars that define the alignment, :func:`mdwarf_zoo.pipeline.alignment_uncertainty`) is then
added in quadrature to both errors, before the factor ``c``.

The output is an ``astropy.table.Table`` with one row per star.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table
from scipy.stats import gaussian_kde

from mdwarf_zoo import labels
from mdwarf_zoo.labels import DESCRIPTIONS as _DESCRIPTIONS
from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.gap import (
    GAP_PRIOR,
    GAP_PRIOR_SOURCE,
    check_error_scale,
    check_gap,
    scale_factors,
)

__all__ = [
    "ERROR_MODELS",
    "NO_ERROR_SCALE",
    "PARAMETERS",
    "PARAMETER_UNITS",
    "describe_errors",
    "ensemble_table",
    "kde_estimate",
    "kde_estimates",
    "select_best",
    "write_table",
]

logger = logging.getLogger(__name__)

#: The units of the output table's parameters, as astropy units.
PARAMETER_UNITS = {name: u.Unit(unit) for name, unit in labels.PARAMETER_UNITS.items()}
_GRID_POINTS = 2048
LOWER_PERCENTILE = 16.0
UPPER_PERCENTILE = 84.0
#: The ``error_model`` choices of :func:`ensemble_table` (see the module docstring).
ERROR_MODELS = ("spread", "spread+validation", "spread+validation+gap")
#: The error models that add the kept regressors' validation rms.
_WITH_VALIDATION = ("spread+validation", "spread+validation+gap")


def select_best(validation_mse: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Indices of the K regressors with the lowest validation MSE (MB24: best 80 of 130).

    Args:
        validation_mse: one validation MSE per regressor (finite).
        k: how many to keep; ``k`` larger than the number of regressors keeps them all
            (with a warning).

    Returns:
        The indices, best first; ties keep the original order (stable sort).

    Raises:
        ValueError: for an empty or non-finite ``validation_mse`` or ``k`` < 1.

    Examples:
        >>> from mdwarf_zoo.pipeline.ensemble import select_best
        >>> select_best([0.3, 0.1, 0.2, 0.1], 2).tolist()
        [1, 3]
    """
    mse = np.asarray(validation_mse, dtype=np.float64)
    if mse.ndim != 1 or mse.size == 0:
        raise ValueError(
            f"select_best: validation_mse must be a non-empty 1-D sequence, got shape {mse.shape}"
        )
    if not np.all(np.isfinite(mse)):
        bad = int(np.flatnonzero(~np.isfinite(mse))[0])
        raise ValueError(f"select_best: validation_mse[{bad}] = {mse[bad]!r} is not finite")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"select_best: k must be an integer >= 1, got {k!r}")
    if k > mse.size:
        logger.warning(
            "select_best: asked for the best %d of only %d regressors; keeping all", k, mse.size
        )
    return np.argsort(mse, kind="stable")[: int(k)]


def kde_estimate(samples: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """The KDE mode of one star's ensemble predictions and its asymmetric errors.

    See the module docstring for the exact rule: value = mode of a Gaussian KDE (Scott's
    bandwidth), lower error = ``max(mode - P16, 0)``, upper error = ``max(P84 - mode, 0)`` with
    the percentiles of the predictions; identical predictions give that value and 0, 0.

    Args:
        samples: the K predictions of one parameter for one star (physical units).

    Returns:
        ``(value, lower_error, upper_error)``.

    Raises:
        ValueError: for an empty sample or a non-finite prediction.

    Examples:
        >>> from mdwarf_zoo.pipeline.ensemble import kde_estimate
        >>> value, lower, upper = kde_estimate([3280, 3295, 3300, 3300, 3305, 3340])
        >>> [round(v, 1) for v in (value, lower, upper)]  # the tail toward 3340 K: upper > lower
        [3297.9, 5.9, 14.1]
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("kde_estimate: no predictions")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"kde_estimate: prediction {bad} is {values[bad]!r}, not finite")
    spread = float(np.ptp(values))
    if spread <= 1e-12 * max(1.0, float(np.max(np.abs(values)))):
        return float(values[0]), 0.0, 0.0
    kde = gaussian_kde(values)
    bandwidth = float(np.sqrt(kde.covariance[0, 0]))
    grid = np.linspace(values.min() - 3 * bandwidth, values.max() + 3 * bandwidth, _GRID_POINTS)
    density = kde(grid)
    peak = int(np.argmax(density))
    mode = float(grid[peak])
    if 0 < peak < grid.size - 1:
        left, centre, right = density[peak - 1 : peak + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            step = grid[1] - grid[0]
            mode += float(0.5 * (left - right) / curvature * step)
    low, high = np.percentile(values, [LOWER_PERCENTILE, UPPER_PERCENTILE])
    return mode, max(mode - float(low), 0.0), max(float(high) - mode, 0.0)


def kde_estimates(predictions: np.ndarray) -> np.ndarray:
    """:func:`kde_estimate` for every star.

    Args:
        predictions: (K, n_stars) predictions of one parameter (one row per regressor).

    Returns:
        (n_stars, 3): value, lower error, upper error.

    Raises:
        ValueError: for a wrong shape or a non-finite prediction (naming the star).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2 or 0 in predictions.shape:
        raise ValueError(
            f"kde_estimates: predictions must be (K regressors, n stars), got {predictions.shape}"
        )
    out = np.empty((predictions.shape[1], 3))
    for star in range(predictions.shape[1]):
        try:
            out[star] = kde_estimate(predictions[:, star])
        except ValueError as error:
            raise ValueError(f"star {star}: {error}") from None
    return out


def ensemble_table(
    predictions: Mapping[str, np.ndarray],
    identifiers: Sequence[str] | None = None,
    *,
    validation_mse: Mapping[str, Sequence[float]] | None = None,
    keep: int | None = 80,
    identifier_column: str = "id",
    error_model: str = "spread",
    validation_rms: Mapping[str, Sequence[float]] | None = None,
    alignment_error: Mapping[str, Sequence[float]] | None = None,
    gap: Mapping[str, float] | None = None,
    gap_source: str = "given",
    error_scale: Mapping[str, float | Mapping[str, list[float]]] | None = None,
    error_scale_source: str = "given",
) -> Table:
    """One row per star: KDE-mode value and lower/upper errors of every parameter, with units.

    Args:
        predictions: per parameter (``"teff"`` K, ``"logg"`` dex, ``"mh"`` dex, ``"vsini"``
            km/s; any subset, in physical units) a (n_regressors, n_stars) array.
        identifiers: one name per star; default ``star_0``, ``star_1`` ...
        validation_mse: per parameter one validation MSE per regressor, for the best-``keep``
            selection (MB24: 80 of 130); ``keep=None`` keeps all.
        keep: K for the best-K selection.
        identifier_column: name of the identifier column.
        error_model: ``"spread"`` (MB24), ``"spread+validation"`` or
            ``"spread+validation+gap"``; see the module docstring.
        validation_rms: per parameter one validation rms per regressor, physical units (same
            order as ``predictions``); needed by both ``"spread+validation"`` models.
        alignment_error: per parameter one standard deviation per star, physical units (the
            latent alignment's bootstrap spread, :func:`mdwarf_zoo.pipeline.alignment_uncertainty`),
            added in quadrature to both errors whatever the ``error_model``.
        gap: with ``"spread+validation+gap"``, parameter -> gap scale in physical units
            (finite, >= 0); the others take :data:`mdwarf_zoo.pipeline.gap.GAP_PRIOR`.
        gap_source: where ``gap`` comes from, recorded in ``table.meta["gap_source"]``.
        error_scale, error_scale_source: with ``"spread+validation+gap"``, parameter -> factor
            ``c`` (finite, > 0) multiplying both final errors, or a profile of factors in
            bins of the estimate (each star takes its bin's; ``{"edges": [...], "factors":
            [...]}``, :func:`mdwarf_zoo.pipeline.gap.coverage_profile`), and where it comes
            from (:func:`mdwarf_zoo.pipeline.gap.coverage_scale`); the others take ``c = 1``.

    Returns:
        An ``astropy.table.Table`` with columns ``id``, then for each parameter ``<p>``,
        ``<p>_err_lower``, ``<p>_err_upper`` (units K, dex, dex, km/s); ``table.meta`` records
        the rule, the regressors used per parameter, the ``error_model`` and, with the gap,
        ``gap``, ``gap_source``, ``error_scale`` (per parameter) and ``error_scale_source``.

    Raises:
        ValueError: for an unknown parameter or ``error_model``, inconsistent shapes or
            lengths, a validation model without ``validation_rms``, an ``alignment_error``
            that is not one finite value >= 0 per star, or a bad ``gap`` or ``error_scale``
            (or one without the gap model).

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline.ensemble import ensemble_table
        >>> rng = np.random.default_rng(0)
        >>> table = ensemble_table({"teff": rng.normal(3300, 30, (80, 2))}, ["A", "B"])
        >>> table.colnames
        ['id', 'teff', 'teff_err_lower', 'teff_err_upper']
        >>> str(table["teff"].unit)
        'K'
    """
    names = _parameter_names(predictions, error_model)
    gaps = _gap_scales(error_model, gap, gap_source, names)
    scales = _error_scales(error_model, error_scale, error_scale_source, names)
    n_stars = None
    columns: dict[str, np.ndarray] = {}
    used, scatters = {}, {}
    for name in names:
        array = _predictions_array(name, predictions[name], n_stars)
        n_stars = array.shape[1]
        mse = None if validation_mse is None or keep is None else validation_mse.get(name)
        rms = None if validation_rms is None else validation_rms.get(name)
        extra = None if alignment_error is None else alignment_error.get(name)
        estimates, used[name], scatter = _parameter_estimates(
            name, array, mse, keep, error_model, rms, extra, gaps[0].get(name)
        )
        estimates[:, 1:] *= scale_factors(scales[0].get(name, 1.0), estimates[:, 0])[:, None]
        if scatter is not None:
            scatters[name] = scatter
        for i, suffix in enumerate(("", "_err_lower", "_err_upper")):
            columns[f"{name}{suffix}"] = estimates[:, i]
    if identifiers is None:
        identifiers = [f"star_{i}" for i in range(n_stars)]
    identifiers = [str(value).strip() for value in identifiers]
    if len(identifiers) != n_stars:
        raise ValueError(f"ensemble_table: {len(identifiers)} identifiers for {n_stars} stars")
    errors = (error_model, alignment_error, scatters, gaps, scales)
    table = _as_table(columns, identifiers, identifier_column, *errors)
    table.meta["n_regressors"] = used
    return table


def _parameter_names(predictions: Mapping[str, np.ndarray], error_model: str) -> list[str]:
    """The parameters of ``predictions`` in the usual order, once the request is checked."""
    if not predictions:
        raise ValueError("ensemble_table: predictions is empty")
    if error_model not in ERROR_MODELS:
        raise ValueError(
            f"ensemble_table: error_model must be one of {ERROR_MODELS}, got {error_model!r}"
        )
    unknown = [name for name in predictions if name not in PARAMETERS]
    if unknown:
        raise ValueError(
            f"ensemble_table: unknown parameter(s) {unknown}; expected names from {PARAMETERS}"
        )
    return [p for p in PARAMETERS if p in predictions]


def _check_gap_model_argument(name: str, value: object, error_model: str, source: object) -> None:
    """``gap`` and ``error_scale`` are arguments of the gap model only, and each comes with a
    non-empty ``<name>_source``."""
    if error_model != "spread+validation+gap":
        raise ValueError(
            f"ensemble_table: {name}={value!r} is only used by error_model="
            f"'spread+validation+gap', got error_model={error_model!r}"
        )
    if not isinstance(source, str) or not source.strip():
        raise ValueError(
            f"ensemble_table: {name}_source must be a non-empty string, got {source!r}"
        )


def _gap_scales(
    error_model: str, gap: Mapping[str, float] | None, source: str, names: Sequence[str]
) -> tuple[dict[str, float], dict[str, str]]:
    """The gap scale and its source for each parameter (empty without the gap model)."""
    if gap is not None:
        gap = check_gap(gap, "ensemble_table")
        _check_gap_model_argument("gap", gap, error_model, source)
    if error_model != "spread+validation+gap":
        return {}, {}
    gap = gap or {}
    scales = {name: gap.get(name, GAP_PRIOR[name]) for name in names}
    sources = {name: source if name in gap else GAP_PRIOR_SOURCE for name in names}
    return scales, sources


#: ``table.meta["error_scale_source"]`` under the gap model when no scale was given.
NO_ERROR_SCALE = "none: the errors are not rescaled (c = 1)"


def _error_scales(
    error_model: str, scale: Mapping[str, float] | None, source: str, names: Sequence[str]
) -> tuple[dict[str, float], str]:
    """The coverage factor ``c`` of each parameter and its source, under the gap model (``c``
    = 1 where none is given); empty under the other models."""
    if scale is not None:
        scale = check_error_scale(scale, "ensemble_table")
        _check_gap_model_argument("error_scale", scale, error_model, source)
    if error_model != "spread+validation+gap":
        return {}, ""
    if not scale:
        return dict.fromkeys(names, 1.0), NO_ERROR_SCALE
    missing = [name for name in names if name not in scale]
    if missing:
        source += f" (c = 1 for {', '.join(missing)}: none given)"
    return {name: scale.get(name, 1.0) for name in names}, source


def _predictions_array(name: str, values: np.ndarray, n_stars: int | None) -> np.ndarray:
    """One parameter's predictions as (n_regressors, n_stars) float64, checked against the
    number of stars of the parameters before it."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(
            f"ensemble_table: predictions[{name!r}] must be (n_regressors, n_stars), got "
            f"{array.shape}"
        )
    if n_stars is not None and array.shape[1] != n_stars:
        raise ValueError(
            f"ensemble_table: predictions[{name!r}] has {array.shape[1]} stars, the other "
            f"parameters {n_stars}"
        )
    return array


def _parameter_estimates(
    name: str,
    array: np.ndarray,
    mse: Sequence[float] | None,
    keep: int | None,
    error_model: str,
    validation_rms: Sequence[float] | None,
    alignment_error: Sequence[float] | None,
    gap: float | None,
) -> tuple[np.ndarray, int, float | None]:
    """One parameter of :func:`ensemble_table`: (n_stars, 3) mode and errors, the number of
    regressors used, and the validation scatter added (``None`` under ``"spread"``); ``gap``
    (``None``: none) is added in quadrature too."""
    n_regressors, n_stars = array.shape
    rows = np.arange(n_regressors)
    if mse is not None:
        mse = np.asarray(mse, dtype=np.float64)
        if mse.shape != (n_regressors,):
            raise ValueError(
                f"ensemble_table: validation_mse[{name!r}] has {mse.size} values for "
                f"{n_regressors} regressors"
            )
        rows = select_best(mse, keep)
        array = array[rows]
    estimates = kde_estimates(array)
    scatter = None
    if error_model in _WITH_VALIDATION:
        if validation_rms is None:
            raise ValueError(
                f"ensemble_table: error_model={error_model!r} needs validation_rms"
                f"[{name!r}] (one validation rms per regressor, physical units)"
            )
        rms = np.asarray(validation_rms, dtype=np.float64)
        if rms.shape != (n_regressors,) or not np.all(np.isfinite(rms)):
            raise ValueError(
                f"ensemble_table: validation_rms[{name!r}] must hold {n_regressors} finite "
                f"values (one per regressor), got shape {rms.shape}"
            )
        scatter = float(np.sqrt(np.mean(rms[rows] ** 2)))
        estimates[:, 1:] = np.hypot(estimates[:, 1:], scatter)
    if gap is not None:
        estimates[:, 1:] = np.hypot(estimates[:, 1:], gap)
    if alignment_error is not None:
        extra = np.asarray(alignment_error, dtype=np.float64)
        if extra.shape != (n_stars,) or not np.all(np.isfinite(extra) & (extra >= 0)):
            raise ValueError(
                f"ensemble_table: alignment_error[{name!r}] must hold {n_stars} finite, "
                f"non-negative values (one per star), got shape {extra.shape}"
            )
        estimates[:, 1:] = np.hypot(estimates[:, 1:], extra[:, None])
    return estimates, int(array.shape[0]), scatter


def _as_table(
    columns: Mapping[str, np.ndarray],
    identifiers: list[str],
    identifier_column: str,
    error_model: str,
    alignment_error: Mapping[str, Sequence[float]] | None,
    scatters: Mapping[str, float],
    gap_scales: tuple[Mapping[str, float], Mapping[str, str]],
    error_scales: tuple[Mapping[str, float], str],
) -> Table:
    """The estimate columns as an astropy table with units, descriptions and the rule;
    ``gap_scales`` holds the gap scale and its source per parameter (empty: no gap),
    ``error_scales`` the coverage factor per parameter and its source (empty: none)."""
    gaps, gap_sources = gap_scales
    factors, factor_source = error_scales
    table = Table()
    table[identifier_column] = identifiers
    for name, values in columns.items():
        parameter = name.split("_err_")[0]
        column = values * PARAMETER_UNITS[parameter]
        table[name] = column
        what = _DESCRIPTIONS[parameter]
        if name.endswith("_err_lower"):
            table[name].description = f"lower error of the {what} (mode - P16)"
        elif name.endswith("_err_upper"):
            table[name].description = f"upper error of the {what} (P84 - mode)"
        else:
            table[name].description = f"{what}: mode of the KDE of the ensemble predictions"
        if "_err_" in name and error_model in _WITH_VALIDATION:
            table[name].description += " (+) validation rms, in quadrature"
        if "_err_" in name and parameter in gaps:
            table[name].description += (
                f" (+) domain-gap scale {gaps[parameter]:g} {PARAMETER_UNITS[parameter]} "
                f"({gap_sources[parameter]}), in quadrature"
            )
        if "_err_" in name and alignment_error is not None and parameter in alignment_error:
            table[name].description += " (+) alignment bootstrap spread, in quadrature"
        if "_err_" in name and parameter in factors:
            table[name].description += f"; all x error scale {_factor_text(factors[parameter])}"
    table.meta["estimate"] = "mode of a Gaussian KDE (scipy gaussian_kde, Scott bandwidth)"
    table.meta["errors"] = (
        f"lower = max(mode - P{LOWER_PERCENTILE:g}, 0), upper = max(P{UPPER_PERCENTILE:g} - "
        "mode, 0), percentiles of the ensemble predictions"
    )
    if error_model in _WITH_VALIDATION:
        table.meta["errors"] += (
            "; each added in quadrature to sqrt(mean(validation_rms**2)) of the kept regressors"
        )
        table.meta["validation_scatter"] = dict(scatters)
    if gaps:
        table.meta["errors"] += "; and to the parameter's domain-gap scale (meta gap)"
        table.meta["gap"] = dict(gaps)
        table.meta["gap_source"] = dict(gap_sources)
    if alignment_error is not None:
        table.meta["errors"] += (
            "; each added in quadrature to the star's latent-alignment bootstrap standard deviation"
        )
        table.meta["alignment_error"] = "bootstrap standard deviation, added in quadrature"
    if factors:
        table.meta["errors"] += (
            "; then multiplied by the parameter's error scale c (meta; a profile gives each "
            "star the c of the bin of its estimate)"
        )
        table.meta["error_scale"] = dict(factors)
        table.meta["error_scale_source"] = factor_source
    table.meta["error_model"] = error_model
    return table


def describe_errors(table: Table) -> str:
    """The error model of a table of :func:`ensemble_table` in one line, with its gap scales
    and their sources, e.g. ``"spread+validation+gap (gap teff 50.6 K, ...; prior: ...)"``,
    and its error scales when they were given (``", errors x teff 0.81, ... (source)"``)."""
    text = str(table.meta.get("error_model", "unknown"))
    gaps = table.meta.get("gap")
    if gaps:
        # In the parameters' order: a table read back from ECSV has its meta keys sorted.
        names = [name for name in PARAMETERS if name in gaps]
        scales = ", ".join(f"{name} {gaps[name]:g} {PARAMETER_UNITS[name]}" for name in names)
        sources = table.meta.get("gap_source") or {}
        origins = "; ".join(dict.fromkeys(str(sources.get(name)) for name in names))
        text += f" (gap {scales}; {origins})"
    factors = table.meta.get("error_scale")
    if factors and table.meta.get("error_scale_source") != NO_ERROR_SCALE:
        names = [name for name in PARAMETERS if name in factors]
        scales = ", ".join(f"{name} {_factor_text(factors[name])}" for name in names)
        text += f", errors x {scales} ({table.meta.get('error_scale_source')})"
    return text


def _factor_text(factor: float | Mapping[str, list[float]]) -> str:
    """An error scale in words: ``"0.81"``, or ``"0.13-1.19 in 5 bins of the estimate"``."""
    if not isinstance(factor, Mapping):
        return f"{factor:.3g}"
    factors = factor["factors"]
    if len(factors) == 1:
        return f"{factors[0]:.3g}"
    return f"{min(factors):.3g}-{max(factors):.3g} in {len(factors)} bins of the estimate"


_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".csv": "ascii.csv"}


def write_table(
    table: Table, path: str | os.PathLike, *, format: str | None = None, overwrite: bool = False
) -> Path:
    """Write a results table as ECSV, FITS or CSV (chosen from the suffix unless ``format``).

    ECSV and FITS keep the units and the metadata; CSV keeps the values only.

    Args:
        table: e.g. from :func:`ensemble_table`.
        path: output file (``.ecsv``, ``.fits``/``.fit`` or ``.csv``).
        format: ``"ecsv"``, ``"fits"`` or ``"csv"`` to override the suffix.
        overwrite: replace an existing file (refused by default).

    Returns:
        The path written.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is false.
        ValueError: for an unknown format or suffix.

    Examples:
        >>> from mdwarf_zoo.pipeline.ensemble import write_table
        >>> write_table(table, "estimates.ecsv")  # doctest: +SKIP
    """
    path = Path(path)
    if format is None:
        suffix = path.suffix.lower()
        if suffix not in _FORMATS:
            raise ValueError(
                f"write_table: cannot tell the format of {str(path)!r} from its suffix "
                f"{suffix!r}; use .ecsv, .fits or .csv, or pass format="
            )
        astropy_format = _FORMATS[suffix]
    else:
        key = "." + str(format).lower().lstrip(".")
        if key not in _FORMATS:
            raise ValueError(f"write_table: format must be 'ecsv', 'fits' or 'csv', got {format!r}")
        astropy_format = _FORMATS[key]
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"write_table: {path} exists; refusing to overwrite it (pass overwrite=True or "
            "choose another path)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.copy()
    if astropy_format == "fits":
        # FITS headers take short scalar keywords only; keep the rule as comments.
        meta = dict(out.meta)
        out.meta.clear()
        out.meta["comments"] = [f"{key}: {value}" for key, value in meta.items()]
    out.write(path, format=astropy_format, overwrite=overwrite)
    logger.debug("wrote %d rows to %s", len(table), path)
    return path
