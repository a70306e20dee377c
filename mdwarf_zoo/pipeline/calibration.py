"""Calibration on stars with known parameters: a low-capacity correction of the estimates.

Groups with benchmark stars (interferometric radii, eclipsing or wide binaries with a
characterised primary) know Teff, log g or [M/H] of a few of their stars. :func:`calibrate`
learns from N such stars, per parameter, a correction in label space::

    true_p = predicted_p + a_p + sum_q b_pq * (predicted_q - mean_q) / std_q

the predicted parameters ``q`` standardised by their mean and standard deviation over the N
calibrators. Four candidate corrections are compared by leave-one-out cross-validation (closed
form: the residual of star i left out is ``e_i / (1 - H_ii)`` for the hat matrix ``H`` of the
ridge fit, exact for a fixed ridge strength):

* ``identity``: no correction (the leave-one-out residual is the residual itself);
* ``offset``: ``a_p`` only, the mean residual;
* ``linear``: ``a_p`` and ``b_pp`` (the parameter's own prediction), ridge-regularised;
* ``linear_all``: ``a_p`` and ``b_pq`` for every predicted parameter, ridge-regularised.

The intercept is never penalised, so the ridge pulls the slopes towards the identity map and
a very strong ridge is the offset. The ridge strength ``alpha`` is chosen from
``N x logspace(-3, 3, 13)`` by the same leave-one-out error. With fewer than
``min_stars_linear`` calibrators (default 8) only ``identity`` and ``offset`` are tried.

The choice follows the one-standard-error rule: the simplest candidate (in the order above, and
the strongest ridge first) whose leave-one-out mean squared error exceeds the best candidate's
by at most one standard error of that excess over the stars. Picking the best of many
candidates on few stars flatters it; the rule keeps a more complex correction only where the
calibrators clearly ask for it, and ``identity`` wherever no correction is clearly better, so
the correction is never worse than none *in cross-validation* (a claim about the calibrators
left out, not a promise for every other star: on the simulator, 5 calibrators sometimes pick
an offset that costs a few per cent of rms; ``benchmarks/RESULTS.md``).

Errors: the calibration's own uncertainty is added in quadrature to each star's lower and
upper errors:

* ``scatter_p``: the cross-validated residual scatter that the table's own errors do not
  already explain, ``sqrt(max(mean(e_loo**2) - mean(sigma**2), 0))`` with ``sigma`` the mean of
  each calibrator's lower and upper error (so a table whose errors are already honest gets
  little, and MB24's spread errors, which are far too small on the simulator, get most of it);
* the coefficient uncertainty at the star, ``z^T C z`` with ``z = (1, standardised
  predictions)`` and ``C = s^2 A^-1 Z^T Z A^-1`` (``A = Z^T Z + alpha P``, ``s^2`` the residual
  variance per degree of freedom).

The table's own errors are kept as they are (not scaled by the fitted slope), and the noise of
the predictions used as inputs is not modelled (errors in variables); both are small next to
the scatter term for slopes near 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from mdwarf_zoo.labels import PARAMETER_UNITS, PARAMETERS, SET_NAME
from mdwarf_zoo.pipeline.pretrained import PretrainedPipeline

__all__ = ["CALIBRATION_FORMAT", "CORRECTIONS", "Calibration", "calibrate", "load_labels_table"]

logger = logging.getLogger(__name__)

#: The ``format`` of a saved calibration (JSON).
CALIBRATION_FORMAT = "mdwarf_zoo.Calibration/1"
#: The corrections :func:`calibrate` chooses from, simplest first.
CORRECTIONS = ("identity", "offset", "linear", "linear_all")
#: Fewest calibrators :func:`calibrate` accepts.
MIN_STARS = 3
_RIDGE_GRID = np.logspace(-3.0, 3.0, 13)


@dataclass(frozen=True)
class ParameterCorrection:
    """The correction of one parameter (see the module docstring for the formula).

    Attributes:
        parameter: the corrected parameter (``"teff"``, ``"logg"``, ``"mh"``, ``"vsini"``).
        kind: one of :data:`CORRECTIONS`.
        features: the predicted parameters the slopes multiply (empty for identity/offset).
        feature_mean, feature_std: their standardisation over the calibrators.
        intercept: ``a_p`` (physical units).
        slopes: ``b_pq`` per feature, per standard deviation of the feature (physical units).
        covariance: covariance of ``(intercept, *slopes)``.
        alpha: the ridge strength (0 for identity/offset).
        scatter: the added cross-validated scatter (physical units).
        cv_rms_before, cv_rms_after: leave-one-out rms of the residuals without correction and
            with the chosen one.
        cv_bias_before, cv_bias_after: their means.
    """

    parameter: str
    kind: str
    features: tuple[str, ...]
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    intercept: float
    slopes: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    alpha: float
    scatter: float
    cv_rms_before: float
    cv_rms_after: float
    cv_bias_before: float
    cv_bias_after: float

    def physical_map(self) -> dict[str, float]:
        """``true = intercept + sum slope_q * predicted_q`` in physical units: the constant
        under ``"intercept"`` and one slope per predicted parameter (the identity's 1
        included)."""
        mean = np.asarray(self.feature_mean)
        std = np.asarray(self.feature_std)
        slopes = np.asarray(self.slopes) / std if self.slopes else np.zeros(0)
        result = {"intercept": float(self.intercept - np.sum(slopes * mean))}
        result[self.parameter] = 1.0
        for name, slope in zip(self.features, slopes, strict=True):
            result[name] = result.get(name, 0.0) + float(slope)
        return result

    def correct(self, predicted: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Corrected values and the calibration's standard deviation per star."""
        values = np.asarray(predicted[self.parameter], dtype=np.float64)
        if self.kind == "identity":
            return values.copy(), np.full(values.shape, self.scatter)
        z = np.ones((values.size, 1 + len(self.features)))
        for j, name in enumerate(self.features):
            z[:, 1 + j] = (np.asarray(predicted[name], dtype=np.float64) - self.feature_mean[j]) / (
                self.feature_std[j]
            )
        beta = np.array([self.intercept, *self.slopes])
        covariance = np.asarray(self.covariance, dtype=np.float64)
        variance = np.einsum("ij,jk,ik->i", z, covariance, z)
        return values + z @ beta, np.sqrt(np.maximum(variance, 0.0) + self.scatter**2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "features": list(self.features),
            "feature_mean": list(self.feature_mean),
            "feature_std": list(self.feature_std),
            "intercept": self.intercept,
            "slopes": list(self.slopes),
            "covariance": [list(row) for row in self.covariance],
            "alpha": self.alpha,
            "scatter": self.scatter,
            "cv_rms_before": self.cv_rms_before,
            "cv_rms_after": self.cv_rms_after,
            "cv_bias_before": self.cv_bias_before,
            "cv_bias_after": self.cv_bias_after,
        }

    @classmethod
    def from_dict(cls, parameter: str, data: Mapping[str, Any]) -> ParameterCorrection:
        n = len(data["features"])
        correction = cls(
            parameter=parameter,
            kind=str(data["kind"]),
            features=tuple(str(v) for v in data["features"]),
            feature_mean=tuple(float(v) for v in data["feature_mean"]),
            feature_std=tuple(float(v) for v in data["feature_std"]),
            intercept=float(data["intercept"]),
            slopes=tuple(float(v) for v in data["slopes"]),
            covariance=tuple(tuple(float(v) for v in row) for row in data["covariance"]),
            alpha=float(data["alpha"]),
            scatter=float(data["scatter"]),
            cv_rms_before=float(data["cv_rms_before"]),
            cv_rms_after=float(data["cv_rms_after"]),
            cv_bias_before=float(data["cv_bias_before"]),
            cv_bias_after=float(data["cv_bias_after"]),
        )
        size = 0 if correction.kind == "identity" else 1 + n
        if (
            correction.kind not in CORRECTIONS
            or len(correction.feature_mean) != n
            or len(correction.feature_std) != n
            or len(correction.slopes) != n
            or any(len(row) != size for row in correction.covariance)
            or len(correction.covariance) != size
            or any(f not in PARAMETERS for f in correction.features)
        ):
            raise ValueError(
                f"correction of {parameter!r}: kind {correction.kind!r} with {n} features "
                f"{list(correction.features)}, {len(correction.slopes)} slopes and a "
                f"{len(correction.covariance)}-row covariance; expected a kind from "
                f"{CORRECTIONS}, one slope, mean and std per feature (parameter names) and a "
                f"{size} x {size} covariance"
            )
        return correction


