"""The domain-gap scale of the ``"spread+validation+gap"`` error model: a prior measured on real
stars, the check of a user's own scales, and :func:`measure_gap` on the simulator.

The gap scale ``g_p`` of a parameter is how far the synthetic -> observed gap moves a star's
estimate, in physical units; :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table` adds it in
quadrature to both errors. It is a population-level scale (one number per parameter), not a
per-star error.

The prior :data:`GAP_PRIOR` is the rms over MB24's 286 CARMENES stars of (the convolutional
network of Passegger et al. 2020, A&A 642, A22, trained on PHOENIX spectra and applied without
transfer learning) - (MB24's final estimates, with transfer learning); see the comment at the
constant. Two methods trained on the same synthetic grid and read on the same real spectra
differ this much, so the number measures the size of a CARMENES-vs-PHOENIX gap; it assumes the
user's gap is of that kind and size.

The default errors ``sqrt(spread**2 + validation**2 + gap**2)`` are rms-based, and the
ensemble's residuals are heavy-tailed (most stars are much better than the rms, a few much
worse), so +-1 sigma covers the truth more often than 68 %. :func:`coverage_scale` measures the
factor ``c`` that makes them cover 68.27 % of stars with known labels (the simulated observed
twins of :func:`measure_gap`); ``ensemble_table(error_scale=...)`` multiplies both errors by it.

One ``c`` per parameter makes the errors cover 68 % of a population, not of each kind of star:
the gap and validation terms are population scales, so the errors hardly change from star to
star while the residuals do (v sin i: a few tenths of a km/s at 5-10 km/s, several km/s at
25-30 km/s). :func:`coverage_profile` measures ``c`` in bins of the estimate itself (equal
numbers of stars per bin, as Mondrian conformal prediction does with its categories), so that
each range of estimates is covered 68 % of the time; :func:`scale_factors` gives each star the
factor of its bin. ``error_scale`` values are either one factor or such a profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.spectra.simulate import GapConfig, WavelengthGrid, observe

__all__ = [
    "COVERAGE_LEVEL",
    "DEFAULT_COVERAGE_BINS",
    "GAP_PRIOR",
    "GAP_PRIOR_SOURCE",
    "MIN_BIN_STARS",
    "MIN_COVERAGE_STARS",
    "check_error_scale",
    "check_gap",
    "coverage_profile",
    "coverage_scale",
    "measure_gap",
    "scale_factors",
]

# Measured once from the shared tables/carmenes_params files (never shipped; the test
# tests/test_gap.py recomputes these numbers when they are present). lit_dl.csv holds, per
# CARMENES star, the deep-learning estimates (the shared data's PROVENANCE.md: probably the
# PHOENIX-trained CNN of Passegger+2020) in its *_MODE columns; its *_VERA columns seem to be
# the Passegger+2019 values it was compared with, not the CNN's, and give other numbers (Teff
# rms 117 K, [M/H] 0.154 dex). masbuitrago2024_final_estimations.csv holds MB24's estimates.
# Matched on karmn (all 286 stars), CNN - MB24:
#   Teff   mean -34.5 K     rms 50.6 K      (286 stars)
#   log g  mean -0.039 dex  rms 0.060 dex   (286 stars)
#   [M/H]  mean +0.233 dex  rms 0.248 dex   (286 stars)
#   vsini  mean +0.10 km/s  rms 1.60 km/s   (39 stars)
# v sin i: 241 stars have VSINI_VERA = 1.5, the literature's upper limit (< 2 km/s, unresolved
# at R = 94,600) and 6 have none; there the CNN never goes below 3 km/s while MB24 goes down to
# its grid's 1.5 km/s, so the difference measures the two methods' floors, not the gap (rms
# 1.99 km/s over those 247). Only the 39 stars with a measured v sin i (VSINI_VERA > 1.5) count.
#: Default gap scale per parameter, physical units (K, dex, dex, km/s); see the comment above.
GAP_PRIOR = {"teff": 50.6, "logg": 0.060, "mh": 0.248, "vsini": 1.60}
#: What the tables record as the source of :data:`GAP_PRIOR`.
GAP_PRIOR_SOURCE = (
    "prior: rms of (Passegger+2020 CNN, no transfer) - (MB24) over MB24's CARMENES stars "
    "(286; v sin i: the 39 with a measured v sin i)"
)


def check_gap(gap: Mapping[str, float], where: str) -> dict[str, float]:
    """A gap dict checked: known parameter names, finite values >= 0, as floats.

    Args:
        gap: parameter name -> gap scale in physical units (K, dex, dex, km/s).
        where: what to name in the error (the function or the recipe key).

    Returns:
        The same dict with float values.

    Raises:
        ValueError: for a non-mapping, an unknown parameter, or a value that is not a finite
            number >= 0, naming the key, the value and what is expected.
    """
    return _checked_per_parameter(
        gap, where, "gap", "scale", zero_allowed=True,
        expected="a finite number >= 0 in physical units (K, dex, dex, km/s)",
    )


def check_error_scale(
    scale: Mapping[str, float | Mapping[str, list[float]]], where: str
) -> dict[str, float | dict[str, list[float]]]:
    """An error-scale dict checked: known parameter names; each value a finite factor > 0, or
    a profile ``{"edges": [...], "factors": [...]}`` of :func:`coverage_profile`.

    Args:
        scale: parameter name -> factor ``c`` applied to both errors (dimensionless), or
            parameter name -> profile: ``k - 1`` strictly increasing finite ``edges`` (in the
            parameter's units, bounds of the estimate's bins) and ``k`` finite ``factors``
            > 0.
        where: what to name in the error (the function or the manifest key).

    Returns:
        The same dict, factors as floats and profiles as ``{"edges": list, "factors": list}``
        of floats.

    Raises:
        ValueError: for a non-mapping, an unknown parameter, a factor that is not a finite
            number > 0, or a profile with other keys, edges that are not finite and strictly
            increasing, or not one factor more than edges; naming the key, the value and what
            is expected.
    """
    plain = {name: value for name, value in _named(scale, where, "error_scale", "factor").items()
             if not isinstance(value, Mapping)}
    out: dict[str, float | dict[str, list[float]]] = dict(_checked_per_parameter(
        plain, where, "error_scale", "factor", zero_allowed=False,
        expected="a finite number > 0 (the factor applied to both errors) or a profile "
        "{'edges': [...], 'factors': [...]}",
    ))
    for name, value in scale.items():
        if isinstance(value, Mapping):
            out[name] = _checked_profile(value, f"{where}: error_scale[{name!r}]")
    return {name: out[name] for name in scale}


def _named(values: object, where: str, key: str, what: str) -> Mapping:
    """``values`` if it is a mapping whose keys are parameter names, else a ValueError."""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{where}: {key} must be a dict parameter -> {what}, got "
            f"{type(values).__name__} {values!r}"
        )
    for name in values:
        if name not in PARAMETERS:
            raise ValueError(
                f"{where}: {key} names unknown parameter {name!r}; expected names from "
                f"{list(PARAMETERS)}"
            )
    return values


def _checked_profile(profile: Mapping, where: str) -> dict[str, list[float]]:
    """A coverage profile checked (see :func:`check_error_scale`), as lists of floats."""
    if set(profile) != {"edges", "factors"}:
        raise ValueError(
            f"{where} = {dict(profile)!r}; a profile needs exactly the keys 'edges' and "
            "'factors'"
        )
    try:
        edges = np.asarray(profile["edges"], dtype=np.float64)
        factors = np.asarray(profile["factors"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where} = {dict(profile)!r}; edges and factors must be lists of numbers"
        ) from None
    if edges.ndim != 1 or factors.ndim != 1 or factors.size != edges.size + 1:
        raise ValueError(
            f"{where}: {edges.size} edges and {factors.size} factors; expected one factor "
            "more than edges (k - 1 bounds of k bins)"
        )
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{where}: edges {edges.tolist()}; expected finite, strictly increasing")
    if not np.all(np.isfinite(factors) & (factors > 0)):
        raise ValueError(f"{where}: factors {factors.tolist()}; expected finite numbers > 0")
    return {"edges": edges.tolist(), "factors": factors.tolist()}


def scale_factors(
    scale: float | Mapping[str, list[float]], estimates: np.ndarray
) -> np.ndarray:
    """The factor ``c`` of each star: ``scale`` itself, or the factor of the bin of a
    profile (:func:`coverage_profile`) that holds the star's estimate.

    A star on an edge takes the bin above it, as :func:`coverage_profile` counted it.

    Args:
        scale: a factor, or a checked profile ``{"edges": [...], "factors": [...]}``.
        estimates: (n,) the stars' estimates of the parameter, physical units.

    Returns:
        (n,) factors.
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    if not isinstance(scale, Mapping):
        return np.full(estimates.shape, float(scale))
    return np.asarray(scale["factors"], dtype=np.float64)[_bins(scale["edges"], estimates)]


