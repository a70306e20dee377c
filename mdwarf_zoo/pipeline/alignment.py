"""Latent alignment (not in MB24): the observed latents mapped onto the synthetic latent
distribution before the regressors read them, and the bootstrap of how much each star's
estimate depends on the stars that defined the map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.ensemble import select_best
from mdwarf_zoo.pipeline.regressors import LatentRegressor, predict_ensemble

__all__ = ["ALIGNMENTS", "align_latents", "align_observed_latents", "alignment_uncertainty"]


#: Latent alignments :func:`align_latents` and :func:`run_pipeline` know.
ALIGNMENTS = ("coral", "coral_neighbours")


def align_latents(
    observed: np.ndarray,
    synthetic: np.ndarray,
    *,
    method: str = "coral",
    synthetic_labels: np.ndarray | None = None,
    observed_labels: np.ndarray | None = None,
    neighbours: int = 20,
    eps: float = 1e-3,
    fit_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Map observed latents onto the synthetic latent distribution (not in MB24).

    ``"coral"`` (Sun & Saenko 2016, applied to the latents): whiten the observed latents with
    their own covariance and re-colour them with the synthetic covariance,
    ``z' = (z - mean_o) C_o^-1/2 C_s^1/2 + mean_s`` (``eps`` is added to both diagonals). It
    assumes the observed stars and the synthetic set share one label distribution: when they
    do not, the alignment moves real parameter differences away (measured on the simulator,
    a cool-only observed subset went from 162 to 275 K rms in Teff).

    ``"coral_neighbours"`` aligns onto the synthetic latents of the observed population only:
    the reference is the union, over the observed stars, of the ``neighbours`` synthetic rows
    nearest (in standardised label space) to each star's preliminary estimate
    ``observed_labels`` (e.g. the ensemble without alignment), widened (doubling
    ``neighbours``) until it holds at least ``2 x latent size`` rows. On the simulator it helped in
    every population tried but one (Teff of the cool-only subset, 162 -> 169 K).

    Transductive: the observed statistics come from the spectra given, so pass the whole
    observed sample at once (at least ``2 x latent size`` spectra are required).

    Args:
        observed: (n_obs, d) observed latents.
        synthetic: (n_syn, d) synthetic latents of the same encoder's latent space.
        method: one of ``ALIGNMENTS``.
        synthetic_labels: (n_syn, k) labels of ``synthetic`` (``"coral_neighbours"``).
        observed_labels: (n_obs, k) preliminary estimates (``"coral_neighbours"``).
        neighbours: synthetic rows per observed star in the reference (``"coral_neighbours"``).
        eps: ridge added to both covariances.
        fit_rows: indices of the observed rows (repeats allowed: a bootstrap resample) whose
            statistics, and for ``"coral_neighbours"`` whose estimates, define the map; the
            map is then applied to every row of ``observed``. Default: all rows.

    Returns:
        (n_obs, d) aligned observed latents.

    Raises:
        ValueError: for an unknown method, mismatched shapes, too few spectra or missing labels.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> synthetic = rng.normal(0, 1, (500, 3))
        >>> observed = rng.normal(5, 2, (400, 3))
        >>> aligned = align_latents(observed, synthetic)
        >>> bool(np.allclose(aligned.mean(0), synthetic.mean(0)))
        True
    """
    if method not in ALIGNMENTS:
        raise ValueError(f"align_latents: method={method!r} is not one of {', '.join(ALIGNMENTS)}")
    observed = np.asarray(observed, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if observed.ndim != 2 or synthetic.ndim != 2 or observed.shape[1] != synthetic.shape[1]:
        raise ValueError(
            f"align_latents: expected (n, d) observed and synthetic latents with the same d, got "
            f"{observed.shape} and {synthetic.shape}"
        )
    d = observed.shape[1]
    if fit_rows is None:
        fit_rows = np.arange(observed.shape[0])
    fit_rows = np.asarray(fit_rows)
    if (
        fit_rows.ndim != 1
        or not np.issubdtype(fit_rows.dtype, np.integer)
        or (fit_rows.size and not 0 <= fit_rows.min() <= fit_rows.max() < len(observed))
    ):
        raise ValueError(
            f"align_latents: fit_rows must be a 1-d array of row indices in 0..{len(observed) - 1}"
            f", got {fit_rows!r}"
        )
    if method == "coral_neighbours":
        synthetic = synthetic[
            _neighbour_rows(
                synthetic, observed, synthetic_labels, observed_labels, neighbours, fit_rows
            )
        ]
    fit = observed[fit_rows]
    for name, rows in (("observed", fit), ("synthetic reference", synthetic)):
        if rows.shape[0] < 2 * d:
            raise ValueError(
                f"align_latents: {rows.shape[0]} {name} latents for a {d}-d latent space; at "
                f"least {2 * d} are needed to estimate a covariance"
            )

    ridge = eps * np.eye(d)
    whiten = _power(np.cov(fit, rowvar=False) + ridge, -0.5)
    colour = _power(np.cov(synthetic, rowvar=False) + ridge, 0.5)
    return (observed - fit.mean(axis=0)) @ whiten @ colour + synthetic.mean(axis=0)


def _power(covariance: np.ndarray, exponent: float) -> np.ndarray:
    """A symmetric matrix to a real power (eigenvalues floored at 1e-12)."""
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.maximum(values, 1e-12) ** exponent) @ vectors.T