@dataclass
class Calibration:
    """A correction learnt from stars with known parameters (:func:`calibrate`).

    Attributes:
        corrections: one :class:`ParameterCorrection` per calibrated parameter.
        n_stars: number of calibrators.
        identifiers: their identifiers.
        pipeline: the pipeline whose estimates were calibrated (from the table's meta), if
            known.
    """

    corrections: dict[str, ParameterCorrection]
    n_stars: int
    identifiers: list[str] = field(default_factory=list)
    pipeline: str | None = None

    @property
    def parameters(self) -> list[str]:
        return list(self.corrections)

    def apply(self, table):
        """A copy of an estimate table with calibrated values and widened errors.

        Args:
            table: an ``astropy.table.Table`` of estimates (``predict``, ``run_pipeline``'s
                ``.table``, a run's predictions file read back) with ``<p>`` and, when present,
                ``<p>_err_lower`` / ``<p>_err_upper`` for every parameter the correction
                reads.

        Returns:
            The new table; its ``meta["calibration"]`` records the number of calibrators and,
            per parameter, the correction, its physical coefficients and the cross-validated
            rms before and after.

        Raises:
            ValueError: for a table without a column the correction reads, or one already
                calibrated.
        """
        if "calibration" in table.meta:
            raise ValueError(
                "Calibration.apply: the table is already calibrated (its meta has "
                "'calibration'); apply a calibration to uncalibrated estimates only"
            )
        needed = sorted({p for c in self.corrections.values() for p in (c.parameter,
                                                                          *c.features)},
                        key=PARAMETERS.index)
        missing = [name for name in needed if name not in table.colnames]
        if missing:
            raise ValueError(
                f"Calibration.apply: the table has no column(s) {missing}; the calibration "
                f"reads {needed} (columns {table.colnames})"
            )
        source = table.meta.get("pipeline")
        if self.pipeline and source and str(source) != self.pipeline:
            warnings.warn(
                f"the calibration was learnt on estimates of pipeline {self.pipeline!r} and is "
                f"applied to estimates of {str(source)!r}",
                stacklevel=2,
            )
        predicted = {name: _values(table[name]) for name in needed}
        out = table.copy()
        for name, correction in self.corrections.items():
            values, sigma = correction.correct(predicted)
            _assign(out, name, values)
            for side in ("lower", "upper"):
                column = f"{name}_err_{side}"
                if column in out.colnames:
                    _assign(out, column, np.hypot(_values(out[column]), sigma))
                    info = out[column].info
                    info.description = " ".join(filter(None, (
                        info.description, "(+) calibration uncertainty, in quadrature")))
        out.meta["calibration"] = self.summary()
        return out

    def summary(self) -> dict[str, Any]:
        """What a calibrated table's ``meta["calibration"]`` holds."""
        return {
            "n_stars": self.n_stars,
            "pipeline": self.pipeline,
            "parameters": {
                name: {
                    "correction": c.kind,
                    "alpha": c.alpha,
                    "coefficients": c.physical_map(),
                    "scatter": c.scatter,
                    "cv_rms_before": c.cv_rms_before,
                    "cv_rms_after": c.cv_rms_after,
                    "cv_bias_before": c.cv_bias_before,
                    "cv_bias_after": c.cv_bias_after,
                    "unit": PARAMETER_UNITS[name],
                }
                for name, c in self.corrections.items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "n_stars": self.n_stars,
            "identifiers": list(self.identifiers),
            "pipeline": self.pipeline,
            "corrections": {name: c.to_dict() for name, c in self.corrections.items()},
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the calibration as JSON (format :data:`CALIBRATION_FORMAT`).

        Raises:
            FileExistsError: when ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"Calibration.save: {path} exists; refusing to overwrite it (pass "
                "overwrite=True or choose another path)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a calibration written by :meth:`save`.

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            ValueError: when it is not a saved calibration (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file {path} does not exist")
        expected = f"a JSON calibration of format {CALIBRATION_FORMAT!r} (Calibration.save)"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"calibration file {path} is not JSON ({error}); expected "
                             f"{expected}") from None
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"calibration file {path} has format {found!r}; expected {expected}")
        try:
            corrections = {
                name: ParameterCorrection.from_dict(name, entry)
                for name, entry in data["corrections"].items()
            }
            unknown = [name for name in corrections if name not in PARAMETERS]
            if unknown or not corrections:
                raise ValueError(f"parameters {list(corrections)}; expected some of "
                                 f"{list(PARAMETERS)}")
            return cls(corrections, int(data["n_stars"]),
                       [str(v) for v in data.get("identifiers", [])], data.get("pipeline"))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"calibration file {path}: {error}; expected {expected}") from None

    def __repr__(self) -> str:
        lines = [f"Calibration({self.n_stars} stars"
                 + (f", pipeline {self.pipeline!r}" if self.pipeline else "") + ")"]
        for name, c in self.corrections.items():
            unit = PARAMETER_UNITS[name]
            terms = c.physical_map()
            how = c.kind
            if c.kind == "offset":
                how += f" {terms['intercept']:+.4g} {unit}"
            elif c.kind != "identity":
                slopes = ", ".join(f"{k} {v:.4g}" for k, v in terms.items() if k != "intercept")
                how += f" (alpha {c.alpha:.3g}; intercept {terms['intercept']:.4g}, {slopes})"
            lines.append(
                f"  {name}: {how}; cv rms {c.cv_rms_before:.4g} -> {c.cv_rms_after:.4g} {unit}, "
                f"added scatter {c.scatter:.4g} {unit}"
            )
        return "\n".join(lines)