def _bins(edges: list[float], estimates: np.ndarray) -> np.ndarray:
    """The bin of each estimate (``k - 1`` edges, bins 0 .. k - 1; an edge opens its bin)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), estimates, side="right")


def _checked_per_parameter(
    values: Mapping[str, float], where: str, key: str, what: str, *, zero_allowed: bool,
    expected: str,
) -> dict[str, float]:
    """``values`` (parameter -> number) checked as :func:`check_gap` and
    :func:`check_error_scale` describe, naming ``key`` in the errors."""
    out = {}
    for name, value in _named(values, where, key, what).items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not (math.isfinite(value) and (value > 0 or (zero_allowed and value == 0)))
        ):
            raise ValueError(f"{where}: {key}[{name!r}] = {value!r}; expected {expected}")
        out[name] = float(value)
    return out


#: The fraction of stars whose truth +-1 sigma errors should cover (a Gaussian's +-1 sigma).
COVERAGE_LEVEL = 0.6827
#: Fewest stars :func:`coverage_scale` accepts: with fewer, the 68 % quantile of the ratios is
#: too noisy to rescale a pipeline's errors by (its standard error is ~ 10 % at 30 stars).
MIN_COVERAGE_STARS = 30
#: Fewest stars per bin of :func:`coverage_profile` (its standard error in coverage is then
#: ~ 6.6 %; the whole population's coverage averages the bins' errors out).
MIN_BIN_STARS = 50
#: Bins of the estimate of :func:`coverage_profile` unless told (fewer when the stars do not
#: fill that many bins of :data:`MIN_BIN_STARS`).
DEFAULT_COVERAGE_BINS = 5


def coverage_scale(
    residuals: np.ndarray, sigma: np.ndarray, *, level: float = COVERAGE_LEVEL
) -> float:
    """The factor ``c`` by which errors must be multiplied to cover the truth ``level`` of
    the time, measured on stars with known labels.

    ``c`` is the ``level`` quantile (``numpy.quantile``, linear interpolation) of
    ``|residual| / sigma`` over the stars, so that ``|predicted - true| <= c * sigma`` holds
    for a fraction ``level`` of them. With asymmetric errors give both, ``sigma = (lower,
    upper)``: each star's ratio then uses the error on the side where its truth lies (the
    upper error when the truth is above the estimate, ``residual < 0``), which is how a
    coverage of ``[value - lower, value + upper]`` counts it. ``c < 1``: the errors were too
    wide (rms-based errors over heavy-tailed residuals); ``c > 1``: too narrow.

    Args:
        residuals: (n,) predicted - true, physical units.
        sigma: (n,) errors, or (2, n) lower and upper errors, same units, finite and > 0.
        level: the coverage wanted, in (0, 1); default 0.6827 (+-1 sigma of a Gaussian).

    Returns:
        ``c`` (dimensionless, > 0 unless more than ``1 - level`` of the residuals are 0).

    Raises:
        ValueError: for fewer than :data:`MIN_COVERAGE_STARS` stars, shapes that do not
            match, non-finite residuals, errors that are not finite and > 0, or a ``level``
            outside (0, 1); naming the argument, the value and what is expected.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline.gap import coverage_scale
        >>> residuals = np.random.default_rng(0).normal(0, 2.0, 1000)
        >>> round(coverage_scale(residuals, np.ones(1000)), 1)  # Gaussian sigma 2: c ~ 2
        2.0
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"coverage_scale: level = {level!r}; expected a number in (0, 1)")
    residuals = np.asarray(residuals, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if residuals.ndim != 1 or residuals.size < MIN_COVERAGE_STARS:
        raise ValueError(
            f"coverage_scale: residuals must be (n,) with n >= {MIN_COVERAGE_STARS} stars, got "
            f"shape {residuals.shape}"
        )
    n = residuals.size
    if sigma.shape not in ((n,), (2, n)):
        raise ValueError(
            f"coverage_scale: sigma must be ({n},) errors or (2, {n}) lower and upper errors "
            f"for the {n} residuals, got shape {sigma.shape}"
        )
    if not np.all(np.isfinite(residuals)):
        bad = int(np.flatnonzero(~np.isfinite(residuals))[0])
        raise ValueError(f"coverage_scale: residuals[{bad}] = {float(residuals[bad])}, not finite")
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        bad = np.argwhere(~(np.isfinite(sigma) & (sigma > 0)))[0]
        raise ValueError(
            f"coverage_scale: sigma{bad.tolist()} = {float(sigma[tuple(bad)])}; expected "
            "finite errors > 0"
        )
    if sigma.ndim == 2:
        sigma = np.where(residuals < 0, sigma[1], sigma[0])
    return float(np.quantile(np.abs(residuals) / sigma, level))


def coverage_profile(
    estimates: np.ndarray,
    residuals: np.ndarray,
    sigma: np.ndarray,
    *,
    bins: int = DEFAULT_COVERAGE_BINS,
    level: float = COVERAGE_LEVEL,
) -> dict[str, list[float]]:
    """The coverage factor ``c`` in bins of the estimate: :func:`coverage_scale` measured
    separately on the stars of each bin, so that +-1 sigma covers ``level`` of the stars of
    every range of estimates, not only of the whole population.

    The bins hold equal numbers of stars (bounds at quantiles of ``estimates``); there are
    ``bins`` of them, or as many as hold :data:`MIN_BIN_STARS` stars each, at least one. The
    bins are of the *estimate*, which every star has, not of the truth, so that
    :func:`scale_factors` can place a new star.

    Args:
        estimates: (n,) the stars' estimates of the parameter, physical units.
        residuals: (n,) estimate - true.
        sigma: (n,) errors, or (2, n) lower and upper errors (as :func:`coverage_scale`).
        bins: the number of bins wanted, an integer >= 1.
        level: the coverage wanted in each bin, in (0, 1).

    Returns:
        ``{"edges": [...], "factors": [...]}``: the ``k - 1`` inner bounds of the ``k`` bins
        (a star on a bound belongs to the bin above) and each bin's ``c``; with ``k = 1``
        the edges are empty and the factor is :func:`coverage_scale` of all stars.

    Raises:
        ValueError: as :func:`coverage_scale`, for ``estimates`` that are not one finite
            value per residual, or ``bins`` that is not an integer >= 1.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline.gap import coverage_profile
        >>> rng = np.random.default_rng(0)
        >>> estimates = rng.uniform(0, 30, 2000)   # residuals grow with the estimate,
        >>> residuals = rng.normal(0, 0.1 * estimates + 0.2)   # errors are all 1
        >>> profile = coverage_profile(estimates, residuals, np.ones(2000), bins=3)
        >>> [round(edge) for edge in profile["edges"]], [round(c, 1) for c in profile["factors"]]
        ([10, 20], [0.6, 1.7, 2.7])
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"coverage_profile: bins = {bins!r}; expected an integer >= 1")
    overall = coverage_scale(residuals, sigma, level=level)  # checks residuals and sigma
    residuals = np.asarray(residuals, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    estimates = np.asarray(estimates, dtype=np.float64)
    if estimates.shape != residuals.shape or not np.all(np.isfinite(estimates)):
        raise ValueError(
            f"coverage_profile: estimates must be {residuals.size} finite values (one per "
            f"residual), got shape {estimates.shape}"
        )
    k = max(1, min(int(bins), residuals.size // MIN_BIN_STARS))
    while k > 1:
        edges = np.unique(np.quantile(estimates, np.linspace(0, 1, k + 1))[1:-1])
        index = _bins(edges.tolist(), estimates)
        counts = np.bincount(index, minlength=edges.size + 1)
        if counts.min() >= MIN_COVERAGE_STARS:  # ties in the estimates can empty a bin
            factors = [
                coverage_scale(residuals[index == b], sigma[..., index == b], level=level)
                for b in range(edges.size + 1)
            ]
            return {"edges": edges.tolist(), "factors": factors}
        k -= 1
    return {"edges": [], "factors": [overall]}


def measure_gap(
    predictor: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    synthetic_flux: np.ndarray,
    synthetic_labels: np.ndarray,
    *,
    snr: float | None = 150,
    seed: int = 0,
    grid: WavelengthGrid | None = None,
    resolving_power: float | None = 94600,
    synthetic_seed: int = 0,
    gap: GapConfig | None = None,
    kind: str = "excess",
) -> dict[str, float]:
    """The error the simulated domain gap adds to a predictor's estimates, per parameter.

    The observed twins come from :func:`mdwarf_zoo.spectra.simulate.observe` (default
    ``GapConfig`` unless ``gap``, photon noise at ``snr``). Use held-out synthetic spectra and
    the predictor of the no-transfer path, so that the result is the gap a pipeline sees, and
    pass it as ``gap=`` of ``ensemble_table`` / ``PretrainedPipeline.predict``.

    ``kind="excess"`` (default) is what the ``"spread+validation+gap"`` error model adds in
    quadrature: ``sqrt(max(mse_observed - mse_synthetic, 0))``, the mean squared errors
    against the true labels of the observed twins and of the synthetic spectra. ``"shift"`` is
    ``rms(predictor(observed) - predictor(synthetic))``, how far each star's estimate moves. The
    shift is the larger when the gap pulls estimates towards the middle of the label range
    (it is then anti-correlated with the synthetic error): on the issue-16 benchmark, Teff
    shift 231 K against an excess of ~140 K.

    Args:
        predictor: spectra (n, pixels), as ``observe`` returns them on ``grid`` -> dict
            parameter -> (n,) predictions in physical units (do any preprocessing inside), e.g.
            ``lambda f: {p: pipeline.predict(pipeline.preprocessor()(f), ...)[p].value ...}``.
        synthetic_flux: (n, pixels) synthetic spectra of ``synthetic_labels``, from
            ``synthetic_spectra`` with ``grid``, ``resolving_power`` and ``synthetic_seed``.
        synthetic_labels: (n, 4) Teff, log g, [M/H], v sin i.
        snr: signal-to-noise ratio of the observed twins (``None``: no noise).
        seed: seed of ``observe``'s per-spectrum randomness.
        grid, resolving_power, synthetic_seed: as in ``observe``.
        gap: the gap's knobs; default ``GapConfig()``.
        kind: ``"excess"`` or ``"shift"`` (above).

    Returns:
        Parameter -> gap scale in physical units, for each parameter the predictor returns.

    Raises:
        ValueError: as ``observe``, for an unknown ``kind``, or for a predictor that returns no
            parameters, an unknown one, or predictions that are not one finite value per
            spectrum.

    Examples:
        >>> from mdwarf_zoo.pipeline.gap import measure_gap
        >>> from mdwarf_zoo.spectra.simulate import synthetic_spectra
        >>> labels = [[3300, 4.9, 0.0, 2.0], [3500, 5.0, 0.1, 3.0]]
        >>> shift = measure_gap(lambda f: {"teff": 3000 * f.mean(axis=1)},
        ...                     synthetic_spectra(labels), labels, seed=1)
        >>> sorted(shift)
        ['teff']
    """
    if kind not in ("excess", "shift"):
        raise ValueError(f"measure_gap: kind must be 'excess' or 'shift', got {kind!r}")
    synthetic_flux = np.asarray(synthetic_flux, dtype=np.float64)
    labels = np.asarray(synthetic_labels, dtype=np.float64)
    observed = observe(
        synthetic_flux,
        synthetic_labels,
        snr=snr,
        seed=seed,
        grid=grid,
        resolving_power=resolving_power,
        synthetic_seed=synthetic_seed,
        gap=GapConfig() if gap is None else gap,
    )
    before = _predictions(predictor(synthetic_flux), len(synthetic_flux), "synthetic")
    after = _predictions(predictor(observed), len(synthetic_flux), "observed")
    if set(before) != set(after):
        raise ValueError(
            f"measure_gap: the predictor returned {sorted(before)} for the synthetic spectra but "
            f"{sorted(after)} for the observed ones"
        )
    if kind == "shift":
        return {name: float(np.sqrt(np.mean((after[name] - before[name]) ** 2))) for name in before}
    truth = {name: labels[:, PARAMETERS.index(name)] for name in before}
    return {
        name: float(
            np.sqrt(
                max(
                    np.mean((after[name] - truth[name]) ** 2)
                    - np.mean((before[name] - truth[name]) ** 2),
                    0.0,
                )
            )
        )
        for name in before
    }


def _predictions(values: Mapping[str, np.ndarray], n: int, what: str) -> dict[str, np.ndarray]:
    """The predictor's output checked: known parameters, one finite value per spectrum."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            f"measure_gap: the predictor must return a non-empty dict parameter -> (n,) "
            f"predictions, got {type(values).__name__} for the {what} spectra"
        )
    out = {}
    for name, array in values.items():
        if name not in PARAMETERS:
            raise ValueError(
                f"measure_gap: the predictor returned unknown parameter {name!r}; expected "
                f"names from {list(PARAMETERS)}"
            )
        array = np.asarray(array, dtype=np.float64).ravel()
        if array.shape != (n,) or not np.all(np.isfinite(array)):
            raise ValueError(
                f"measure_gap: predictions of {name!r} for the {what} spectra must be {n} "
                f"finite values, got shape {array.shape}"
            )
        out[name] = array
    return out
