"""Domain-gap diagnostics and the comparison with literature parameters.

Gap metrics (Mas-Buitrago et al. 2024, MB24, Sect. 4):

* :func:`nearest_neighbour_distances`: Euclidean distance from each observed spectrum to its
  nearest synthetic neighbour (``scipy.spatial.cKDTree``); MB24's means are 2.72 in flux space
  and 0.086 in the 32-d latent space after transfer.
* :func:`ks_statistics`: per latent dimension, the two-sample Kolmogorov-Smirnov statistic
  between synthetic and observed latents.
* :func:`mmd`: the maximum mean discrepancy between the two latent sets with a Gaussian (RBF)
  kernel whose width is set by the median heuristic.
* :func:`reconstruction_mse`: how well an autoencoder reproduces the observed spectra
  (MB24: ~3e-3 before transfer, ~4e-4 after).
* :func:`latent_drift`: how far transfer moved the *synthetic* latents, in units of each
  dimension's spread: the regressors read coordinates learnt on the original encoder, so a
  drift re-codes what they read (a :class:`LatentDriftWarning` above 0.1 sigma).
* :func:`domain_gap_report`: all of them before and after transfer.

Literature comparison: :func:`compare_with_literature` joins a results table with a literature
table on the star identifier (CARMENES ``Karmn``, stripped of padding) and reports, per
parameter, N, the mean difference (literature minus ours), the rms of the differences and
Pearson's r.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from astropy.table import Table
from scipy import stats
from scipy.spatial import cKDTree

from mdwarf_zoo.models.inference import encode

__all__ = [
    "MB24_LITERATURE",
    "LiteratureSource",
    "compare_with_literature",
    "LATENT_DRIFT_WARNING",
    "LatentDriftWarning",
    "domain_gap_report",
    "drift_of_latents",
    "ks_statistics",
    "latent_drift",
    "match_literature",
    "median_heuristic",
    "mmd",
    "nearest_neighbour_distances",
    "read_table",
    "reconstruction_mse",
]

logger = logging.getLogger(__name__)

_MMD_MAX_POINTS = 2000

#: Above this drift (in sigma) of the synthetic latents, :func:`latent_drift` warns.
LATENT_DRIFT_WARNING = 0.1


class LatentDriftWarning(UserWarning):
    """Transfer moved the synthetic latents: regressors trained on the original encoder's
    latents no longer read the coordinates they learnt."""


def _as_2d(values: object, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{what}: expected a non-empty (n, d) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: has non-finite values")
    return array


def _same_width(a: np.ndarray, b: np.ndarray, function: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{function}: the two sets have {a.shape[1]} and {b.shape[1]} dimensions"
        )


def nearest_neighbour_distances(observed: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Distance from each observed vector to its nearest synthetic vector (Euclidean).

    Args:
        observed: (n_obs, d) spectra or latents.
        synthetic: (n_syn, d) in the same space.

    Returns:
        (n_obs,) distances; MB24 quotes their mean (2.72 in flux, 0.086 in latent space).

    Raises:
        ValueError: for empty, non-finite or differently sized inputs.

    Examples:
        >>> from mdwarf_zoo.diagnostics import nearest_neighbour_distances
        >>> nearest_neighbour_distances([[0.0, 3.0]], [[0.0, 0.0], [4.0, 3.0]]).tolist()
        [3.0]
    """
    observed = _as_2d(observed, "nearest_neighbour_distances: observed")
    synthetic = _as_2d(synthetic, "nearest_neighbour_distances: synthetic")
    _same_width(observed, synthetic, "nearest_neighbour_distances")
    distances, _ = cKDTree(synthetic).query(observed, k=1)
    return np.asarray(distances, dtype=np.float64)