def column_values(column) -> np.ndarray:
    """A table column (plain, with a unit, a Quantity, or masked) as float64, NaN where masked
    (an empty cell of a CSV file)."""
    values = np.array(getattr(column, "value", column), dtype=np.float64)
    values[np.ma.getmaskarray(column)] = np.nan
    return values


_values = column_values


def _assign(table, name: str, values: np.ndarray) -> None:
    """Replace a column's values in place, keeping its unit, description and dtype (a
    ``QTable``'s Quantity column takes them in its own unit)."""
    column = table[name]
    unit = getattr(column, "unit", None)
    if unit is not None and hasattr(column, "to_value"):
        table[name][:] = values * unit
    else:
        table[name][:] = values


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
def _ridge(z: np.ndarray, r: np.ndarray, alpha: float):
    """Ridge fit of ``r`` on ``z`` (first column the unpenalised intercept): coefficients,
    leave-one-out residuals and ``(A^-1, trace H)``; ``None`` when a star has leverage 1."""
    penalty = np.eye(z.shape[1]) * alpha
    penalty[0, 0] = 0.0
    inverse = np.linalg.pinv(z.T @ z + penalty)
    beta = inverse @ z.T @ r
    leverage = np.einsum("ij,jk,ik->i", z, inverse, z)
    if np.any(1.0 - leverage < 1e-8):
        return None
    residual = r - z @ beta
    return beta, residual / (1.0 - leverage), inverse, float(np.sum(leverage))


