"""A spectrum simulator: a synthetic M-dwarf domain and an "observed" domain with a known gap.

**What it is.** A fast, deterministic physics model of M-dwarf spectra around 8800-8835 A,
for tests, demos and method studies (does transfer learning close a synthetic gap whose size
and sources are known?), whose lines are *fitted to PHOENIX-ACES*: at log g 5.0, [M/H] 0 and
2300-2800 K its line depths correlate 0.94-0.998 with real PHOENIX-ACES spectra through the
preprocessing chain (``docs/simulator.md``). **What it is not.** A model atmosphere: there
is no radiative transfer through a stratified atmosphere and no equation of state beyond a
one-layer Saha/Boltzmann estimate; outside the fitted labels the line strengths are
extrapolated with that physics (``docs/simulator.md`` says how far to trust it). Parameters
inferred from real spectra with networks trained here are not PHOENIX parameters.

The model (all steps smooth in every label):

1. One line-forming layer at ``T = 0.85 sqrt(Teff 3300 K)`` with a gas pressure that grows
   with log g (``P_g ~ g^0.65``, Gray 2005 ch. 9 scaling) and falls with [M/H] and Teff; the
   electron pressure follows from the Saha ionisation of the main electron donors (Na, K, Ca,
   Al, Mg, Fe, Si), and the continuum opacity from H- bound-free, ``kappa ~ P_e theta^2.5
   10^(0.754 theta)`` (Gray 2005, eq. 8.12).
2. The line opacity comes from a fitted table (``mdwarf_zoo/data/phoenix_linelist.ecsv``,
   made by ``mdwarf_zoo.spectra.phoenix_calibration``): line nodes every 0.01 A and broad
   band knots (Gaussian, sigma 0.4 A), each with a strength at ``THETA_REF`` and a
   temperature sensitivity ``chi``: ``log10 strength = log_strength - chi (theta -
   THETA_REF) + (kind's [M/H] and log g terms)``. Atomic nodes scale as the abundance over
   the H- continuum (``10^[M/H] kappa_ref / kappa``); molecular nodes and bands (``chi`` below
   -4 eV) as ``10^(1.2 [M/H] + 0.3 (log g - 5))``. Line nodes get a Voigt profile (thermal +
   1 km/s microturbulent Doppler width, van der Waals damping proportional to the hydrogen
   density, so growing with log g), computed for all nodes at once by FFT.
3. The line-to-continuum opacity ratio ``eta`` gives the Milne-Eddington flux
   ``F/F_c = (1 + beta / (1 + eta)) / (1 + beta)`` (Mihalas 1978, sec. 10-3; Gray 2005 ch. 13),
   with a source-function gradient ``beta`` that grows as Teff falls.
4. Computed on a grid twice as fine as the output (at most 0.005 A) over the window plus 5 A
   each side, then broadened by rotation and by the instrument with
   ``mdwarf_zoo.spectra.broadening`` and interpolated onto the output grid. The table covers
   8773-8862 A; outside it the spectrum is line-free.

Wavelengths are vacuum (the real-line identifications ``ATOMIC_LINES`` are converted from air
with ``air_to_vacuum``).

Sources:
    Husser, T.-O. et al. 2013, A&A 553, A6 (PHOENIX-ACES; the spectra the table is fitted to).
    Gray, D. F. 2005, The Observation and Analysis of Stellar Photospheres, 3rd ed.
    Mihalas, D. 1978, Stellar Atmospheres, 2nd ed.
    Asplund, M. et al. 2009, ARA&A 47, 481 (solar abundances).
    NIST Atomic Spectra Database (ionisation energies; Mg I 8806.76 line data).
    Ryabchikova, T. et al. 2015, Phys. Scr. 90, 054005 (VALD3), for the style and approximate
    values of the atomic line data (air wavelengths, lower-level excitation, log gf).
    Mas-Buitrago, P. et al. 2024, A&A 687, A205 (the window, R = 94,600 and the label ranges).
"""

from __future__ import annotations

import collections
import logging
import math
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from importlib.resources import files

import numpy as np
from astropy.table import Table
from scipy import sparse
from scipy.fft import next_fast_len
from scipy.special import voigt_profile
from tqdm.auto import tqdm

from mdwarf_zoo.labels import SET_LABEL_NAMES
from mdwarf_zoo.spectra.broadening import (
    SPEED_OF_LIGHT_KMS,
    air_to_vacuum,
    instrumental_broadening,
    rotational_broadening,
)
from mdwarf_zoo.spectra.grid import MB24_GRID, WavelengthGrid

__all__ = [
    "ATOMIC_LINES",
    "LABEL_NAMES",
    "LABEL_RANGES",
    "SEED_SCATTER",
    "TEFF_REF",
    "THETA_REF",
    "GapConfig",
    "Line",
    "line_list",
    "observe",
    "phoenix_flux",
    "synthetic_spectra",
    "validate_labels",
]

logger = logging.getLogger(__name__)

#: Column order of a label array.
LABEL_NAMES = SET_LABEL_NAMES
#: Labels the simulator accepts, inclusive (K, dex cgs, dex, km/s).
LABEL_RANGES = {
    "teff": (2300.0, 4600.0),
    "logg": (3.5, 6.0),
    "metallicity": (-1.5, 1.0),
    "vsini": (0.0, 100.0),
}
_LABEL_UNITS = {"teff": "K", "logg": "dex", "metallicity": "dex", "vsini": "km/s"}

_K_BOLTZMANN = 1.380649e-16  # erg/K
_AMU = 1.66053907e-24  # g
_MARGIN = 5.0  # Angstrom computed beyond each end of the output grid (MB24's margin)
_LINE_REACH = 8.0  # lines this far outside the computed range still contribute wings
_CHUNK = 128  # spectra computed together (memory ~ 128 x 12,000 x 8 bytes per array)