def ks_statistics(synthetic: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per dimension, the two-sample Kolmogorov-Smirnov statistic D (0: same distribution).

    Args:
        synthetic: (n_syn, d) latents.
        observed: (n_obs, d) latents.

    Returns:
        (d,) statistics in [0, 1].
    """
    synthetic = _as_2d(synthetic, "ks_statistics: synthetic")
    observed = _as_2d(observed, "ks_statistics: observed")
    _same_width(synthetic, observed, "ks_statistics")
    return np.array([
        stats.ks_2samp(synthetic[:, j], observed[:, j]).statistic
        for j in range(synthetic.shape[1])
    ])


def median_heuristic(x: np.ndarray, y: np.ndarray) -> float:
    """The median of the non-zero pairwise Euclidean distances of the pooled sample.

    Raises:
        ValueError: when every pooled point is identical (no scale to take).
    """
    pooled = np.vstack([_as_2d(x, "median_heuristic: x"), _as_2d(y, "median_heuristic: y")])
    squared = _pairwise_squared(pooled, pooled)
    upper = squared[np.triu_indices(pooled.shape[0], k=1)]
    upper = upper[upper > 0]
    if upper.size == 0:
        raise ValueError("median_heuristic: all points are identical; pass bandwidth=")
    return float(np.sqrt(np.median(upper)))


def _pairwise_squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(squared, 0.0, None)


def mmd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    bandwidth: float | None = None,
    max_points: int = _MMD_MAX_POINTS,
    seed: int = 0,
) -> float:
    """Squared maximum mean discrepancy between two samples, Gaussian (RBF) kernel.

    ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` over all pairs (the biased
    V-statistic, >= 0, exactly 0 for identical samples), with
    ``k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2))``.

    Args:
        x: (n, d) first sample (e.g. synthetic latents).
        y: (m, d) second sample (e.g. observed latents).
        bandwidth: kernel width; default the median heuristic (:func:`median_heuristic`) of the
            pooled sample.
        max_points: a sample larger than this is randomly subsampled to it (the cost is
            quadratic).
        seed: seed of the subsampling.

    Returns:
        MMD^2, between 0 and 2.

    Raises:
        ValueError: for empty, non-finite or differently sized inputs, or a bandwidth <= 0.

    Examples:
        >>> from mdwarf_zoo.diagnostics import mmd
        >>> round(mmd([[0.0]], [[1.0]], bandwidth=1.0), 6)  # 2 - 2 exp(-1/2)
        0.786939
    """
    x = _as_2d(x, "mmd: x")
    y = _as_2d(y, "mmd: y")
    _same_width(x, y, "mmd")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_points:
        x = x[rng.choice(x.shape[0], max_points, replace=False)]
    if y.shape[0] > max_points:
        y = y[rng.choice(y.shape[0], max_points, replace=False)]
    if bandwidth is None:
        bandwidth = median_heuristic(x, y)
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"mmd: bandwidth must be > 0, got {bandwidth!r}")
    scale = 2.0 * float(bandwidth) ** 2
    kxx = np.exp(-_pairwise_squared(x, x) / scale).mean()
    kyy = np.exp(-_pairwise_squared(y, y) / scale).mean()
    kxy = np.exp(-_pairwise_squared(x, y) / scale).mean()
    return float(max(kxx + kyy - 2.0 * kxy, 0.0))


def reconstruction_mse(autoencoder: keras.Model, flux: np.ndarray, *,
                       batch_size: int = 256) -> float:
    """Mean squared reconstruction error over all pixels and spectra (inference mode)."""
    flux = _as_2d(flux, "reconstruction_mse: flux").astype(np.float32)
    reconstructed = autoencoder.predict(flux, batch_size=batch_size, verbose=0)
    return float(np.mean((np.asarray(reconstructed, dtype=np.float64) - flux) ** 2))


def drift_of_latents(before: np.ndarray, after: np.ndarray) -> float:
    """:func:`latent_drift` from the latents themselves: ``before`` under the original
    encoder, ``after`` under the fine-tuned one, of the same (n >= 2) synthetic spectra."""
    before = _as_2d(before, "latent_drift: original latents").astype(np.float64)
    after = _as_2d(after, "latent_drift: fine-tuned latents").astype(np.float64)
    _same_width(before, after, "latent_drift")
    if len(before) < 2 or len(after) != len(before):
        raise ValueError(
            f"latent_drift: needs the same >= 2 synthetic spectra through both encoders, got "
            f"{len(before)} and {len(after)} rows"
        )
    spread = before.std(axis=0)
    alive = spread > 1e-6 * max(float(spread.max()), 1e-30)
    if not alive.any():
        raise ValueError("latent_drift: the original encoder gives the same latents for every "
                         "spectrum; no spread to measure a drift against")
    shift = (after - before).mean(axis=0)[alive] / spread[alive]
    return float(np.sqrt(np.mean(shift**2)))


def latent_drift(
    original: keras.Model,
    tuned: keras.Model,
    synthetic_spectra: np.ndarray,
    *,
    batch_size: int = 256,
    warn: bool = True,
) -> float:
    """How far a fine-tuned encoder moved the latents of synthetic spectra.

    The root mean square, over latent dimensions, of the shift of the mean latent
    ``E'(x_syn) - E(x_syn)``, each in units of that dimension's standard deviation under the
    original encoder: ``sqrt(mean_d((mean(z'_d - z_d) / std(z_d))^2))``. Dimensions that never
    vary under the original encoder (dead units) are left out. 0 means the regressors trained
    on the original synthetic latents still read the coordinates they learnt; on the simulator
    MB24's transfer moves them by 0.3-0.9 sigma, even with no domain gap.

    Args:
        original: the autoencoder before transfer.
        tuned: its fine-tuned copy.
        synthetic_spectra: (n, pixels) synthetic spectra (n >= 2).
        batch_size: prediction batch size.
        warn: issue a :class:`LatentDriftWarning` above ``LATENT_DRIFT_WARNING`` (0.1 sigma).

    Returns:
        The drift in sigma.

    Raises:
        ValueError: for fewer than 2 spectra, or encoders with different latent sizes.
    """

    flux = _as_2d(synthetic_spectra, "latent_drift: synthetic_spectra")
    drift = drift_of_latents(
        encode(original, flux, batch_size=batch_size), encode(tuned, flux, batch_size=batch_size)
    )
    if warn and drift > LATENT_DRIFT_WARNING:
        warnings.warn(
            f"transfer moved the synthetic latents of {getattr(tuned, 'name', 'the model')!r} "
            f"by {drift:.2f} sigma (> {LATENT_DRIFT_WARNING}): regressors trained on the "
            "original encoder's latents read re-coded coordinates; consider transfer "
            "mode='anchored' or 'decoder_only', regressors on the fine-tuned encoder's "
            "synthetic latents, or no transfer",
            LatentDriftWarning,
            stacklevel=2,
        )
    return drift


def domain_gap_report(
    original: keras.Model,
    fine_tuned: keras.Model,
    synthetic_flux: np.ndarray,
    observed_flux: np.ndarray,
    *,
    batch_size: int = 256,
) -> dict[str, object]:
    """Every gap metric before and after transfer.

    "Before": observed spectra through the original encoder. "After": through the fine-tuned
    encoder (MB24's choice). Synthetic latents always come from the original encoder.

    Args:
        original: the autoencoder trained on synthetic spectra.
        fine_tuned: its copy returned by :func:`mdwarf_zoo.transfer`.
        synthetic_flux: (n_syn, pixels) synthetic spectra.
        observed_flux: (n_obs, pixels) observed spectra.
        batch_size: prediction batch size.

    Returns:
        A dict: ``flux_nn_distance`` (mean), ``latent_nn_distance_before`` / ``_after``
        (means), ``ks_before`` / ``ks_after`` (per-dimension arrays), ``ks_mean_before`` /
        ``_after``, ``mmd_before`` / ``_after``, ``reconstruction_mse_before`` / ``_after``,
        and ``latent_drift`` (:func:`latent_drift` of the synthetic spectra, in sigma).
    """

    synthetic_flux = _as_2d(synthetic_flux, "domain_gap_report: synthetic_flux")
    observed_flux = _as_2d(observed_flux, "domain_gap_report: observed_flux")
    syn = encode(original, synthetic_flux, batch_size=batch_size)
    before = encode(original, observed_flux, batch_size=batch_size)
    after = encode(fine_tuned, observed_flux, batch_size=batch_size)
    ks_before, ks_after = ks_statistics(syn, before), ks_statistics(syn, after)
    report = {
        "flux_nn_distance": float(nearest_neighbour_distances(observed_flux, synthetic_flux)
                                  .mean()),
        "latent_nn_distance_before": float(nearest_neighbour_distances(before, syn).mean()),
        "latent_nn_distance_after": float(nearest_neighbour_distances(after, syn).mean()),
        "ks_before": ks_before,
        "ks_after": ks_after,
        "ks_mean_before": float(ks_before.mean()),
        "ks_mean_after": float(ks_after.mean()),
        "mmd_before": mmd(syn, before),
        "mmd_after": mmd(syn, after),
        "reconstruction_mse_before": reconstruction_mse(original, observed_flux,
                                                        batch_size=batch_size),
        "reconstruction_mse_after": reconstruction_mse(fine_tuned, observed_flux,
                                                       batch_size=batch_size),
        "latent_drift": latent_drift(original, fine_tuned, synthetic_flux,
                                     batch_size=batch_size),
    }
    logger.info("domain gap: %s", {k: v for k, v in report.items() if np.ndim(v) == 0})
    return report


# -- literature ----------------------------------------------------------------------------------

# Column aliases of our parameters in results tables (ours and MB24's published one).
_RESULT_ALIASES = {
    "teff": ("teff", "Teff"),
    "logg": ("logg",),
    "mh": ("mh", "[M/H]", "[Fe/H]", "metallicity", "feh"),
    "vsini": ("vsini",),
}
_ID_ALIASES = ("id", "karmn", "identifier", "star", "name")


@dataclass(frozen=True)
class LiteratureSource:
    """A literature table and which of its columns hold our parameters.

    Attributes:
        name: a short label, e.g. ``"Marfil+21"``.
        filename: file name (relative to a folder given at use).
        columns: our parameter name -> the table's column, e.g. ``{"teff": "Teff1"}``.
        id_column: the identifier column (``Karmn`` for CARMENES tables).
    """

    name: str
    filename: str
    columns: Mapping[str, str]
    id_column: str = "Karmn"


#: The comparisons of MB24 (Table 3): Marfil+21 SteParSyn set 1 (its metallicity is the
#: corrected ``Corr1`` column: that reproduces MB24's -0.11 dex, ``[Fe/H]1`` gives -0.18),
#: Passegger+19 VIS solution, Schweitzer+19; files as in ``pedromasb/autoencoders-CARMENES``.
MB24_LITERATURE = (
    LiteratureSource("Marfil+21", "lit_mar21.csv",
                     {"teff": "Teff1", "logg": "logg1", "mh": "Corr1"}),
    LiteratureSource("Passegger+19", "lit_pass19.csv",
                     {"teff": "TeffV", "logg": "loggV", "mh": "[Fe/H]V"}),
    LiteratureSource("Schweitzer+19", "lit_schw19.csv",
                     {"teff": "Teff", "logg": "logg", "mh": "[Fe/H]"}),
)


def read_table(path: str | os.PathLike) -> Table:
    """Read a CSV, ECSV or FITS table (format from the suffix).

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for an unknown suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    formats = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise ValueError(f"{path}: unknown table suffix {suffix!r}; use .csv, .ecsv or .fits")
    return Table.read(path, format=formats[suffix])


def _find_column(table: Table, candidates: Sequence[str], what: str, where: str) -> str:
    lower = {name.strip().lower(): name for name in table.colnames}
    for candidate in candidates:
        if candidate in table.colnames:
            return candidate
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    raise ValueError(f"{where}: no {what} column (tried {list(candidates)}); has {table.colnames}")


def _values(table: Table, column: str) -> np.ndarray:
    data = table[column]
    values = np.asarray(np.ma.filled(np.ma.asarray(data, dtype=np.float64), np.nan))
    return values


def _identifiers(table: Table, column: str) -> list[str]:
    return [str(value).strip() for value in table[column]]


def match_literature(
    results: Table,
    literature: Table,
    columns: Mapping[str, str],
    *,
    results_id: str | None = None,
    literature_id: str = "Karmn",
    results_columns: Mapping[str, str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Pair our values with the literature's, per parameter, on the stripped star identifier.

    Args:
        results: our table (e.g. from :func:`mdwarf_zoo.pipeline.ensemble.ensemble_table`, or MB24's
            ``final_estimations.csv``).
        literature: the literature table.
        columns: our parameter name -> literature column (e.g. ``{"teff": "TeffV"}``).
        results_id: identifier column of ``results``; default the first of ``id``, ``karmn``,
            ``identifier``, ``star``, ``name`` (any case).
        literature_id: identifier column of ``literature`` (CARMENES: ``Karmn``).
        results_columns: our parameter name -> ``results`` column; default by alias
            (``teff``/``Teff``, ``logg``, ``mh``/``[M/H]``, ``vsini``).

    Returns:
        Per parameter ``(ours, theirs, identifiers)`` for the stars present in both tables with
        finite values on both sides (in the order of ``results``).

    Raises:
        ValueError: for a missing column or identifiers repeated in the literature table.
    """
    rid = results_id or _find_column(results, _ID_ALIASES, "identifier", "results")
    lid = _find_column(literature, [literature_id], "identifier", "literature")
    lit_ids = _identifiers(literature, lid)
    repeated = sorted({i for i in lit_ids if lit_ids.count(i) > 1})
    if repeated:
        raise ValueError(f"literature: identifiers {repeated[:5]} appear more than once")
    lit_index = {name: row for row, name in enumerate(lit_ids)}
    our_ids = _identifiers(results, rid)
    rows = [(i, lit_index[name]) for i, name in enumerate(our_ids) if name in lit_index]
    out = {}
    for parameter, lit_column in columns.items():
        ours_column = (results_columns or {}).get(parameter) or _find_column(
            results, _RESULT_ALIASES.get(parameter, (parameter,)), parameter, "results"
        )
        lit_column = _find_column(literature, [lit_column], parameter, "literature")
        ours_all, theirs_all = _values(results, ours_column), _values(literature, lit_column)
        ours = np.array([ours_all[i] for i, _ in rows])
        theirs = np.array([theirs_all[j] for _, j in rows])
        good = np.isfinite(ours) & np.isfinite(theirs)
        out[parameter] = (ours[good], theirs[good],
                          [our_ids[i] for (i, _), g in zip(rows, good, strict=True) if g])
    return out


def compare_with_literature(
    results: Table | str | os.PathLike,
    sources: Sequence[LiteratureSource] | Mapping[str, tuple[Table, Mapping[str, str]]] = (
        MB24_LITERATURE
    ),
    *,
    folder: str | os.PathLike | None = None,
    results_id: str | None = None,
    results_columns: Mapping[str, str] | None = None,
) -> Table:
    """N, mean difference (literature minus ours), rms and Pearson r per source and parameter.

    Args:
        results: our results table or its path.
        sources: :class:`LiteratureSource` entries (files read from ``folder``; default MB24's
            three comparisons), or a mapping ``name -> (table, {parameter: column})``.
        folder: where the sources' files are.
        results_id: identifier column of ``results`` (default found by alias).
        results_columns: our parameter name -> ``results`` column (default by alias).

    Returns:
        A table with columns ``literature``, ``parameter``, ``n``, ``mean_difference``,
        ``rms`` (root mean square of the differences) and ``pearson_r`` (NaN with fewer than 3
        pairs or no spread).

    Raises:
        FileNotFoundError: for a missing table.
        ValueError: for a missing column.

    Examples:
        >>> from mdwarf_zoo.diagnostics import compare_with_literature
        >>> compare_with_literature("final_estimations.csv", folder="tables/")  # doctest: +SKIP
    """
    if not isinstance(results, Table):
        results = read_table(results)
    if isinstance(sources, Mapping):
        entries = [(name, table, cols, "Karmn") for name, (table, cols) in sources.items()]
    else:
        base = Path(folder) if folder is not None else Path(".")
        entries = [(s.name, read_table(base / s.filename), s.columns, s.id_column)
                   for s in sources]
    rows = []
    for name, table, cols, id_column in entries:
        pairs = match_literature(results, table, cols, results_id=results_id,
                                 literature_id=id_column, results_columns=results_columns)
        for parameter, (ours, theirs, _) in pairs.items():
            difference = theirs - ours
            n = difference.size
            r = float("nan")
            if n >= 3 and np.std(ours) > 0 and np.std(theirs) > 0:
                r = float(stats.pearsonr(ours, theirs).statistic)
            rows.append((
                name, parameter, n,
                float(difference.mean()) if n else float("nan"),
                float(np.sqrt(np.mean(difference**2))) if n else float("nan"),
                r,
            ))
    return Table(rows=rows, names=("literature", "parameter", "n", "mean_difference", "rms",
                                   "pearson_r"),
                 dtype=(str, str, int, float, float, float))