def _fit_parameter(
    name: str,
    truth: np.ndarray,
    predicted: dict[str, np.ndarray],
    sigma: np.ndarray,
    min_stars_linear: int,
) -> ParameterCorrection:
    n = truth.size
    r = truth - predicted[name]
    rms = lambda e: float(np.sqrt(np.mean(e**2)))  # noqa: E731
    before = {"cv_rms_before": rms(r), "cv_bias_before": float(np.mean(r))}
    candidates: list[tuple[float, int, dict[str, Any], np.ndarray]] = [
        (rms(r), 0, {"kind": "identity", "features": (), "alpha": 0.0, "beta": None}, r)
    ]
    feature_sets = {"offset": ()}
    if n >= min_stars_linear:
        usable = [q for q in predicted if np.std(predicted[q]) > 1e-12 * max(
            1.0, float(np.max(np.abs(predicted[q]))))]
        if name in usable:
            feature_sets["linear"] = (name,)
        if len(usable) > 1:
            feature_sets["linear_all"] = tuple(usable)
    for rank, (kind, features) in enumerate(feature_sets.items(), start=1):
        mean = np.array([np.mean(predicted[q]) for q in features])
        std = np.array([np.std(predicted[q]) for q in features])
        z = np.ones((n, 1 + len(features)))
        for j, q in enumerate(features):
            z[:, 1 + j] = (predicted[q] - mean[j]) / std[j]
        for alpha in (n * _RIDGE_GRID if features else [0.0]):
            fit = _ridge(z, r, float(alpha))
            if fit is None:
                continue
            beta, loo, inverse, dof = fit
            s2 = float(np.sum((r - z @ beta) ** 2) / max(n - dof, 1.0))
            covariance = s2 * inverse @ (z.T @ z) @ inverse
            state = {"kind": kind, "features": features, "alpha": float(alpha), "beta": beta,
                     "mean": mean, "std": std, "covariance": covariance}
            candidates.append((rms(loo), rank, state, loo))
    # The one-standard-error rule: the simplest candidate whose cross-validated mean squared
    # error is within one standard error (over stars) of the best one's. Choosing among many
    # candidates on few stars flatters the best; this keeps a more complex correction only
    # where the calibrators clearly ask for it.
    best = min(candidates, key=lambda c: c[0])
    for candidate in sorted(candidates, key=lambda c: (c[1], -c[2]["alpha"])):
        excess = candidate[3] ** 2 - best[3] ** 2
        if np.mean(excess) <= np.std(excess) / math.sqrt(n) + 1e-12 * np.mean(best[3] ** 2):
            score, _, state, loo = candidate
            break
    scatter = math.sqrt(max(float(np.mean(loo**2) - np.mean(sigma**2)), 0.0))
    after = {"cv_rms_after": score, "cv_bias_after": float(np.mean(loo))}
    if state["kind"] == "identity":
        return ParameterCorrection(name, "identity", (), (), (), 0.0, (), (), 0.0, scatter,
                                   **before, **after)
    beta = state["beta"]
    return ParameterCorrection(
        name,
        state["kind"],
        tuple(state["features"]),
        tuple(float(v) for v in state["mean"]),
        tuple(float(v) for v in state["std"]),
        float(beta[0]),
        tuple(float(v) for v in beta[1:]),
        tuple(tuple(float(v) for v in row) for row in state["covariance"]),
        state["alpha"],
        scatter,
        **before,
        **after,
    )