# Element data: solar abundance A(X) = log(N_X/N_H) + 12 (Asplund et al. 2009), first
# ionisation energy in eV (NIST ASD), atomic mass in amu.
ELEMENTS: dict[str, tuple[float, float, float]] = {
    "Na": (6.24, 5.139, 22.99),
    "Mg": (7.60, 7.646, 24.31),
    "Al": (6.45, 5.986, 26.98),
    "Si": (7.51, 8.152, 28.09),
    "K": (5.03, 4.341, 39.10),
    "Ca": (6.34, 6.113, 40.08),
    "Ti": (4.95, 6.828, 47.87),
    "Cr": (5.64, 6.767, 52.00),
    "Fe": (7.50, 7.902, 55.85),
    "Ni": (6.22, 7.640, 58.69),
}
_ELECTRON_DONORS = ("Na", "K", "Ca", "Al", "Mg", "Fe", "Si")


@dataclass(frozen=True)
class Line:
    """One absorption line.

    Attributes:
        species: element and ionisation stage, e.g. ``"Fe I"``.
        wavelength: vacuum wavelength, Angstrom.
        excitation: lower-level excitation potential, eV.
        log_gf: log10 of oscillator strength times statistical weight.
        log_gamma6: log10 of the van der Waals damping constant per hydrogen atom
            (rad s^-1 cm^3); -7.5 is typical of neutral metals.
        origin: ``"real"`` for identified lines, ``"phoenix"`` for the fitted nodes (see
            ``line_list``), ``"missing"`` for lines only the observed domain has.
    """

    species: str
    wavelength: float
    excitation: float
    log_gf: float
    log_gamma6: float = -7.5
    origin: str = "real"


# Real lines in and around the MB24 window: air wavelength (A), species, lower-level excitation
# (eV), log gf, log gamma6. Approximate values in the style of VALD3/NIST (Moore, Minnaert &
# Houtgast 1966 solar identifications); good to ~0.01 A and a few tenths of a dex in log gf.
_REAL_LINES_AIR = (
    (8757.19, "Fe I", 2.845, -2.03, -7.60),
    (8763.97, "Fe I", 4.652, -0.15, -7.30),
    (8772.87, "Al I", 4.022, -0.32, -7.20),
    (8773.90, "Al I", 4.022, -0.16, -7.20),
    (8793.34, "Fe I", 4.608, -0.10, -7.30),
    (8804.62, "Fe I", 2.279, -3.23, -7.70),
    (8806.76, "Mg I", 4.346, -0.14, -7.00),
    (8824.22, "Fe I", 2.198, -1.54, -7.70),
    (8838.43, "Fe I", 2.858, -1.98, -7.60),
    (8846.74, "Fe I", 4.990, -0.75, -7.30),
)

#: Identified real atomic lines near the window (vacuum wavelengths); the fitted table holds
#: their PHOENIX counterparts, and the observed domain's "missing" lines use the same data.
ATOMIC_LINES: tuple[Line, ...] = tuple(
    Line(species, float(air_to_vacuum(air)), chi, log_gf, gamma6)
    for air, species, chi, log_gf, gamma6 in _REAL_LINES_AIR
)

_FOREST_SPECIES = ("Fe I", "Ti I", "Cr I", "Ni I", "Si I", "Ca I", "Fe I", "Ti I")


def _random_lines(
    rng: np.random.Generator, n: int, low: float, high: float, origin: str, log_gf: tuple
) -> tuple[Line, ...]:
    species = rng.choice(_FOREST_SPECIES, n)
    wavelength = np.sort(rng.uniform(low, high, n))
    excitation = rng.uniform(0.8, 5.0, n)
    gf = rng.uniform(*log_gf, n)
    gamma6 = rng.uniform(-7.8, -7.2, n)
    return tuple(
        Line(str(s), float(w), float(x), float(g), float(d), origin)
        for s, w, x, g, d in zip(species, wavelength, excitation, gf, gamma6, strict=True)
    )


#: Scatter (dex) of the node strengths for a line-list seed other than 0.
SEED_SCATTER = 0.1


def _seed_offsets(seed: int) -> np.ndarray | None:
    """Per-node log10 strength offsets of ``seed`` (None for seed 0: the table as fitted)."""
    if int(seed) == 0:
        return None
    table = _fitted_table()
    rng = np.random.default_rng([0x5EED, int(seed)])
    offsets = rng.normal(0.0, SEED_SCATTER, table.wavelength.size)
    offsets[table.band] = 0.0
    return offsets


@lru_cache(maxsize=8)
def line_list(seed: int = 0) -> tuple[Line, ...]:
    """The simulator's line list: the nodes fitted to PHOENIX-ACES, as ``Line`` records.

    The list is ``mdwarf_zoo/data/phoenix_linelist.ecsv`` (see
    ``mdwarf_zoo.spectra.phoenix_calibration``): line nodes every 0.01 A and broad band knots,
    fitted to PHOENIX-ACES at 2300-2800 K, log g 5.0, [M/H] 0. For these records ``species``
    is the node's kind (``"atomic"``, ``"molecular"`` or ``"band"``), ``excitation`` its
    temperature sensitivity chi (eV; ``log10 strength = log_gf - chi (theta - theta_ref)``),
    ``log_gf`` the log10 of its strength (A) at ``THETA_REF``, and ``origin`` is
    ``"phoenix"``. Seed 0 is the table as fitted; any other seed shifts every line node's
    strength by a seeded Gaussian error of ``SEED_SCATTER`` dex (another "universe" of the
    same shape, e.g. for studying line-list errors).

    Args:
        seed: the line-list seed; the same seed gives the same list.

    Returns:
        Records sorted by wavelength (vacuum, Angstrom).
    """
    table = _fitted_table()
    offsets = _seed_offsets(seed)
    log_strength = table.log_strength if offsets is None else table.log_strength + offsets
    order = np.argsort(table.wavelength, kind="stable")
    return tuple(
        Line(str(table.kind[i]), float(table.wavelength[i]), float(table.chi[i]),
             float(log_strength[i]), _LOG_GAMMA6, "phoenix")
        for i in order
    )


def _missing_lines(seed: int, n: int) -> tuple[Line, ...]:
    """Lines that real stars have and the synthetic list lacks (observed domain only).

    Rendered as explicit Voigt lines with the one-layer Saha/Boltzmann strengths
    (``_line_strength``), on top of the fitted table.
    """
    rng = np.random.default_rng([0x0B5, int(seed)])
    return _random_lines(rng, n, 8780.0, 8855.0, "missing", (-3.2, -1.8))


