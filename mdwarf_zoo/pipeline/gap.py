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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.spectra.simulate import GapConfig, WavelengthGrid, observe

__all__ = [
    "COVERAGE_LEVEL",
    "GAP_PRIOR",
    "GAP_PRIOR_SOURCE",
    "MIN_COVERAGE_STARS",
    "check_error_scale",
    "check_gap",
    "coverage_scale",
    "measure_gap",
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


def check_error_scale(scale: Mapping[str, float], where: str) -> dict[str, float]:
    """An error-scale dict checked: known parameter names, finite values > 0, as floats.

    Args:
        scale: parameter name -> factor ``c`` applied to both errors (dimensionless).
        where: what to name in the error (the function or the manifest key).

    Returns:
        The same dict with float values.

    Raises:
        ValueError: for a non-mapping, an unknown parameter, or a value that is not a finite
            number > 0, naming the key, the value and what is expected.
    """
    return _checked_per_parameter(
        scale, where, "error_scale", "factor", zero_allowed=False,
        expected="a finite number > 0 (the factor applied to both errors)",
    )


def _checked_per_parameter(
    values: Mapping[str, float], where: str, key: str, what: str, *, zero_allowed: bool,
    expected: str,
) -> dict[str, float]:
    """``values`` (parameter -> number) checked as :func:`check_gap` and
    :func:`check_error_scale` describe, naming ``key`` in the errors."""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{where}: {key} must be a dict parameter -> {what}, got "
            f"{type(values).__name__} {values!r}"
        )
    out = {}
    for name, value in values.items():
        if name not in PARAMETERS:
            raise ValueError(
                f"{where}: {key} names unknown parameter {name!r}; expected names from "
                f"{list(PARAMETERS)}"
            )
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
