"""Fit the simulator's line list to real PHOENIX-ACES spectra, and measure the agreement.

The simulator (:mod:`mdwarf_zoo.spectra.simulate`) draws its lines from a table of fitted
parameters, ``mdwarf_zoo/data/phoenix_linelist.ecsv``. This module makes that table from
PHOENIX-ACES spectra at a few Teff (log g 5.0, [M/H] 0 so far) and measures how well the
simulator then matches PHOENIX through the preprocessing chain. The spectra themselves never
enter the package (their licence forbids redistribution); only the fitted parameters do.

The fit. Each PHOENIX spectrum is divided by ``pi B_lambda(Teff)`` and scaled so that its
highest points (99.5th percentile) are 1. The model, the simulator's own forward model at
log g 5 and [M/H] 0, is a set of *line nodes* every ``node_step`` Angstrom (0.01 A by default)
plus *band knots* every ``band_step`` Angstrom (0.4 A), each with a strength at the reference
temperature and a temperature sensitivity (an effective energy ``chi`` in eV):
``strength(theta) = 10^(log_strength - chi (theta - theta_ref))``, ``theta = 5040 / T_layer``.
Line nodes get the simulator's Voigt profile (thermal + microturbulent Doppler width,
van der Waals damping), band knots a broad Gaussian. The line-to-continuum opacity goes
through the simulator's Milne-Eddington flux, the instrumental Gaussian of the files
(R = 94,600) and their pixel box, and the squared residuals of all Teff together, plus a small
L1 penalty on the strengths (it keeps the node list sparse) and a weak pull of ``chi`` towards
zero, are minimised by a bounded trust-region least-squares fit (``scipy.optimize.
least_squares``, LSMR on the exact Jacobian as a linear operator: the operators are
convolutions, so their adjoints are the same convolutions). Nodes whose strength stays
negligible at every fitted Teff are dropped; a node whose strength grows steeply as Teff
falls (``chi`` below ``MOLECULAR_CHI``) is labelled molecular, the rest atomic: the simulator
scales the two kinds differently with [M/H] and log g.

Examples:
    >>> from mdwarf_zoo.spectra import phoenix_calibration as pc
    >>> spectra = pc.load_tfg_spectra("shared/data/phoenix/tfg_carmenes_vis_convolved")
    >>> table = pc.fit_line_list(spectra)                       # doctest: +SKIP
    >>> pc.write_line_list(table, "phoenix_linelist.ecsv")      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy import sparse
from scipy.optimize import least_squares

from mdwarf_zoo.spectra import simulate
from mdwarf_zoo.spectra.grid import Spectrum, WavelengthGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor

__all__ = [
    "MOLECULAR_CHI",
    "FitSettings",
    "candidate_line_list",
    "chain_correlations",
    "extrapolation_correlation",
    "load_eniric_sample",
    "fit_line_list",
    "load_tfg_spectra",
    "observed_gap",
    "prepared_phoenix",
    "prepared_simulator",
    "write_line_list",
]

logger = logging.getLogger(__name__)

#: Nodes with chi below this (eV) strengthen faster towards cool Teff than any neutral-atom
#: line relative to the H- continuum can (about chi_exc - 2 eV): they are labelled molecular.
MOLECULAR_CHI = -4.0
_TFG_RESOLVING_POWER = 94600.0
_TFG_FILE = "file_{teff}.7z"
_LOG_STRENGTH_BOUNDS = (-9.0, 1.5)


@dataclass(frozen=True)
class FitSettings:
    """Choices of the fit (defaults: those of the shipped table).

    Attributes:
        data_range: PHOENIX wavelengths fitted, Angstrom (the MB24 window 8800-8835 plus
            margins).
        node_range: wavelengths of the line nodes, Angstrom (a little wider than the data, so
            that lines just outside still shape its edges).
        node_step: spacing of the line nodes, Angstrom.
        band_step: spacing of the band knots, Angstrom; their Gaussian sigma is the same.
        resolving_power: R of the PHOENIX files (TFG: 94,600).
        pixel_width: width of the files' flux-conserving pixels at the window, Angstrom.
        l1: penalty on the sum of the strengths at the reference temperature.
        chi_prior: weight of the pull of chi towards zero (per node, per eV^2).
        chi_bounds: allowed chi, eV.
        curvature_bound: largest |curvature| of the band knots (log10 strength changes by
            ``curvature * (theta - theta_ref)^2``; 100 is 1 dex at the fitted range's ends).
        evaluations: outer (trust-region) iterations of the least-squares fit.
        lsmr_iterations: inner LSMR iterations per outer one.
        min_strength: nodes weaker than this (Angstrom, at every fitted Teff) are dropped.
    """

    data_range: tuple[float, float] = (8776.0, 8859.0)
    node_range: tuple[float, float] = (8773.0, 8862.0)
    node_step: float = 0.01
    band_step: float = 0.4
    resolving_power: float = _TFG_RESOLVING_POWER
    pixel_width: float = 0.0333
    l1: float = 2e-3
    chi_prior: float = 1e-7
    chi_bounds: tuple[float, float] = (-20.0, 4.0)
    curvature_bound: float = 100.0
    evaluations: int = 40
    lsmr_iterations: int = 80
    min_strength: float = 2e-5


def load_tfg_spectra(
    folder: str | Path, teffs: tuple[int, ...] = (2300, 2400, 2500, 2600, 2700, 2800),
    window: tuple[float, float] = (8700.0, 8950.0),
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Read the TFG PHOENIX-ACES files (``file_<Teff>.7z``, one CSV ``wl,flux`` each).

    Args:
        folder: the folder holding the ``.7z`` files (see the shared data's PROVENANCE.md).
        teffs: the Teff to read, K.
        window: wavelengths kept, Angstrom (vacuum).

    Returns:
        ``{teff: (wavelength, flux)}``, Angstrom and erg/s/cm^2/cm.

    Raises:
        FileNotFoundError: when a file is missing.
        ImportError: without ``py7zr`` (the ``test`` extra).
    """
    import py7zr

    folder = Path(folder)
    spectra = {}
    with tempfile.TemporaryDirectory() as scratch:
        for teff in teffs:
            archive = folder / _TFG_FILE.format(teff=teff)
            if not archive.is_file():
                raise FileNotFoundError(f"PHOENIX file {archive} is missing")
            with py7zr.SevenZipFile(archive) as handle:
                handle.extract(path=scratch, targets=[f"file_{teff}.csv"])
            table = np.loadtxt(Path(scratch) / f"file_{teff}.csv", delimiter=",", skiprows=1)
            keep = (table[:, 0] >= window[0]) & (table[:, 0] <= window[1])
            spectra[int(teff)] = (table[keep, 0], table[keep, 1])
    return spectra


# ----------------------------------------------------------------------------------------------
# The measuring chain


def prepared_phoenix(wavelength: np.ndarray, flux: np.ndarray, vsini: float = 2.0,
                     resolving_power: float = 94600.0) -> np.ndarray:
    """A TFG spectrum (already at R = 94,600) through ``Preprocessor``, rotated by ``vsini``."""

    spectrum = Spectrum(wavelength, flux, metadata={"resolving_power": _TFG_RESOLVING_POWER})
    return Preprocessor(resolving_power=resolving_power)(spectrum, vsini=vsini).flux


def prepared_simulator(teff: float, logg: float = 5.0, metallicity: float = 0.0,
                       vsini: float = 2.0, resolving_power: float = 94600.0) -> np.ndarray:
    """``simulate.phoenix_flux`` (unbroadened) through the same ``Preprocessor`` chain."""

    grid = WavelengthGrid(8790.0, 8845.0, 0.01)
    flux = simulate.phoenix_flux([[teff, logg, metallicity, 0.0]], grid)[0]
    spectrum = Spectrum(grid.wavelength, flux)
    return Preprocessor(resolving_power=resolving_power)(spectrum, vsini=vsini).flux


def chain_correlations(
    spectra: dict[int, tuple[np.ndarray, np.ndarray]], vsini: float = 2.0
) -> dict[str, object]:
    """Line-depth correlations between the simulator and PHOENIX through the chain.

    Both sides go through ``Preprocessor(resolving_power=94600)`` with ``vsini`` km/s of
    rotation onto the MB24 grid (8800-8835 A); the simulator at log g 5, [M/H] 0.

    Returns:
        ``{"per_teff": {teff: corr(1 - simulator, 1 - phoenix)}, "change": corr of
        (coolest - hottest) between the two, "phoenix_pairs": {(t1, t2): corr between
        PHOENIX spectra}}``.
    """
    teffs = sorted(spectra)
    phoenix = {t: prepared_phoenix(*spectra[t], vsini=vsini) for t in teffs}
    model = {t: prepared_simulator(t, vsini=vsini) for t in teffs}
    per_teff = {t: float(np.corrcoef(1 - model[t], 1 - phoenix[t])[0, 1]) for t in teffs}
    low, high = teffs[0], teffs[-1]
    change = float(np.corrcoef(model[high] - model[low], phoenix[high] - phoenix[low])[0, 1])
    pairs = {(a, b): float(np.corrcoef(1 - phoenix[a], 1 - phoenix[b])[0, 1])
             for a in teffs for b in teffs if a < b}
    return {"per_teff": per_teff, "change": change, "phoenix_pairs": pairs,
            "phoenix": phoenix, "simulator": model}


def load_eniric_sample(path: str | Path, window: tuple[float, float] = (8780.0, 8860.0)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Read an eniric PHOENIX-ACES band sample (``.dat.gz``: wavelength in micron, flux).

    The Z-band sample (``lte03900-4.50-0.0``: Teff 3900 K, log g 4.5, [M/H] 0) covers the MB24
    window at 0.01 A and lies outside the fitted labels: a check of the extrapolation.

    Returns:
        ``(wavelength in Angstrom, flux)`` inside ``window``.
    """
    table = np.loadtxt(path)
    wavelength = table[:, 0] * 1e4
    keep = (wavelength >= window[0]) & (wavelength <= window[1])
    return wavelength[keep], table[keep, 1]


def extrapolation_correlation(wavelength: np.ndarray, flux: np.ndarray,
                              labels: tuple[float, float, float], vsini: float = 2.0
                              ) -> dict[str, float]:
    """Correlation and mean line depth of the simulator at ``labels`` (Teff, log g, [M/H])
    against an unbroadened PHOENIX spectrum, both through the ``Preprocessor`` chain."""

    phoenix = Preprocessor(resolving_power=94600.0)(Spectrum(wavelength, flux), vsini=vsini).flux
    model = prepared_simulator(*labels, vsini=vsini)
    return {"corr": float(np.corrcoef(1 - model, 1 - phoenix)[0, 1]),
            "depth_simulator": float(np.mean(1 - model)),
            "depth_phoenix": float(np.mean(1 - phoenix))}


def observed_gap(star: Spectrum, phoenix: tuple[np.ndarray, np.ndarray],
                 labels: tuple[float, float, float, float], *, seed: int = 0,
                 rv_range: tuple[float, float] = (-300.0, 300.0)) -> dict[str, object]:
    """A real star's residual against a PHOENIX spectrum beside the simulator's synthetic gap.

    The star (observed frame, ``metadata['resolving_power']`` known) is moved to its rest
    frame against the PHOENIX spectrum itself (all orders, then refined on the MB24 window),
    and both go through ``Preprocessor(resolving_power=<the star's R>)`` onto the MB24 grid,
    PHOENIX rotated by the star's v sin i. The simulator side is ``synthetic_spectra`` at
    ``labels`` and the star's R, and ``observe`` of it with the default ``GapConfig`` and S/N
    (seed ``seed``), both through the same ``Preprocessor``.

    Args:
        star: the observed spectrum, covering the MB24 window plus margin.
        phoenix: ``(wavelength, flux)`` of a TFG file (R = 94,600), as from
            :func:`load_tfg_spectra`; wide enough for the velocity search.
        labels: the star's Teff, log g, [M/H], v sin i.
        seed: seed of ``observe``.
        rv_range: the velocity search, km/s.

    Returns:
        ``"velocity"`` (the ``RadialVelocity``), ``"resolving_power"``, the prepared ``"star"``
        (a ``Spectrum``) and the prepared fluxes ``"phoenix"``, ``"synthetic"``,
        ``"observed"`` on the MB24 grid, and the statistics: ``"rms_real"`` (of star -
        PHOENIX), ``"rms_gap"`` (of observed - synthetic), ``"corr_residuals"`` (between the
        two residuals), ``"corr_lines"`` (between 1 - star and 1 - PHOENIX), the mean line
        depths ``"depth_star"`` and ``"depth_phoenix"``, and ``"noise"`` (the star's median
        prepared sigma; NaN without sigma).
    """
    from mdwarf_zoo.spectra.preprocess import Preprocessor
    from mdwarf_zoo.spectra.rv import to_rest_frame

    resolving_power = float(star.metadata["resolving_power"])
    preprocessor = Preprocessor(resolving_power=resolving_power)
    template = Spectrum(*phoenix, metadata={"resolving_power": _TFG_RESOLVING_POWER})
    rest, velocity = to_rest_frame(
        star, template, rv_min=rv_range[0], rv_max=rv_range[1],
        refine_window=(preprocessor.grid.start, preprocessor.grid.stop))
    prepared = preprocessor(rest)
    model = preprocessor(template, vsini=labels[3]).flux
    low, high = preprocessor.span
    grid = WavelengthGrid(low - 1.0, high + 1.0, 0.01)
    synthetic = simulate.synthetic_spectra([labels], grid, resolving_power=resolving_power)
    observed = simulate.observe(synthetic, [labels], grid=grid, resolving_power=resolving_power,
                                seed=seed)
    # Already at the star's R: the preprocessing only normalises and resamples them.
    sides = [preprocessor(Spectrum(grid.wavelength, flux[0],
                                   metadata={"resolving_power": resolving_power})).flux
             for flux in (synthetic, observed)]
    real, gap = prepared.flux - model, sides[1] - sides[0]
    return {
        "velocity": velocity, "resolving_power": resolving_power, "star": prepared,
        "phoenix": model, "synthetic": sides[0], "observed": sides[1],
        "rms_real": float(np.sqrt(np.mean(real**2))), "rms_gap": float(np.sqrt(np.mean(gap**2))),
        "corr_residuals": float(np.corrcoef(real, gap)[0, 1]),
        "corr_lines": float(np.corrcoef(1.0 - prepared.flux, 1.0 - model)[0, 1]),
        "depth_star": float(np.mean(1.0 - prepared.flux)),
        "depth_phoenix": float(np.mean(1.0 - model)),
        "noise": float("nan") if prepared.sigma is None else float(np.median(prepared.sigma)),
    }


# ----------------------------------------------------------------------------------------------
# The fit


def _planck(wavelength: np.ndarray, teff: float) -> np.ndarray:
    cm = wavelength * 1e-8
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    return math.pi * 2.0 * h * c**2 / cm**5 / np.expm1(h * c / (cm * k * teff))


def _target(wavelength: np.ndarray, flux: np.ndarray, teff: float) -> np.ndarray:
    relative = flux / _planck(wavelength, teff)
    return relative / np.percentile(relative, 99.5)


def _interpolation_matrix(points: np.ndarray, start: float, step: float, size: int
                          ) -> sparse.csr_matrix:
    """Linear interpolation from a uniform grid onto ``points`` (rows: points)."""
    position = (points - start) / step
    left = np.clip(np.floor(position).astype(np.int64), 0, size - 2)
    weight = position - left
    rows = np.repeat(np.arange(points.size), 2)
    cols = np.stack([left, left + 1], axis=1).ravel()
    values = np.stack([1.0 - weight, weight], axis=1).ravel()
    return sparse.csr_matrix((values, (rows, cols)), shape=(points.size, size))


class _Problem:
    """The forward model and its gradient over all fitted Teff."""

    def __init__(self, spectra: dict, settings: FitSettings):
        self.settings = settings
        low, high = settings.node_range
        self.nodes = np.round(np.arange(low, high + 1e-9, settings.node_step), 6)
        self.knots = np.arange(low, high + 1e-9, settings.band_step)
        self.fine = simulate.padded_fine_grid(low, high)
        step = self.fine[1] - self.fine[0]
        self.step = step
        size = self.fine.size
        self.line_deposit = simulate.deposit_matrix(self.fine, self.nodes)
        self.band_deposit = simulate.deposit_matrix(self.fine, self.knots)
        frequency = np.fft.rfftfreq(size, step)
        centre = 0.5 * (low + high)
        sigma_r = centre / settings.resolving_power / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        self.instrument = np.exp(-2.0 * (math.pi * sigma_r * frequency) ** 2) * np.sinc(
            frequency * settings.pixel_width)
        self.teffs = sorted(spectra)
        labels = np.array([[t, 5.0, 0.0, 0.0] for t in self.teffs], dtype=np.float64)
        layer = simulate._layer(labels)
        self.dtheta = layer["theta"] - simulate.THETA_REF
        self.beta = simulate._source_gradient(labels[:, 0])
        self.line_transfer = simulate.line_transfer(frequency, centre, layer, 1.0)
        self.band_transfer = simulate.band_transfer(frequency, settings.band_step)
        self.data = []
        for index, teff in enumerate(self.teffs):
            wavelength, flux = spectra[teff]
            keep = (wavelength >= settings.data_range[0]) & (wavelength <= settings.data_range[1])
            target = _target(wavelength, flux, teff)[keep]
            sample = _interpolation_matrix(wavelength[keep], self.fine[0], step, size)
            self.data.append((target, sample, sample.T.tocsr(), index))
        self.n_nodes, self.n_knots = self.nodes.size, self.knots.size
        self.n_points = sum(d[0].size for d in self.data)

    def split(self, x: np.ndarray):
        """``(log_strength, chi, curvature)``: the last for the band knots only."""
        n = self.n_nodes + self.n_knots
        return x[:n], x[n: 2 * n], x[2 * n:]

    def _exponent(self, log_strength, chi, curvature, t: int) -> np.ndarray:
        exponent = log_strength - chi * self.dtheta[t]
        exponent[self.n_nodes:] -= curvature * self.dtheta[t] ** 2
        return exponent

    def _forward(self, x: np.ndarray):
        log_strength, chi, curvature = self.split(x)
        states = []
        for target, sample, _, t in self.data:
            strength = 10.0 ** self._exponent(log_strength, chi, curvature, t)
            lines = self.line_deposit @ strength[: self.n_nodes]
            band = self.band_deposit @ strength[self.n_nodes:]
            eta = np.fft.irfft(np.fft.rfft(lines) * self.line_transfer[t]
                               + np.fft.rfft(band) * self.band_transfer, self.fine.size)
            eta = np.clip(eta, 0.0, None)
            beta = self.beta[t]
            flux = (1.0 + beta / (1.0 + eta)) / (1.0 + beta)
            observed = np.fft.irfft(np.fft.rfft(flux - 1.0) * self.instrument,
                                    self.fine.size) + 1.0
            slope = -beta / ((1.0 + beta) * (1.0 + eta) ** 2)
            states.append((sample @ observed - target, strength, slope))
        return states

    def residuals(self, x: np.ndarray) -> np.ndarray:
        states = self._forward(x)
        self._cache = (x.copy(), states)
        log_strength, chi, curvature = self.split(x)
        settings = self.settings
        return np.concatenate([s[0] for s in states]
                              + [np.sqrt(settings.l1 * 10.0**log_strength),
                                 math.sqrt(settings.chi_prior) * chi,
                                 math.sqrt(settings.chi_prior) * curvature])

    def jacobian(self, x: np.ndarray):
        from scipy.sparse.linalg import LinearOperator

        if getattr(self, "_cache", None) is None or not np.array_equal(self._cache[0], x):
            self.residuals(x)
        states = self._cache[1]
        log_strength, _, _ = self.split(x)
        settings = self.settings
        n = log_strength.size
        k = self.n_knots
        ln10 = math.log(10.0)
        prior = 0.5 * ln10 * np.sqrt(settings.l1 * 10.0**log_strength)
        root = math.sqrt(settings.chi_prior)
        size = self.fine.size
        offsets = np.cumsum([0] + [d[0].size for d in self.data])

        def matvec(v):
            v = np.ravel(v)
            da, dchi, dcurvature = v[:n], v[n: 2 * n], v[2 * n:]
            out = []
            for (_, sample, _, t), (_, strength, slope) in zip(self.data, states, strict=True):
                change = da - self.dtheta[t] * dchi
                change[self.n_nodes:] -= self.dtheta[t] ** 2 * dcurvature
                ds = strength * ln10 * change
                deta = np.fft.irfft(
                    np.fft.rfft(self.line_deposit @ ds[: self.n_nodes]) * self.line_transfer[t]
                    + np.fft.rfft(self.band_deposit @ ds[self.n_nodes:]) * self.band_transfer,
                    size)
                dflux = np.fft.irfft(np.fft.rfft(slope * deta) * self.instrument, size)
                out.append(sample @ dflux)
            return np.concatenate(out + [prior * da, root * dchi, root * dcurvature])

        def rmatvec(r):
            r = np.ravel(r)
            ga = prior * r[offsets[-1]: offsets[-1] + n]
            gchi = root * r[offsets[-1] + n: offsets[-1] + 2 * n]
            gcurvature = root * r[offsets[-1] + 2 * n:]
            for i, ((_, _, sample_t, t), (_, strength, slope)) in enumerate(
                    zip(self.data, states, strict=True)):
                g = sample_t @ r[offsets[i]: offsets[i + 1]]
                g = slope * np.fft.irfft(np.fft.rfft(g) * self.instrument, size)
                spectrum = np.fft.rfft(g)
                g_strength = np.concatenate([
                    self.line_deposit.T @ np.fft.irfft(spectrum * self.line_transfer[t], size),
                    self.band_deposit.T @ np.fft.irfft(spectrum * self.band_transfer, size)])
                common = g_strength * strength * ln10
                ga = ga + common
                gchi = gchi - common * self.dtheta[t]
                gcurvature = gcurvature - common[self.n_nodes:] * self.dtheta[t] ** 2
            return np.concatenate([ga, gchi, gcurvature])

        m = offsets[-1] + 2 * n + k
        return LinearOperator((m, 2 * n + k), matvec=matvec, rmatvec=rmatvec,
                              dtype=np.float64)

    def start(self) -> np.ndarray:
        """A first guess: each Teff's opacity from the Milne-Eddington inversion of its
        flux at the nodes, regressed on theta node by node."""
        logs = []
        for target, sample, _, t in self.data:
            beta = self.beta[t]
            points = sample @ self.fine  # the data's wavelengths
            flux = np.interp(self.nodes, points, target)
            floor = 1.0 / (1.0 + beta)
            flux = np.clip(flux, floor + 0.02, 1.0)
            eta = beta / (flux * (1.0 + beta) - 1.0) - 1.0
            logs.append(np.log10(np.clip(eta, 1e-3, None) * self.settings.node_step * 0.5))
        logs = np.array(logs)
        dtheta = self.dtheta - self.dtheta.mean()
        slope = (dtheta @ (logs - logs.mean(axis=0))) / (dtheta @ dtheta)
        chi = np.clip(-slope, *self.settings.chi_bounds)
        log_strength = logs.mean(axis=0) - chi * (0.0 - self.dtheta.mean())
        band_log = np.full(self.n_knots, -2.5)
        band_chi = np.full(self.n_knots, -5.0)
        return np.concatenate([log_strength, band_log, chi, band_chi, np.zeros(self.n_knots)])


def fit_line_list(
    spectra: dict[int, tuple[np.ndarray, np.ndarray]],
    settings: FitSettings | None = None,
    sources: list[str] | None = None,
):
    """Fit line nodes and band knots to PHOENIX spectra at log g 5.0, [M/H] 0.

    Args:
        spectra: ``{teff: (wavelength, flux)}`` as from :func:`load_tfg_spectra` (vacuum A,
            any flux unit; R = ``settings.resolving_power``).
        settings: the fit's choices; default ``FitSettings()``.
        sources: names of the files fitted, recorded in the table's provenance.

    Returns:
        An ``astropy.table.QTable`` with columns ``wavelength`` (A, vacuum), ``log_strength``
        (log10 of the line-to-continuum opacity integral, A, at ``theta_ref``), ``chi``
        (eV: ``d log10 strength / d theta = -chi``) and ``kind`` (``atomic``, ``molecular``
        or ``band``), and its provenance in ``meta``.
    """

    settings = settings or FitSettings()
    problem = _Problem(spectra, settings)
    n, k = problem.n_nodes + problem.n_knots, problem.n_knots
    low = np.concatenate([np.full(n, _LOG_STRENGTH_BOUNDS[0]),
                          np.full(n, settings.chi_bounds[0]),
                          np.full(k, -settings.curvature_bound)])
    high = np.concatenate([np.full(n, _LOG_STRENGTH_BOUNDS[1]),
                           np.full(n, settings.chi_bounds[1]),
                           np.full(k, settings.curvature_bound)])
    x0 = np.clip(problem.start(), low + 1e-6, high - 1e-6)
    # chi moves strengths by chi * dtheta (|dtheta| <= 0.1), curvature by curvature * dtheta^2:
    # scale the trust region accordingly.
    spread = float(np.abs(problem.dtheta).max())
    scale = np.concatenate([np.ones(n), np.full(n, 1.0 / spread), np.full(k, 1.0 / spread**2)])
    result = least_squares(problem.residuals, x0, jac=problem.jacobian, bounds=(low, high),
                           method="trf", tr_solver="lsmr", x_scale=scale,
                           tr_options={"maxiter": settings.lsmr_iterations},
                           max_nfev=settings.evaluations)
    return _table(problem, result.x, int(result.nfev), sources)


def _table(problem: _Problem, x: np.ndarray, iterations: int, sources: list[str] | None):

    settings = problem.settings
    residuals = [state[0] for state in problem._forward(x)]
    rms = math.sqrt(sum(float(r @ r) for r in residuals) / problem.n_points)
    rms_per_teff = {t: round(math.sqrt(float(r @ r) / r.size), 5)
                    for t, r in zip(problem.teffs, residuals, strict=True)}
    logger.info("fit: %d evaluations, rms %.4f", iterations, rms)
    log_strength, chi, band_curvature = problem.split(x)
    curvature = np.concatenate([np.zeros(problem.n_nodes), band_curvature])
    strongest = log_strength - np.minimum(chi * problem.dtheta.min(), chi * problem.dtheta.max())
    keep = strongest > math.log10(settings.min_strength)
    keep[problem.n_nodes:] = True
    wavelength = np.concatenate([problem.nodes, problem.knots])
    kind = np.where(chi < MOLECULAR_CHI, "molecular", "atomic").astype("<U9")
    kind[problem.n_nodes:] = "band"
    table = Table(
        {"wavelength": np.round(wavelength[keep], 4), "log_strength": np.round(
            log_strength[keep], 4), "chi": np.round(chi[keep], 4),
         "curvature": np.round(curvature[keep], 4), "kind": kind[keep]})
    table["wavelength"].unit = "Angstrom"
    table["wavelength"].description = "vacuum wavelength of the line node or band knot"
    table["log_strength"].description = (
        "log10 of the integrated line-to-continuum opacity (Angstrom) at theta_ref, "
        "log g 5.0, [M/H] 0")
    table["chi"].unit = "eV"
    table["chi"].description = "temperature sensitivity: log10 strength = log_strength - " \
        "chi (theta - theta_ref), theta = 5040 K / T_layer"
    table["curvature"].unit = "eV"
    table["curvature"].description = (
        "band knots only: log10 strength -= curvature (theta - theta_ref)^2, with theta "
        "held inside the fitted range (theta_min..theta_max) for this term")
    table["kind"].description = (
        f"atomic, molecular (chi < {MOLECULAR_CHI:g} eV) or band (broad Gaussian)")
    table.meta.update({
        "title": "mdwarf_zoo simulator line list fitted to PHOENIX-ACES",
        "fitted_to": "PHOENIX-ACES-AGSS-COND-2011 (Husser et al. 2013, A&A 553, A6), "
        "log g 5.0, [M/H] 0.0, Teff " + ", ".join(str(t) for t in problem.teffs) + " K, "
        "as convolved to R = 94,600 by R. Garcia (GitHub RaquelGarciaP/TFG, NewLibrary, "
        "commit ce69f85); the spectra are not included, only these fitted parameters",
        "sources": list(sources or []),
        "theta_ref": float(simulate.THETA_REF),
        "teff_ref": float(simulate.TEFF_REF),
        "theta_min": float(simulate.THETA_REF + problem.dtheta.min()),
        "theta_max": float(simulate.THETA_REF + problem.dtheta.max()),
        "band_sigma": float(settings.band_step),
        "molecular_chi": MOLECULAR_CHI,
        "settings": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in settings.__dict__.items()},
        "fit_rms": round(rms, 5),
        "fit_rms_per_teff": rms_per_teff,
        "fit_evaluations": iterations,
        "made_by": "benchmarks/fit_linelist_phoenix.py "
        "(mdwarf_zoo.spectra.phoenix_calibration.fit_line_list)",
        "date": datetime.date.today().isoformat(),
    })
    return table


@contextlib.contextmanager
def candidate_line_list(path: str | Path) -> Iterator[None]:
    """Make the simulator use the table at ``path`` instead of the packaged one, for a while.

    For measuring a fit (e.g. a hold-out fit) before it replaces
    ``mdwarf_zoo/data/phoenix_linelist.ecsv``; worker processes started inside inherit it.
    """
    previous = simulate._table_override
    simulate._table_override = str(Path(path).resolve())
    # The file may have been rewritten since it was last read.
    simulate._read_table.cache_clear()
    simulate.line_list.cache_clear()
    try:
        yield
    finally:
        simulate._table_override = previous
        simulate._read_table.cache_clear()
        simulate.line_list.cache_clear()


def write_line_list(table, path: str | Path) -> Path:
    """Write a fitted table as ECSV (with its provenance in the header)."""
    path = Path(path)
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path