# ----------------------------------------------------------------------------------------------
# Physics


@dataclass(frozen=True)
class _Physics:
    """What differs between the synthetic and the observed physics."""

    lines: tuple[Line, ...] = ()
    damping_scale: float = 1.0
    molecular_scale: float = 1.0
    #: per-row log10 offsets of the fitted table's strengths (None: the table as fitted)
    log_strength_offsets: np.ndarray | None = field(default=None, compare=False)


def _layer(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Temperature, pressures and continuum opacity of the line-forming layer, per row."""
    teff, logg, metallicity = labels[:, 0], labels[:, 1], labels[:, 2]
    # Lines form at ~0.85 Teff; the geometric mean with 3300 K compresses the temperature
    # range as a stratified atmosphere does (cool stars' lines form relatively deeper).
    temperature = 0.85 * np.sqrt(teff * 3300.0)
    theta = 5040.0 / temperature
    log_pg = 5.8 + 0.65 * (logg - 5.0) - 0.3 * metallicity - 0.4 * (teff - 3000.0) / 1000.0
    saha = 2.5 * np.log10(temperature) - 0.1762  # log of the Saha factor without exp(-chi/kT)
    donors = sum(
        10.0 ** (ELEMENTS[e][0] - 12.0 + metallicity + saha - theta * ELEMENTS[e][1])
        for e in _ELECTRON_DONORS
    )
    log_pe = 0.5 * (log_pg + np.log10(donors))
    log_kappa = log_pe + 2.5 * np.log10(theta) + 0.754 * theta
    n_hydrogen = 10.0**log_pg / (_K_BOLTZMANN * temperature)
    return {
        "temperature": temperature,
        "theta": theta,
        "log_pg": log_pg,
        "log_pe": log_pe,
        "saha": saha,
        "log_kappa": log_kappa,
        "n_hydrogen": n_hydrogen,
        "metallicity": metallicity,
        "teff": teff,
        "logg": logg,
    }


# Sets the absolute line strength: Fe I 8824 at 3500 K, log g 5, [M/H] 0 has EW ~ 0.2 A.
_LOG_STRENGTH_ZERO = 11.4


def _line_strength(line: Line, layer: dict[str, np.ndarray]) -> np.ndarray:
    """Integrated line opacity relative to the continuum, Angstrom (weak-line EW scale)."""
    element, stage = line.species.split()
    abundance, chi_ion, _ = ELEMENTS[element]
    theta = layer["theta"]
    log_ratio = layer["saha"] - theta * chi_ion - layer["log_pe"]  # log N_II / N_I
    ionised = 1.0 / (1.0 + 10.0 ** (-log_ratio))
    fraction = ionised if stage == "II" else 1.0 - ionised
    log_strength = (
        _LOG_STRENGTH_ZERO
        + line.log_gf
        + abundance
        - 12.0
        + layer["metallicity"]
        + np.log10(fraction)
        - theta * line.excitation
        - layer["log_kappa"]
        + 2.0 * math.log10(line.wavelength / 8800.0)
    )
    return 10.0**log_strength


def _line_opacity(
    wavelength: np.ndarray, layer: dict[str, np.ndarray], physics: _Physics
) -> np.ndarray:
    """Sum of Voigt profiles of the atomic lines, shape (n, n_pixels)."""
    n = layer["teff"].size
    opacity = np.zeros((n, wavelength.size))
    temperature = layer["temperature"][:, None]
    for line in physics.lines:
        if not wavelength[0] - _LINE_REACH < line.wavelength < wavelength[-1] + _LINE_REACH:
            continue
        strength = _line_strength(line, layer)[:, None]
        mass = ELEMENTS[line.species.split()[0]][2] * _AMU
        velocity = np.sqrt(_K_BOLTZMANN * temperature / mass) * 1e-5  # km/s, 1-D thermal
        sigma = line.wavelength / SPEED_OF_LIGHT_KMS * np.sqrt(velocity**2 + 0.5)  # + 1 km/s
        # van der Waals: FWHM (rad/s) = gamma6 N_H (T/5000)^0.3; HWHM in A = lambda^2/(4 pi c).
        gamma_rad = 10.0**line.log_gamma6 * physics.damping_scale * layer["n_hydrogen"][:, None]
        gamma_rad = gamma_rad * (temperature / 5000.0) ** 0.3 + 1e8
        hwhm = (line.wavelength * 1e-8) ** 2 / (4.0 * math.pi * 2.99792458e10) * gamma_rad * 1e8
        reach = 4.0 if line.origin == "real" else 1.0
        lo = max(int(np.searchsorted(wavelength, line.wavelength - reach)), 0)
        hi = min(int(np.searchsorted(wavelength, line.wavelength + reach)), wavelength.size)
        if hi <= lo:
            continue
        offset = wavelength[lo:hi][None, :] - line.wavelength
        profile = voigt_profile(offset, sigma, hwhm)
        # Subtract the profile at the cut so that each line goes to zero continuously.
        edge = voigt_profile(np.full((1, 1), reach), sigma, hwhm)
        opacity[:, lo:hi] += strength * np.clip(profile - edge, 0.0, None)
    return opacity


# Reference of the fitted line table: the line-forming layer of a 2550 K star (log g 5.0,
# [M/H] 0), the middle of the PHOENIX spectra it was fitted to.
TEFF_REF = 2550.0
THETA_REF = 5040.0 / (0.85 * math.sqrt(TEFF_REF * 3300.0))
_FINE_PAD = 3.0  # Angstrom computed beyond window + margin (FFT wrap-around, line wings)
_DOPPLER_MASS = 50.0  # amu: one thermal width for the fitted nodes (Fe ~56, TiO ~64, Ti ~48)
_LOG_GAMMA6 = -8.7  # van der Waals constant of the fitted nodes (PHOENIX lines are narrow)
# Molecular lines and bands relative to the continuum: TiO-like, ~ N_Ti N_O / kappa, softened
# as a one-layer model needs (the fit fixes their Teff dependence at log g 5, [M/H] 0 only).
_MOLECULAR_METALLICITY = 1.2
_MOLECULAR_GRAVITY = 0.3
# Atomic nodes fitted with chi above this would grow steeply towards hot stars outside the
# fitted range; their extrapolated growth is capped at this many dex.
_MAX_ATOMIC_GROWTH = 1.0


@dataclass(frozen=True)
class _LineTable:
    """The fitted line table as arrays (see ``mdwarf_zoo/data/phoenix_linelist.ecsv``)."""

    wavelength: np.ndarray
    log_strength: np.ndarray
    chi: np.ndarray
    curvature: np.ndarray
    kind: np.ndarray
    band_sigma: float
    meta: dict

    @property
    def molecular(self) -> np.ndarray:
        return self.kind != "atomic"

    @property
    def band(self) -> np.ndarray:
        return self.kind == "band"


_TABLE_FILE = "phoenix_linelist.ecsv"
# Another table to use instead of the packaged one (set only by
# ``phoenix_calibration.candidate_line_list``, to measure a fit before it ships).
_table_override: str | None = None


def _fitted_table() -> _LineTable:
    if _table_override is not None:
        return _read_table(_table_override)

    return _read_table(str(files("mdwarf_zoo") / "data" / _TABLE_FILE))


@lru_cache(maxsize=4)
def _read_table(path: str) -> _LineTable:

    table = Table.read(path, format="ascii.ecsv")
    return _LineTable(
        np.asarray(table["wavelength"], dtype=np.float64),
        np.asarray(table["log_strength"], dtype=np.float64),
        np.asarray(table["chi"], dtype=np.float64),
        np.asarray(table["curvature"], dtype=np.float64),
        np.asarray(table["kind"]).astype(str),
        float(table.meta["band_sigma"]),
        dict(table.meta),
    )


def padded_fine_grid(low: float, high: float, step: float = 0.005) -> np.ndarray:
    """The uniform grid the opacity is computed on: ``low..high`` plus a pad each side."""

    start = low - _FINE_PAD
    size = math.ceil((high + _FINE_PAD - start) / step - 1e-6) + 1
    # A length with small prime factors keeps the FFTs fast; the extra pixels are padding.
    return start + step * np.arange(next_fast_len(size, real=True))


@lru_cache(maxsize=32)
def _deposit_matrix_cached(start: float, step: float, size: int, positions: bytes):

    wavelength = np.frombuffer(positions, dtype=np.float64)
    position = (wavelength - start) / step
    inside = (position >= 0) & (position <= size - 1)
    left = np.clip(np.floor(position).astype(np.int64), 0, size - 2)
    weight = position - left
    columns = np.flatnonzero(inside)
    rows = np.concatenate([left[inside], left[inside] + 1])
    values = np.concatenate([1.0 - weight[inside], weight[inside]]) / step
    return sparse.csr_matrix(
        (values, (rows, np.concatenate([columns, columns]))), shape=(size, wavelength.size)
    )


def deposit_matrix(fine: np.ndarray, positions: np.ndarray):
    """Sparse (fine pixels x lines) matrix spreading unit line strengths onto ``fine``.

    Each line's strength (Angstrom) goes to its two neighbouring pixels with linear weights,
    as a density (per Angstrom); lines outside ``fine`` are left out.
    """
    step = float(fine[1] - fine[0])
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    return _deposit_matrix_cached(float(fine[0]), step, fine.size, positions.tobytes())


def line_transfer(
    frequency: np.ndarray, wavelength: float, layer: dict[str, np.ndarray], damping_scale: float
) -> np.ndarray:
    """Fourier transform of the fitted nodes' Voigt profile, per row of ``layer``.

    Thermal (``_DOPPLER_MASS``) + 1 km/s microturbulent Gaussian and a van der Waals Lorentzian
    (``_LOG_GAMMA6``, proportional to the hydrogen density, so growing with log g); ``frequency``
    in cycles per Angstrom. Returns (n_rows, n_frequencies).
    """
    temperature = layer["temperature"][:, None]
    velocity = np.sqrt(_K_BOLTZMANN * temperature / (_DOPPLER_MASS * _AMU)) * 1e-5
    sigma = wavelength / SPEED_OF_LIGHT_KMS * np.sqrt(velocity**2 + 0.5)
    gamma_rad = 10.0**_LOG_GAMMA6 * damping_scale * layer["n_hydrogen"][:, None]
    gamma_rad = gamma_rad * (temperature / 5000.0) ** 0.3 + 1e8
    hwhm = (wavelength * 1e-8) ** 2 / (4.0 * math.pi * 2.99792458e10) * gamma_rad * 1e8
    f = frequency[None, :]
    return np.exp(-2.0 * (math.pi * sigma * f) ** 2 - 2.0 * math.pi * hwhm * np.abs(f))


def band_transfer(frequency: np.ndarray, sigma: float) -> np.ndarray:
    """Fourier transform of the band knots' Gaussian (sigma in Angstrom)."""
    return np.exp(-2.0 * (math.pi * sigma * frequency) ** 2)


def _table_opacity(
    fine: np.ndarray, layer: dict[str, np.ndarray], physics: _Physics
) -> np.ndarray:
    """Line-to-continuum opacity of the fitted nodes and band knots, (n, n_pixels)."""
    table = _fitted_table()
    theta, metallicity, logg = layer["theta"], layer["metallicity"], layer["logg"]
    dtheta = (theta - THETA_REF)[:, None]
    # Atoms: abundance over the H- continuum, relative to log g 5, [M/H] 0 at the same Teff.
    reference = _layer(np.stack([layer["teff"], np.full_like(theta, 5.0),
                                 np.zeros_like(theta), np.zeros_like(theta)], axis=1))
    atomic = metallicity - (layer["log_kappa"] - reference["log_kappa"])
    molecular = (_MOLECULAR_METALLICITY * metallicity + _MOLECULAR_GRAVITY * (logg - 5.0)
                 + math.log10(max(physics.molecular_scale, 1e-30)))
    temperature_term = -table.chi[None, :] * dtheta
    is_molecular = table.molecular
    temperature_term = np.where(is_molecular[None, :], temperature_term,
                                np.minimum(temperature_term, _MAX_ATOMIC_GROWTH))
    # The bands' curvature in theta is held at the fitted range's ends outside it: beyond the
    # fitted Teff they continue along their (tangent-free) log-linear trend only.
    inside = np.clip(theta, table.meta["theta_min"], table.meta["theta_max"]) - THETA_REF
    temperature_term = temperature_term - table.curvature[None, :] * (inside**2)[:, None]
    log_strength = (table.log_strength[None, :] + temperature_term
                    + np.where(is_molecular[None, :], molecular[:, None], atomic[:, None]))
    if physics.log_strength_offsets is not None:
        log_strength = log_strength + physics.log_strength_offsets[None, :]
    strength = 10.0**log_strength
    band = table.band
    lines = deposit_matrix(fine, table.wavelength[~band])
    knots = deposit_matrix(fine, table.wavelength[band])
    frequency = np.fft.rfftfreq(fine.size, fine[1] - fine[0])
    centre = 0.5 * (fine[0] + fine[-1])
    spectrum = np.fft.rfft((lines @ strength[:, ~band].T).T, axis=1) * line_transfer(
        frequency, centre, layer, physics.damping_scale
    )
    spectrum += np.fft.rfft((knots @ strength[:, band].T).T, axis=1) * band_transfer(
        frequency, table.band_sigma
    )
    return np.clip(np.fft.irfft(spectrum, fine.size, axis=1), 0.0, None)


def _source_gradient(teff: np.ndarray) -> np.ndarray:
    """Milne-Eddington beta = B1/B0, larger for cooler stars.

    Steep enough that the deepest PHOENIX features (to ~5 % of the continuum at 2300 K) fit
    under the model's saturation limit ``beta / (1 + beta)``.
    """
    return 3.0 * 16350.0 / teff


def _fine_step(grid: WavelengthGrid) -> float:
    return min(grid.step, 0.01) / 2.0


def _physical_flux(
    labels: np.ndarray,
    grid: WavelengthGrid,
    resolving_power: float | None,
    physics: _Physics,
    seed: int,
) -> np.ndarray:
    """Continuum-normalised, broadened spectra on ``grid`` for one chunk of labels."""
    padded = padded_fine_grid(grid.start - _MARGIN, grid.stop + _MARGIN, _fine_step(grid))
    layer = _layer(labels)
    eta = _table_opacity(padded, layer, physics)
    pad = int(round(_FINE_PAD / (padded[1] - padded[0])))
    inner = slice(pad, int(np.searchsorted(padded, grid.stop + _MARGIN + 1e-9)) + 1)
    fine = padded[inner]
    eta = eta[:, inner]
    if physics.lines:
        eta = eta + _line_opacity(fine, layer, physics)
    beta = _source_gradient(labels[:, 0])[:, None]
    flux = (1.0 + beta / (1.0 + eta)) / (1.0 + beta)
    vsini = labels[:, 3]
    for value in np.unique(vsini):
        rows = vsini == value
        flux[rows] = rotational_broadening(fine, flux[rows], float(value))
    if resolving_power is not None:
        flux = instrumental_broadening(fine, flux, resolving_power)
    out = grid.wavelength
    return np.stack([np.interp(out, fine, row) for row in flux])


# ----------------------------------------------------------------------------------------------
# Labels


def validate_labels(labels: np.ndarray) -> np.ndarray:
    """Check a label array and return it as float64 of shape (n, 4).

    Args:
        labels: (n, 4) or (4,) array of Teff (K), log g (dex), [M/H] (dex), v sin i (km/s).

    Returns:
        The labels, float64, shape (n, 4).

    Raises:
        ValueError: for a wrong shape, a non-finite value or a value outside ``LABEL_RANGES``,
            naming the row, the label and the value.
    """
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] == 0:
        raise ValueError(
            f"labels must have shape (n, 4) with columns {', '.join(LABEL_NAMES)}, "
            f"got shape {np.shape(labels)}"
        )
    for column, name in enumerate(LABEL_NAMES):
        values = array[:, column]
        low, high = LABEL_RANGES[name]
        bad = ~np.isfinite(values) | (values < low) | (values > high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"labels row {row}: {name} = {float(values[row])!r} is outside the simulator's "
                f"range "
                f"{low:g}..{high:g} {_LABEL_UNITS[name]} ({int(bad.sum())} bad row(s) in all)"
            )
    return array