def calibrate(
    pipeline,
    spectra,
    labels,
    *,
    identifiers: list[str] | None = None,
    parameters: list[str] | tuple[str, ...] | None = None,
    id_column: str = "id",
    min_stars_linear: int = 8,
    predict_options: Mapping[str, Any] | None = None,
) -> Calibration:
    """Learn a low-capacity correction of a pipeline's estimates from stars with known labels.

    Args:
        pipeline: a :class:`~mdwarf_zoo.pipeline.pretrained.PretrainedPipeline` (it predicts
            ``spectra`` first), or an ``astropy.table.Table`` of estimates already
            made (``predict``, ``run_pipeline(...).table``, a run's predictions file); then
            ``spectra`` is ``None``.
        spectra: with a pipeline, preprocessed flux ``(n, pixels)`` or a list of spectrum files
            (:meth:`~mdwarf_zoo.pipeline.pretrained.PretrainedPipeline.read_spectra`).
        labels: the known parameters: an ``astropy.table.Table`` (columns named as in
            :data:`mdwarf_zoo.labels.PARAMETERS`, ``metallicity`` accepted for ``mh``), a dict
            of arrays, an array ``(n, 4)`` in the order of ``PARAMETERS``, or the path of a
            table file (CSV/ECSV/FITS). A table or dict with ``id_column`` is matched to the
            estimates by identifier; otherwise row i is estimate i.
        identifiers: names of the flux rows (with a pipeline and flux).
        parameters: the parameters to calibrate (default every one in ``labels`` that the
            estimates have).
        id_column: identifier column of the labels; the estimate table's is the column of
            the same name when it has one, else ``id`` (as ``predict`` writes it).
        min_stars_linear: fewest calibrators for the linear corrections; with fewer, only the
            offset (or none) is tried.
        predict_options: keyword arguments of ``PretrainedPipeline.predict`` (e.g.
            ``{"error_model": "spread+validation"}``), and ``rv``/``template`` for files.

    Returns:
        A :class:`Calibration`; ``calibration.apply(table)`` corrects any estimate table of
        the same pipeline.

    Raises:
        ValueError: for fewer than 3 calibrators, labels that are NaN or do not match the
            estimates (the message names the stars), unknown parameters, or a table
            with ``spectra``.

    Examples:
        >>> import mdwarf_zoo as mz
        >>> pipeline = mz.load_pipeline("mb24_quickstart_demo")  # doctest: +SKIP
        >>> calibration = mz.calibrate(pipeline, flux, known_labels)  # doctest: +SKIP
        >>> corrected = calibration.apply(pipeline.predict(other_flux))  # doctest: +SKIP
    """
    table = _estimates(pipeline, spectra, identifiers, dict(predict_options or {}))
    truth, ids, rows = _matched_labels(labels, table, id_column)
    present = [p for p in PARAMETERS if p in table.colnames]
    if parameters is None:
        parameters = [p for p in present if p in truth]
        if not parameters:
            raise ValueError(
                f"calibrate: the labels have none of the estimated parameters {present} "
                f"(label columns: {sorted(truth)})"
            )
    unknown = [p for p in parameters if p not in PARAMETERS]
    if unknown:
        raise ValueError(f"calibrate: unknown parameter(s) {unknown}; expected names from "
                         f"{list(PARAMETERS)}")
    for p in parameters:
        if p not in truth:
            raise ValueError(f"calibrate: parameter {p!r} has no labels (label columns: "
                             f"{sorted(truth)})")
        if p not in table.colnames:
            raise ValueError(f"calibrate: parameter {p!r} is not in the estimate table "
                             f"(columns {table.colnames})")
    if len(ids) < MIN_STARS:
        raise ValueError(
            f"calibrate: {len(ids)} calibrator star(s) ({', '.join(ids) or 'none'}); at least "
            f"{MIN_STARS} are needed (a correction cross-validated on fewer means nothing)"
        )
    predicted = {}
    for q in present:
        values = _values(table[q])[rows]
        bad = [i for i, v in zip(ids, values, strict=True) if not np.isfinite(v)]
        if bad:
            raise ValueError(f"calibrate: the estimate of {q!r} is not finite for star(s) "
                             f"{bad}")
        predicted[q] = values
    corrections = {}
    for p in parameters:
        sigma = np.zeros(len(ids))
        sides = [f"{p}_err_lower", f"{p}_err_upper"]
        if all(s in table.colnames for s in sides):
            sigma = 0.5 * (_values(table[sides[0]]) + _values(table[sides[1]]))[rows]
        corrections[p] = _fit_parameter(p, truth[p], predicted, sigma, min_stars_linear)
        logger.debug("calibration of %s: %s", p, corrections[p].kind)
    source = table.meta.get("pipeline")
    return Calibration(corrections, len(ids), ids, None if source is None else str(source))