def _neighbour_rows(
    synthetic: np.ndarray,
    observed: np.ndarray,
    synthetic_labels: np.ndarray | None,
    observed_labels: np.ndarray | None,
    neighbours: int,
    fit_rows: np.ndarray,
) -> np.ndarray:
    """The synthetic rows ``"coral_neighbours"`` aligns onto: the union of the ``neighbours``
    nearest (standardised label space) to each fitted star's preliminary estimate, widened
    until they can give a covariance."""
    d = observed.shape[1]
    if synthetic_labels is None or observed_labels is None:
        raise ValueError(
            "align_latents: method='coral_neighbours' needs synthetic_labels and "
            "observed_labels (preliminary estimates)"
        )
    syn_labels = np.asarray(synthetic_labels, dtype=np.float64)
    obs_labels = np.asarray(observed_labels, dtype=np.float64)
    if syn_labels.ndim != 2 or obs_labels.ndim != 2 or syn_labels.shape[1] != obs_labels.shape[1]:
        raise ValueError(
            f"align_latents: expected (n, k) synthetic_labels and observed_labels with the "
            f"same k, got {syn_labels.shape} and {obs_labels.shape}"
        )
    if syn_labels.shape[0] != synthetic.shape[0] or obs_labels.shape[0] != observed.shape[0]:
        raise ValueError(
            f"align_latents: {synthetic.shape[0]} synthetic latents but "
            f"{syn_labels.shape[0]} label rows, {observed.shape[0]} observed latents but "
            f"{obs_labels.shape[0]} estimate rows"
        )
    if int(neighbours) < 1:
        raise ValueError(f"align_latents: neighbours must be >= 1, got {neighbours}")
    spread = syn_labels.std(axis=0)
    spread[spread == 0] = 1.0
    obs_labels = obs_labels[np.unique(fit_rows)]
    order = np.concatenate(
        [  # each star's synthetic rows, nearest first (64 at a time)
            np.argsort(
                (((obs_labels[first : first + 64, None, :] - syn_labels[None]) / spread) ** 2).sum(
                    axis=-1
                ),
                axis=1,
                kind="stable",
            )
            for first in range(0, len(obs_labels), 64)
        ]
    )
    k = min(int(neighbours), syn_labels.shape[0])
    reference = np.unique(order[:, :k])
    # Stars with near-identical estimates share neighbours: widen until the reference can
    # give a covariance (2 x latent size rows) or holds the whole synthetic set.
    while reference.size < 2 * d and k < syn_labels.shape[0]:
        k = min(2 * k, syn_labels.shape[0])
        reference = np.unique(order[:, :k])
    return reference


def _preliminary_estimates(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    method: str,
    parameters: Sequence[str],
) -> np.ndarray | None:
    """The per-star estimates ``"coral_neighbours"`` starts from: the median of the regressors'
    predictions from the unaligned latents (``None`` for the other methods)."""
    if method != "coral_neighbours":
        return None
    preliminary, _ = predict_ensemble(regressors, observed_latents)
    return np.column_stack([np.median(preliminary[p], axis=0) for p in parameters])