def _chunks(n: int, size: int = _CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork: workers inherit the imported modules instead of importing the package again (whose
    # top level loads Keras); spawn where fork does not exist or is unsafe (macOS).
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run_chunks(function, labels: np.ndarray, args: tuple, workers: int, progress: bool):
    """Apply ``function(labels_chunk, *args)`` to fixed chunks, in order, maybe in processes."""

    slices = list(_chunks(labels.shape[0]))
    bar = tqdm(total=labels.shape[0], unit="spectrum", disable=not progress, desc="simulate")
    result = None

    def store(s: slice, part: np.ndarray) -> None:
        # Fill one preallocated array: no list of parts plus a concatenated copy in memory.
        nonlocal result
        if result is None:
            result = np.empty((labels.shape[0],) + part.shape[1:], dtype=part.dtype)
        result[s] = part
        bar.update(s.stop - s.start)

    if workers > 1 and len(slices) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            # At most 2 chunks per worker in flight, so finished parts don't pile up in memory.
            pending: collections.deque = collections.deque()
            for s in slices:
                pending.append((s, pool.submit(function, labels[s], *args)))
                if len(pending) >= 2 * workers:
                    done, future = pending.popleft()
                    store(done, future.result())
            while pending:
                done, future = pending.popleft()
                store(done, future.result())
    else:
        for s in slices:
            store(s, function(labels[s], *args))
    bar.close()
    return result


def synthetic_spectra(
    labels: np.ndarray,
    grid: WavelengthGrid | None = None,
    *,
    seed: int = 0,
    resolving_power: float | None = 94600,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Continuum-normalised synthetic spectra for a set of labels (the "synthetic domain").

    A tool for tests, demos and method studies, not a replacement for PHOENIX (see the module
    docstring for the model). Each spectrum is computed at high resolution over the grid plus
    5 A each side, broadened by ``rotational_broadening`` (v sin i, limb darkening 0.6) and
    ``instrumental_broadening`` (R), and interpolated onto ``grid``.

    Args:
        labels: (n, 4) Teff (K), log g (dex), [M/H] (dex), v sin i (km/s), within
            ``LABEL_RANGES`` (Teff 2300-4600, log g 3.5-6.0, [M/H] -1.5..+1.0, v sin i 0-100).
        grid: output wavelength grid (vacuum, Angstrom); default the MB24 grid, 8800-8835 A
            in 0.01 A steps (3501 pixels).
        seed: line-list seed: 0 is the table fitted to PHOENIX-ACES; any other seed shifts
            each line node's strength by a seeded ``SEED_SCATTER`` dex error (see
            ``line_list``); it selects one fixed "universe" of lines, not noise.
        resolving_power: instrumental R; ``None`` leaves the spectra unbroadened by the
            instrument (as PHOENIX files are).
        workers: processes to use (results do not depend on it).
        progress: show a tqdm progress bar.

    Returns:
        float64 array (n, len(grid)) of flux relative to the true continuum (values in 0..1).

    Raises:
        ValueError: for labels of the wrong shape, NaN, or outside the range (naming the row
            and value), or a bad ``resolving_power``.

    Examples:
        >>> from mdwarf_zoo.spectra.simulate import synthetic_spectra
        >>> flux = synthetic_spectra([[3300, 4.9, 0.0, 2.0]])
        >>> flux.shape
        (1, 3501)
    """
    labels = validate_labels(labels)
    grid = MB24_GRID if grid is None else grid
    _check_resolving_power(resolving_power, "resolving_power")
    physics = _Physics(log_strength_offsets=_seed_offsets(seed))
    return _run_chunks(
        _physical_flux, labels, (grid, resolving_power, physics, seed), workers, progress
    )


def phoenix_flux(
    labels: np.ndarray,
    grid: WavelengthGrid,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Un-normalised, unbroadened synthetic flux in PHOENIX-ACES units, erg/s/cm^2/cm.

    The continuum-normalised spectrum (v sin i taken from ``labels``, no instrumental
    broadening, as PHOENIX files are) times the surface flux of a blackbody at Teff,
    ``pi B_lambda(Teff)``, so that files written in the PHOENIX layout have a real, sloped
    continuum that a normaliser must remove.

    Args:
        labels: (n, 4) labels (use v sin i = 0 for grid files).
        grid: wavelength grid, Angstrom (vacuum).
        seed: line-list seed, as in ``synthetic_spectra``.
        workers: processes to use.
        progress: show a tqdm progress bar.

    Returns:
        float64 array (n, len(grid)), erg/s/cm^2/cm.

    Raises:
        ValueError: as ``synthetic_spectra``.
    """
    labels = validate_labels(labels)
    normalised = synthetic_spectra(
        labels, grid, seed=seed, resolving_power=None, workers=workers, progress=progress
    )
    wavelength_cm = grid.wavelength * 1e-8
    h, c, k = 6.62607015e-27, 2.99792458e10, _K_BOLTZMANN
    exponent = h * c / (wavelength_cm[None, :] * k * labels[:, :1])
    planck = 2.0 * h * c**2 / wavelength_cm[None, :] ** 5 / np.expm1(exponent)
    return normalised * math.pi * planck


def _check_resolving_power(value: float | None, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0 (or None), got {value!r}")


# ----------------------------------------------------------------------------------------------
# The observed domain


@dataclass(frozen=True)
class GapConfig:
    """The knobs of the synthetic gap, each with its default (the "observed" domain).

    The defaults are calibrated on real numbers (``benchmarks/calibrate_gap.py``): a
    no-transfer CNN trained on simulated synthetic spectra and applied to the observed spectra
    of MB24's 286 CARMENES stars (their labels) is off by Teff -38 K mean / 61 K rms, log g
    -0.046 / 0.052 dex, [M/H] +0.223 / 0.227 dex, where the real no-transfer CNN of
    Passegger+20 differs from MB24's estimates of those stars by -35 / 51 K, -0.039 / 0.060 dex
    and +0.233 / 0.248 dex (all six within a factor 1.2). The observed domain they model is
    MB24's: SERVAL co-added templates at S/N >= 150, in which co-adding has removed cosmic rays
    and bad pixels (both 0 by default; set them for single exposures). Two other real anchors
    point to a larger gap (VB 10 against PHOENIX, MB24's reconstruction-error ratio; see
    ``benchmarks/RESULTS.md``): they want more ``missing_lines`` than the regressor offsets
    allow, so the size of the gap in spectrum space is the least certain part of the model.

    Physics knobs (the observed spectrum is recomputed from the labels with this physics):

    Attributes:
        missing_lines: number of lines real stars have and the synthetic list lacks (log gf
            -3.2..-1.8, random species and excitation); default 10. Which lines are missing
            matters more than how many: with ``line_list_seed`` 1, 20 lines already move
            Teff by -360 K (one strong line among them).
        loggf_scatter: Gaussian error (dex) of the synthetic line strengths, i.e. the
            observed stars' strengths differ from the fitted table's by this much per line
            node (band knots are left alone); default 0.05.
        loggf_bias: mean of that error (dex; > 0 makes observed lines stronger); default 0.15
            (it carries the [M/H] offset).
        damping_scale: observed van der Waals damping over the synthetic one (ABO theory vs
            Unsold-like: typically 1.5-2.5); default 1.5.
        molecular_scale: observed molecular absorption (molecular nodes and bands) over the
            synthetic one; default 1.25.
        line_list_seed: seed of the line-list errors (which lines are missing, which log gf
            are off); one fixed "real universe", independent of the noise seed; default 1.

    Instrument and reduction knobs (drawn per spectrum from the ``seed`` of ``observe``):

    Attributes:
        resolving_power_scale: observed R over the synthetic R (resolution mismatch); the
            spectrum gets the extra Gaussian broadening that makes R_syn into R_obs;
            default 0.95.
        rv_residual: standard deviation of the residual radial velocity after the RV
            correction, km/s; default 0.3.
        continuum_error: standard deviation of a smooth multiplicative continuum-placement
            error (a quadratic over the window), relative; default 0.01.
        continuum_offset: mean continuum-placement error (relative; normalisers put the
            continuum of an absorbed M-dwarf spectrum low); default -0.01.
        telluric_depth: central depth of the strongest telluric H2O line; the lines sit at
            fixed observer-frame wavelengths and move with a barycentric velocity drawn
            uniformly in +-30 km/s; default 0.02.
        bad_pixel_fraction: fraction of pixels set to 0 (dead or masked pixels); default 0
            (5e-4 is typical of a single exposure).
        cosmic_rays: mean number of cosmic-ray spikes per spectrum (Poisson), each 1-3 pixels,
            0.1-1.0 above the flux; default 0 (0.5 is typical of a single exposure).
    """

    missing_lines: int = 10
    loggf_scatter: float = 0.05
    loggf_bias: float = 0.15
    damping_scale: float = 1.5
    molecular_scale: float = 1.25
    line_list_seed: int = 1
    resolving_power_scale: float = 0.95
    rv_residual: float = 0.3
    continuum_error: float = 0.01
    continuum_offset: float = -0.01
    telluric_depth: float = 0.02
    bad_pixel_fraction: float = 0.0
    cosmic_rays: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "missing_lines": (0, 10000),
            "loggf_scatter": (0.0, 3.0),
            "loggf_bias": (-3.0, 3.0),
            "damping_scale": (0.0, 100.0),
            "molecular_scale": (0.0, 100.0),
            "resolving_power_scale": (1e-3, 1.0),
            "rv_residual": (0.0, 100.0),
            "continuum_error": (0.0, 0.5),
            "continuum_offset": (-0.5, 0.5),
            "telluric_depth": (0.0, 1.0),
            "bad_pixel_fraction": (0.0, 1.0),
            "cosmic_rays": (0.0, 1000.0),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not (
                math.isfinite(value) and low <= value <= high
            ):
                raise ValueError(
                    f"gap knob {name} must be a number in {low}..{high}, got {value!r}"
                )
        if int(self.missing_lines) != self.missing_lines:
            raise ValueError(
                f"gap knob missing_lines must be an integer, got {self.missing_lines!r}"
            )

    @classmethod
    def none(cls) -> GapConfig:
        """No gap at all: every knob at its neutral value, 1 for the ratios of observed over
        synthetic (the ``*_scale`` knobs) and 0 for the others, of the type of its default.
        ``line_list_seed`` keeps its default: it only chooses what the other knobs change."""
        return cls(
            **{
                knob.name: type(knob.default)(1 if knob.name.endswith("_scale") else 0)
                for knob in fields(cls)
                if knob.name != "line_list_seed"
            }
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def changes_physics(self) -> bool:
        return (
            self.missing_lines > 0
            or self.loggf_scatter > 0
            or self.loggf_bias != 0
            or self.damping_scale != 1.0
            or self.molecular_scale != 1.0
        )


def _observed_physics(gap: GapConfig, synthetic_seed: int) -> _Physics:
    table = _fitted_table()
    offsets = _seed_offsets(synthetic_seed)
    offsets = np.zeros(table.wavelength.size) if offsets is None else offsets.copy()
    rng = np.random.default_rng([0x6A9, int(gap.line_list_seed)])
    errors = rng.normal(0.0, 1.0, table.wavelength.size) * gap.loggf_scatter + gap.loggf_bias
    offsets[~table.band] += errors[~table.band]
    lines = _missing_lines(gap.line_list_seed, int(gap.missing_lines))
    return _Physics(lines, gap.damping_scale, gap.molecular_scale, offsets)


# Telluric H2O lines near 8800 A: observer-frame vacuum wavelength (A) and relative depth.
# Approximate positions of weak lines of the H2O 3-nu band region; the MB24 window is nearly
# free of tellurics (METHOD.md), so the default depth is small.
_TELLURIC_LINES = (
    (8793.9, 0.5),
    (8800.6, 0.3),
    (8807.8, 0.6),
    (8812.1, 0.4),
    (8819.4, 1.0),
    (8826.2, 0.5),
    (8829.9, 0.7),
    (8834.5, 0.4),
    (8842.6, 0.8),
)


def _observe_chunk(
    flux: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    seed: int,
    grid: WavelengthGrid,
    resolving_power: float | None,
    synthetic_seed: int,
    gap: GapConfig,
    snr: float | None,
) -> np.ndarray:
    wavelength = grid.wavelength
    out = flux.astype(np.float64, copy=True)
    if gap.changes_physics:
        observed = _physical_flux(
            labels, grid, resolving_power, _observed_physics(gap, synthetic_seed), synthetic_seed
        )
        physics = _Physics(log_strength_offsets=_seed_offsets(synthetic_seed))
        synthetic = _physical_flux(labels, grid, resolving_power, physics, synthetic_seed)
        out = observed + (out - synthetic)
    if gap.resolving_power_scale < 1.0 and resolving_power is not None:
        extra = resolving_power / math.sqrt(1.0 / gap.resolving_power_scale**2 - 1.0)
        out = instrumental_broadening(wavelength, out, extra)
    x = (wavelength - wavelength.mean()) / (0.5 * (wavelength[-1] - wavelength[0]))
    for i, row in enumerate(rows):
        rng = np.random.default_rng([int(seed), int(row)])
        rv, berv = rng.normal(0.0, 1.0), rng.uniform(-30.0, 30.0)
        coefficients = rng.normal(0.0, 1.0, 3)
        if gap.rv_residual > 0:
            shift = 1.0 + gap.rv_residual * rv / SPEED_OF_LIGHT_KMS
            out[i] = np.interp(wavelength, wavelength * shift, out[i])
        if gap.telluric_depth > 0:
            shift = 1.0 - berv / SPEED_OF_LIGHT_KMS
            telluric = np.ones_like(wavelength)
            for centre, depth in _TELLURIC_LINES:
                profile = np.exp(-0.5 * ((wavelength - centre * shift) / 0.04) ** 2)
                telluric *= 1.0 - gap.telluric_depth * depth * profile
            out[i] *= telluric
        if gap.continuum_error > 0 or gap.continuum_offset != 0:
            smooth = coefficients[0] + coefficients[1] * x + coefficients[2] * (1.5 * x**2 - 0.5)
            out[i] /= 1.0 + gap.continuum_offset + gap.continuum_error * smooth / math.sqrt(3)
        if snr is not None:
            sigma = np.sqrt(np.clip(out[i], 0.0, None)) / snr
            out[i] += sigma * rng.normal(0.0, 1.0, wavelength.size)
        if gap.cosmic_rays > 0:
            for _ in range(rng.poisson(gap.cosmic_rays)):
                start = int(rng.integers(0, wavelength.size))
                width = int(rng.integers(1, 4))
                out[i, start : start + width] += rng.uniform(0.1, 1.0)
        if gap.bad_pixel_fraction > 0:
            bad = rng.random(wavelength.size) < gap.bad_pixel_fraction
            out[i, bad] = 0.0
    return out


def observe(
    flux: np.ndarray,
    labels: np.ndarray,
    *,
    snr: float | None = 150,
    seed: int = 0,
    grid: WavelengthGrid | None = None,
    resolving_power: float | None = 94600,
    synthetic_seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    **gap,
) -> np.ndarray:
    """Turn synthetic spectra into the "observed" domain with a controlled synthetic gap.

    ``flux`` holds the synthetic spectra of ``labels`` (from ``synthetic_spectra`` with the same
    ``grid``, ``resolving_power`` and ``seed`` passed here as ``synthetic_seed``). The physics
    knobs (``missing_lines``, ``loggf_scatter``, ``loggf_bias``, ``damping_scale``,
    ``molecular_scale``) need the labels: the spectrum is recomputed with the perturbed line
    list and physics, and the difference to the synthetic physics is added to ``flux``, so
    that for simulator spectra the result *is* the perturbed spectrum, and for other spectra
    (e.g. interpolated PHOENIX) the same physical gap is laid on top. Then, in this order:
    resolution mismatch, residual RV, telluric lines, continuum-placement error, photon noise
    at ``snr`` (sigma = sqrt(flux) / snr), cosmic rays, bad pixels. See ``GapConfig`` for each
    knob and its default; ``GapConfig.none()`` gives no gap at all.

    Args:
        flux: (n, len(grid)) synthetic spectra of ``labels``.
        labels: (n, 4) Teff, log g, [M/H], v sin i of each spectrum.
        snr: signal-to-noise ratio at the continuum; ``None`` for no noise.
        seed: seed of the per-spectrum randomness (noise, RV, tellurics' barycentric velocity,
            continuum error, cosmic rays, bad pixels); spectrum ``i`` uses
            ``numpy.random.default_rng([seed, i])`` so the result of a row does not depend on
            the others.
        grid: the wavelength grid of ``flux``; default the MB24 grid.
        resolving_power: the synthetic spectra's R (``None``: unbroadened).
        synthetic_seed: the ``seed`` that ``synthetic_spectra`` was called with.
        workers: processes to use (results do not depend on it).
        progress: show a tqdm progress bar.
        **gap: ``GapConfig`` fields overriding the defaults, or ``gap=GapConfig(...)``.

    Returns:
        float64 array (n, len(grid)) of observed-domain flux.

    Raises:
        ValueError: for bad labels, a flux shape that does not match labels and grid,
            non-finite flux, an unknown knob or a knob out of range, or ``snr`` <= 0.

    Examples:
        >>> from mdwarf_zoo.spectra.simulate import observe, synthetic_spectra
        >>> labels = [[3300, 4.9, 0.0, 2.0]]
        >>> observed = observe(synthetic_spectra(labels), labels, snr=150, seed=1)
    """
    labels = validate_labels(labels)
    grid = MB24_GRID if grid is None else grid
    config = _gap_config(gap)
    flux = np.asarray(flux, dtype=np.float64)
    if flux.ndim == 1:
        flux = flux[None, :]
    if flux.shape != (labels.shape[0], len(grid)):
        raise ValueError(
            f"observe: flux must have shape (n_labels, n_pixels) = ({labels.shape[0]}, "
            f"{len(grid)}), got {flux.shape}"
        )
    if not np.all(np.isfinite(flux)):
        row = int(np.argwhere(~np.isfinite(flux))[0, 0])
        raise ValueError(f"observe: flux row {row} contains a non-finite value")
    if snr is not None and not (isinstance(snr, (int, float)) and math.isfinite(snr) and snr > 0):
        raise ValueError(f"observe: snr must be a finite number > 0 (or None), got {snr!r}")
    _check_resolving_power(resolving_power, "resolving_power")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"observe: seed must be a non-negative integer, got {seed!r}")
    # One array so that the chunking helper splits flux, labels and row numbers together.
    rows = np.arange(labels.shape[0], dtype=np.float64)[:, None]
    combined = np.concatenate([flux, labels, rows], axis=1)
    return _run_chunks(
        _observe_combined,
        combined,
        (len(grid), int(seed), grid, resolving_power, synthetic_seed, config, snr),
        workers,
        progress,
    )


def _observe_combined(
    combined: np.ndarray,
    n_pixels: int,
    seed: int,
    grid: WavelengthGrid,
    resolving_power: float | None,
    synthetic_seed: int,
    config: GapConfig,
    snr: float | None,
) -> np.ndarray:
    flux = combined[:, :n_pixels]
    labels = combined[:, n_pixels : n_pixels + 4]
    rows = combined[:, n_pixels + 4].astype(np.int64)
    return _observe_chunk(
        flux, labels, rows, seed, grid, resolving_power, synthetic_seed, config, snr
    )


def _gap_config(gap: dict) -> GapConfig:
    if "gap" in gap:
        config = gap.pop("gap")
        if not isinstance(config, GapConfig):
            raise ValueError(f"observe: gap must be a GapConfig, got {type(config).__name__}")
        return replace(config, **gap) if gap else config
    known = {f.name for f in fields(GapConfig)}
    unknown = sorted(set(gap) - known)
    if unknown:
        raise ValueError(
            f"observe: unknown gap knob(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return GapConfig(**gap)