def _estimates(pipeline, spectra, identifiers, options):

    if isinstance(pipeline, Table):
        if spectra is not None:
            raise ValueError(
                "calibrate: with a table of estimates, spectra must be None (the table already "
                "holds the estimates); pass a pipeline to predict spectra"
            )
        return pipeline

    if not isinstance(pipeline, PretrainedPipeline):
        raise ValueError(
            f"calibrate: pipeline must be a PretrainedPipeline (mdwarf_zoo.load_pipeline) or an "
            f"astropy Table of estimates, got {type(pipeline).__name__}"
        )
    read = {k: options.pop(k) for k in ("rv", "template") if k in options}
    if isinstance(spectra, (list, tuple)) and spectra and isinstance(spectra[0], (str, Path)):
        flux, identifiers = pipeline.read_spectra(list(spectra), progress=False, **read)
    else:
        flux = np.asarray(spectra, dtype=np.float32)
    options.setdefault("progress", False)
    return pipeline.predict(flux, identifiers, **options)


def load_labels_table(path: str | os.PathLike, *, what: str = "labels file"):
    """A table from a file (any format astropy reads: CSV, ECSV, FITS), e.g. known labels;
    ``what`` names it in errors.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when astropy cannot read it (the message names the file).
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            return Table.read(path, format="ascii.csv")
        return Table.read(path)
    except Exception as error:  # astropy raises many kinds for an unreadable file
        raise ValueError(
            f"{what} {path} cannot be read as a table ({error}); expected a CSV, ECSV or FITS "
            f"table with an id column and columns from {list(PARAMETERS)}"
        ) from None


def _matched_labels(
    labels, table, id_column: str
) -> tuple[dict[str, np.ndarray], list[str], np.ndarray]:
    """Per parameter the known values in the order of the calibrators, their names and their
    rows in ``table``.

    Only the estimate rows with labels are calibrators: matched by identifier when both
    carry one (the labels' ``id_column``; the table's column of that name, else ``id``), row
    by row otherwise."""

    if isinstance(labels, (str, os.PathLike)):
        labels = load_labels_table(labels)
    aliases = {SET_NAME[p]: p for p in PARAMETERS}
    if isinstance(labels, Table | Mapping):
        names = labels.colnames if isinstance(labels, Table) else list(labels)
        columns = {aliases.get(n, n): np.asarray(_values(labels[n]))
                   for n in names if aliases.get(n, n) in PARAMETERS}
        label_ids = ([str(v).strip() for v in labels[id_column]] if id_column in names
                     else None)
    else:
        array = np.asarray(labels, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] not in (len(PARAMETERS),):
            raise ValueError(
                f"calibrate: a label array must be (n_stars, {len(PARAMETERS)}) with columns "
                f"{list(PARAMETERS)}, got shape {array.shape}"
            )
        columns = {p: array[:, j] for j, p in enumerate(PARAMETERS)}
        label_ids = None
    if not columns:
        raise ValueError(f"calibrate: the labels have no column from {list(PARAMETERS)}")
    n_labels = len(next(iter(columns.values())))
    table_column = id_column if id_column in table.colnames else "id"
    table_ids = ([str(v).strip() for v in table[table_column]] if table_column in table.colnames
                 else [f"row_{i}" for i in range(len(table))])
    if label_ids is not None and table_column in table.colnames:
        duplicates = sorted({i for i in label_ids if label_ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"calibrate: the labels name star(s) {duplicates} more than once")
        index = {name: row for row, name in enumerate(table_ids)}
        unmatched = [name for name in label_ids if name not in index]
        if unmatched:
            raise ValueError(
                f"calibrate: labelled star(s) {unmatched} are not in the estimate table "
                f"(its {table_column!r} column has {len(table_ids)} stars, e.g. "
                f"{table_ids[:3]}); fix the identifiers"
            )
        rows = np.array([index[name] for name in label_ids], dtype=int)
        ids = label_ids
    else:
        if n_labels != len(table):
            raise ValueError(
                f"calibrate: {n_labels} label rows for {len(table)} estimates and no "
                f"identifier column in both (labels {id_column!r}, estimates {table_column!r}) "
                "to match them by; give one label row per estimate, or the identifiers"
            )
        rows = np.arange(len(table))
        ids = table_ids
    truth = {}
    for name, values in columns.items():
        values = np.asarray(values, dtype=np.float64)
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(values))]
        if bad:
            raise ValueError(
                f"calibrate: label {name!r} is NaN or infinite for star(s) {bad}; drop those "
                f"stars, or the {name!r} column if it is unknown"
            )
        truth[name] = values
    return truth, [str(i) for i in ids], rows