def align_observed_latents(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    synthetic_latents: Mapping[str, np.ndarray],
    synthetic_labels: np.ndarray,
    *,
    method: str,
    parameters: Sequence[str] = PARAMETERS,
    neighbours: int = 20,
) -> dict[str, np.ndarray]:
    """:func:`align_latents` for every autoencoder of an ensemble.

    For ``"coral_neighbours"`` the preliminary estimate of each star is the median of the
    ``regressors``' predictions from the unaligned ``observed_latents``.

    Args:
        regressors: the trained latent regressors (:func:`train_regressors`).
        observed_latents, synthetic_latents: per autoencoder name, (n, d) latents.
        synthetic_labels: (n_syn, len(parameters)) labels of the synthetic latents.
        method: one of ``ALIGNMENTS``.
        parameters: the label columns, in the order of ``synthetic_labels``.
        neighbours: see :func:`align_latents`.

    Returns:
        Per autoencoder name, the aligned observed latents (float32).
    """
    estimates = _preliminary_estimates(regressors, observed_latents, method, parameters)
    return {
        name: align_latents(
            latent,
            synthetic_latents[name],
            method=method,
            synthetic_labels=synthetic_labels,
            observed_labels=estimates,
            neighbours=neighbours,
        ).astype(np.float32)
        for name, latent in observed_latents.items()
    }


def alignment_uncertainty(
    regressors: Sequence[LatentRegressor],
    observed_latents: Mapping[str, np.ndarray],
    synthetic_latents: Mapping[str, np.ndarray],
    synthetic_labels: np.ndarray,
    *,
    method: str,
    parameters: Sequence[str] = PARAMETERS,
    neighbours: int = 20,
    keep: int | None = None,
    resamples: int = 30,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """How much each star's estimate depends on which stars defined the latent alignment.

    The alignment (:func:`align_latents`) is estimated from the observed sample itself, so a
    sample of a few hundred stars leaves it uncertain (on the simulator, CORAL on gap-free
    spectra doubled the Teff error, 52 -> 103 K). This bootstraps it: ``resamples`` times, the
    observed stars are drawn with replacement, the map is fitted on the draw
    (``fit_rows``) and applied to every star, and the ensemble estimate (the median of the
    best ``keep`` regressors per parameter) is recomputed. The result, per parameter, is each
    star's standard deviation over the resamples;
    :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table` adds it in quadrature to the errors
    (``alignment_error=``). For ``"coral_neighbours"`` the
    preliminary estimates are those of :func:`align_observed_latents` (the unaligned ensemble
    median), and each draw's reference is the neighbours of the drawn stars.

    Args:
        regressors, observed_latents, synthetic_latents, synthetic_labels, method,
            parameters, neighbours: as for :func:`align_observed_latents`.
        keep: best-K regressors per parameter by validation MSE (as in the ensemble);
            ``None`` uses all.
        resamples: bootstrap draws (>= 2).
        seed: seed of the draws (the same seed gives the same errors).

    Returns:
        Per parameter, (n_stars,) standard deviations in physical units.

    Raises:
        ValueError: for fewer than 2 resamples, or as :func:`align_latents`.
    """
    if int(resamples) < 2:
        raise ValueError(f"alignment_uncertainty: resamples must be >= 2, got {resamples!r}")
    resamples = int(resamples)
    n_stars = {len(latent) for latent in observed_latents.values()}
    if len(n_stars) != 1:
        raise ValueError(
            f"alignment_uncertainty: the autoencoders' observed latents hold different numbers "
            f"of stars: {sorted(n_stars)}"
        )
    n = n_stars.pop()
    estimates = _preliminary_estimates(regressors, observed_latents, method, parameters)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    stacked = {
        name: np.concatenate(
            [
                align_latents(
                    latent,
                    synthetic_latents[name],
                    method=method,
                    synthetic_labels=synthetic_labels,
                    observed_labels=estimates,
                    neighbours=neighbours,
                    fit_rows=rows,
                )
                for rows in draws
            ]
        ).astype(np.float32)
        for name, latent in observed_latents.items()
    }
    predictions, mse = predict_ensemble(regressors, stacked)
    out = {}
    for parameter, values in predictions.items():
        rows = select_best(mse[parameter], keep) if keep is not None else slice(None)
        per_draw = np.median(values[rows].reshape(-1, resamples, n), axis=0)
        out[parameter] = per_draw.std(axis=0, ddof=1)
    return out
