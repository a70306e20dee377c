"""One preprocessing path for synthetic and observed spectra.

The steps of Mas-Buitrago et al. 2024 (MB24): cut the window plus a margin (5 A each side),
bring the spectrum to the model's resolving power, normalise the continuum on window + margin
in the manner of GISIC (Gaussian-smoothed spectrum, continuum points between lines, upper
envelope, spline), interpolate linearly onto the model's wavelength grid, and scale into
[0, 1]. :class:`Preprocessor` holds these choices as a small configuration that serialises to
JSON, so a trained model carries the exact recipe its training data went through and can apply
it to a user's spectrum.

GISIC: Sandford et al. 2020 (ApJS 249, 24, "Gaussian Inflection Spline Interpolation
Continuum"); the PyPI package 2.0.5 no longer runs on current pandas, hence this version.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

from mdwarf_zoo.spectra import broadening
from mdwarf_zoo.spectra.grid import MB24_GRID, Spectrum, WavelengthGrid

logger = logging.getLogger(__name__)

SCALINGS = ("clip", "max", "minmax", "none")
NORMALISATIONS = ("gisic", "none")
_FORMAT = "mdwarf_zoo.Preprocessor/1"


class GapWarning(UserWarning):
    """A gap inside the window was filled by interpolation."""


def continuum_normalize(
    wavelength: np.ndarray,
    flux: np.ndarray,
    *,
    smoothing: float = 0.05,
    bin_width: float = 1.0,
    iterations: int = 3,
    tolerance: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise by an upper-envelope continuum in the spirit of GISIC.

    The flux is smoothed with a Gaussian; points where the smoothed flux turns over (between
    absorption lines, i.e. bracketed by the inflection points of neighbouring line wings) are
    continuum candidates. In each ``bin_width`` bin the highest candidate is kept (the upper
    envelope; bins without a turnover contribute their highest smoothed point), a cubic spline
    is fitted through them, and anchors lying more than ``tolerance`` below the spline are
    dropped and the spline refitted, ``iterations`` times.

    Args:
        wavelength: increasing wavelengths, Angstrom (window plus margin).
        flux: flux, same length, finite.
        smoothing: Gaussian standard deviation, Angstrom.
        bin_width: width of the envelope bins, Angstrom.
        iterations: refits that drop anchors under the envelope.
        tolerance: relative depth below the spline at which an anchor is dropped.

    Returns:
        ``(normalised_flux, continuum)``.

    Raises:
        ValueError: for mismatched, short or non-finite input, bad options, or a continuum that
            is not positive everywhere (a spectrum with no positive flux to anchor it).
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    values = np.asarray(flux, dtype=np.float64)
    if wave.ndim != 1 or values.shape != wave.shape:
        raise ValueError(
            f"continuum_normalize: wavelength {wave.shape} and flux {values.shape} must be 1-D "
            "of the same length"
        )
    if wave.size < 4:
        raise ValueError(f"continuum_normalize: need at least 4 pixels, got {wave.size}")
    if not (np.all(np.isfinite(wave)) and np.all(np.isfinite(values))):
        raise ValueError("continuum_normalize: wavelength and flux must be finite")
    if np.any(np.diff(wave) <= 0):
        raise ValueError("continuum_normalize: wavelength must be strictly increasing")
    for name, value in (("smoothing", smoothing), ("bin_width", bin_width),
                        ("tolerance", tolerance)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"continuum_normalize: {name} must be > 0, got {value!r}")
    if int(iterations) < 0:
        raise ValueError(f"continuum_normalize: iterations must be >= 0, got {iterations!r}")
    step = float(np.median(np.diff(wave)))
    smoothed = gaussian_filter1d(values, max(smoothing / step, 1e-3), mode="nearest")
    slope = np.gradient(smoothed)
    turnover = np.flatnonzero((slope[:-1] > 0) & (slope[1:] <= 0))
    n_bins = max(math.ceil((wave[-1] - wave[0]) / bin_width), 1)
    edges = np.linspace(wave[0], wave[-1], n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, wave, side="right") - 1, 0, n_bins - 1)
    anchors = []
    for b in range(n_bins):
        in_bin = np.flatnonzero(bin_of == b)
        if in_bin.size == 0:
            continue
        candidates = turnover[bin_of[turnover] == b]
        pool = candidates if candidates.size else in_bin
        anchors.append(int(pool[np.argmax(smoothed[pool])]))
    # The ends pin the spline, so it does not run wild at the edges of the margin.
    for end in (0, wave.size - 1):
        if end not in anchors:
            anchors.append(end)
    anchors = np.array(sorted(set(anchors)))
    continuum = _fit_envelope(wave, smoothed, anchors)
    for _ in range(int(iterations)):
        below = smoothed[anchors] < continuum[anchors] * (1.0 - tolerance)
        # Keep the end points: dropping them would leave the spline to extrapolate.
        below[[0, -1]] = False
        if not below.any():
            break
        anchors = anchors[~below]
        continuum = _fit_envelope(wave, smoothed, anchors)
    if not np.all(continuum > 0) or not np.all(np.isfinite(continuum)):
        raise ValueError(
            "continuum_normalize: the continuum estimate is not positive everywhere "
            f"(minimum {float(np.nanmin(continuum)):.3g}); the flux needs positive values to "
            "anchor a continuum"
        )
    return values / continuum, continuum


def _fit_envelope(wave: np.ndarray, smoothed: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    if anchors.size >= 4:
        return CubicSpline(wave[anchors], smoothed[anchors], bc_type="natural")(wave)
    return np.interp(wave, wave[anchors], smoothed[anchors])


def find_gaps(wavelength: np.ndarray, start: float, stop: float,
              factor: float = 3.0) -> list[tuple[float, float]]:
    """Holes in the sampling inside ``start..stop``: steps wider than ``factor`` x the median.

    Returns:
        ``[(last wavelength before, first wavelength after), ...]``.
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    inside = np.flatnonzero((wave >= start) & (wave <= stop))
    if inside.size < 2:
        return []
    lo, hi = max(inside[0] - 1, 0), min(inside[-1] + 1, wave.size - 1)
    segment = wave[lo:hi + 1]
    steps = np.diff(segment)
    limit = factor * float(np.median(np.diff(wave)))
    return [(float(segment[i]), float(segment[i + 1])) for i in np.flatnonzero(steps > limit)
            if segment[i + 1] > start and segment[i] < stop]


def _check_coverage(spectrum: Spectrum, start: float, stop: float, purpose: str) -> None:
    wave = spectrum.wavelength
    tol = 1e-6 * stop
    if wave[0] > start + tol or wave[-1] < stop - tol:
        raise ValueError(
            f"spectrum {spectrum.source!r} covers {wave[0]:.3f}-{wave[-1]:.3f} A but {purpose} "
            f"needs {start:.3f}-{stop:.3f} A"
        )


def resample(spectrum: object, grid: WavelengthGrid, *, fill_gaps: bool = False,
             gap_factor: float = 3.0) -> Spectrum:
    """Interpolate a spectrum linearly onto ``grid``.

    Args:
        spectrum: a :class:`Spectrum` (or a specutils Spectrum).
        grid: the target wavelength grid.
        fill_gaps: interpolate across holes in the sampling inside the grid (with a
            :class:`GapWarning`) instead of refusing them.
        gap_factor: a step wider than this many median steps is a hole.

    Returns:
        A new :class:`Spectrum` on ``grid.wavelength``; ``metadata['filled_gaps']`` lists the
        holes that were filled.

    Raises:
        ValueError: when the spectrum does not cover the grid (naming both ranges), or has a
            hole inside it and ``fill_gaps`` is false.
    """
    spectrum = Spectrum.coerce(spectrum)
    _check_coverage(spectrum, grid.start, grid.stop, f"the grid {grid.start:g}-{grid.stop:g} A")
    gaps = _handle_gaps(spectrum, grid.start, grid.stop, fill_gaps, gap_factor)
    target = grid.wavelength
    flux = np.interp(target, spectrum.wavelength, spectrum.flux)
    sigma = None if spectrum.sigma is None else np.interp(target, spectrum.wavelength,
                                                          spectrum.sigma)
    metadata = {"filled_gaps": gaps} if gaps else {}
    return spectrum.replace(wavelength=target, flux=flux, sigma=sigma, metadata=metadata)


def _handle_gaps(spectrum: Spectrum, start: float, stop: float, fill_gaps: bool,
                 gap_factor: float) -> list[tuple[float, float]]:
    gaps = find_gaps(spectrum.wavelength, start, stop, gap_factor)
    if gaps:
        shown = ", ".join(f"{a:.3f}-{b:.3f}" for a, b in gaps[:5])
        more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
        if not fill_gaps:
            raise ValueError(
                f"spectrum {spectrum.source!r} has {len(gaps)} gap(s) inside {start:g}-{stop:g} A "
                f"({shown}{more} A); pass fill_gaps=True to interpolate across them"
            )
        warnings.warn(
            f"spectrum {spectrum.source!r}: interpolating across {len(gaps)} gap(s) inside "
            f"{start:g}-{stop:g} A ({shown}{more} A)",
            GapWarning,
            stacklevel=3,
        )
    return gaps


def scale(flux: np.ndarray, method: str = "clip") -> np.ndarray:
    """Bring normalised flux into [0, 1].

    Args:
        flux: 1-D or (n, pixels) flux, finite.
        method: ``"clip"`` (clip to [0, 1]; a normalised spectrum barely exceeds 1),
            ``"max"`` (divide each spectrum by its maximum, negatives to 0), ``"minmax"``
            ((flux - min) / (max - min) per spectrum) or ``"none"``.

    Returns:
        The scaled flux (float64).

    Raises:
        ValueError: for an unknown method, non-finite flux, a spectrum whose maximum is not
            positive (``max``) or that is constant (``minmax``).
    """
    if method not in SCALINGS:
        raise ValueError(f"scale: method must be one of {SCALINGS}, got {method!r}")
    values = np.asarray(flux, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("scale: flux must be finite")
    if method == "none":
        return values.copy()
    if method == "clip":
        return np.clip(values, 0.0, 1.0)
    top = values.max(axis=-1, keepdims=True)
    if method == "max":
        if np.any(top <= 0):
            raise ValueError("scale('max'): a spectrum has no positive flux")
        return np.clip(values / top, 0.0, 1.0)
    bottom = values.min(axis=-1, keepdims=True)
    if np.any(top - bottom <= 0):
        raise ValueError("scale('minmax'): a spectrum is constant")
    return (values - bottom) / (top - bottom)


def _fine_step(wavelength: np.ndarray, grid: WavelengthGrid) -> float:
    return min(float(np.median(np.diff(wavelength))), grid.step)


def effective_resolving_power(target: float, current: float | None) -> float | None:
    """R of the Gaussian that takes a spectrum from ``current`` to ``target`` resolution.

    ``None`` when nothing needs doing (the spectrum is already at or below ``target``); an
    unknown ``current`` (a synthetic spectrum) is treated as infinite resolution.
    """
    if current is None or not math.isfinite(current):
        return target
    if current <= target:
        return None
    return 1.0 / math.sqrt(1.0 / target**2 - 1.0 / current**2)


@dataclass
class Preprocessor:
    """The chain window -> resolution -> continuum -> grid -> [0, 1], as configuration.

    Args:
        grid: the model's wavelength grid (the window), Angstrom, vacuum.
        margin: extra wavelength on each side used for broadening and normalisation, Angstrom
            (MB24: 5).
        resolving_power: bring spectra to this R (Gaussian instrumental profile); spectra whose
            ``metadata['resolving_power']`` is known are broadened only by the difference in
            quadrature, and left alone when already at or below it. ``None`` skips the step.
        normalisation: ``"gisic"`` (see :func:`continuum_normalize`) or ``"none"``.
        normalisation_options: keyword arguments of :func:`continuum_normalize`.
        scaling: see :func:`scale`.
        fill_gaps: interpolate across holes in the window (with a warning) instead of refusing.
        gap_factor: a step wider than this many median steps is a hole.

    Raises:
        ValueError: for an invalid configuration.

    Examples:
        >>> from mdwarf_zoo.spectra import Preprocessor, MB24_GRID
        >>> prep = Preprocessor(MB24_GRID, margin=5.0, resolving_power=94600)
        >>> Preprocessor.from_json(prep.to_json()) == prep
        True
    """

    grid: WavelengthGrid = MB24_GRID
    margin: float = 5.0
    resolving_power: float | None = None
    normalisation: str = "gisic"
    normalisation_options: dict = field(default_factory=dict)
    scaling: str = "clip"
    fill_gaps: bool = False
    gap_factor: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.grid, dict):
            self.grid = WavelengthGrid.from_dict(self.grid)
        if not isinstance(self.grid, WavelengthGrid):
            raise TypeError(f"Preprocessor: grid must be a WavelengthGrid, got {self.grid!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin)
                and self.margin >= 0):
            raise ValueError(f"Preprocessor: margin must be >= 0 Angstrom, got {self.margin!r}")
        self.margin = float(self.margin)
        if self.resolving_power is not None:
            if not (isinstance(self.resolving_power, (int, float))
                    and math.isfinite(self.resolving_power) and self.resolving_power > 0):
                raise ValueError(
                    f"Preprocessor: resolving_power must be > 0 or None, got "
                    f"{self.resolving_power!r}"
                )
            self.resolving_power = float(self.resolving_power)
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"Preprocessor: normalisation must be one of {NORMALISATIONS}, got "
                f"{self.normalisation!r}"
            )
        allowed = {"smoothing", "bin_width", "iterations", "tolerance"}
        unknown = set(self.normalisation_options) - allowed
        if unknown:
            raise ValueError(
                f"Preprocessor: unknown normalisation_options {sorted(unknown)}; allowed "
                f"{sorted(allowed)}"
            )
        if self.scaling not in SCALINGS:
            raise ValueError(f"Preprocessor: scaling must be one of {SCALINGS}, got "
                             f"{self.scaling!r}")
        if not (math.isfinite(self.gap_factor) and self.gap_factor > 1):
            raise ValueError(f"Preprocessor: gap_factor must be > 1, got {self.gap_factor!r}")

    @property
    def span(self) -> tuple[float, float]:
        """Window plus margin, Angstrom."""
        return self.grid.start - self.margin, self.grid.stop + self.margin

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dictionary (with a ``format`` tag)."""
        config = asdict(self)
        config["grid"] = self.grid.to_dict()
        return {"format": _FORMAT, **config}

    @classmethod
    def from_dict(cls, config: dict) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: for another format tag or unknown keys.
        """
        config = dict(config)
        tag = config.pop("format", _FORMAT)
        if tag != _FORMAT:
            raise ValueError(f"Preprocessor config has format {tag!r}; expected {_FORMAT!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"Preprocessor config has unknown keys {sorted(unknown)}")
        return cls(**config)

    def to_json(self) -> str:
        """The configuration as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        """Rebuild from :meth:`to_json` output.

        Raises:
            ValueError: for text that is not JSON of a Preprocessor configuration.
        """
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Preprocessor.from_json: not valid JSON ({error})") from error
        if not isinstance(config, dict):
            raise ValueError(  # noqa: TRY004  (bad file content, not a programming error)
                "Preprocessor.from_json: expected a JSON object"
            )
        return cls.from_dict(config)

    # -- the steps -----------------------------------------------------------------------
    def prepare(self, spectrum: object) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Steps shared by every spectrum: vacuum, cut, uniform sampling, resolution.

        Returns:
            ``(wavelength, flux, sigma)`` on a uniform grid over window + margin.

        Raises:
            ValueError: when the spectrum does not cover window + margin, or has a hole there
                and ``fill_gaps`` is false.
        """
        spectrum = Spectrum.coerce(spectrum)
        medium = spectrum.metadata.get("medium", "vacuum")
        if medium == "air":
            spectrum = spectrum.replace(
                wavelength=broadening.air_to_vacuum(spectrum.wavelength),
                metadata={"medium": "vacuum"},
            )
        elif medium != "vacuum":
            warnings.warn(
                f"spectrum {spectrum.source!r}: wavelength medium is {medium!r}; treating it as "
                "vacuum (pass medium='air' or 'vacuum' to read_spectrum)",
                UserWarning,
                stacklevel=2,
            )
        low, high = self.span
        _check_coverage(spectrum, low, high, f"window {self.grid.start:g}-{self.grid.stop:g} A "
                        f"plus {self.margin:g} A margin")
        _handle_gaps(spectrum, low, high, self.fill_gaps, self.gap_factor)
        step = _fine_step(spectrum.wavelength, self.grid)
        n = math.floor((high - low) / step + 1e-9) + 1
        wave = low + step * np.arange(n)
        flux = np.interp(wave, spectrum.wavelength, spectrum.flux)
        sigma = None if spectrum.sigma is None else np.interp(wave, spectrum.wavelength,
                                                              spectrum.sigma)
        if self.resolving_power is not None:
            current = spectrum.metadata.get("resolving_power")
            r_eff = effective_resolving_power(self.resolving_power,
                                              None if current is None else float(current))
            if r_eff is None:
                if float(current) < self.resolving_power:
                    logger.warning("%s: R = %g is below the model's R = %g", spectrum.source,
                                   float(current), self.resolving_power)
            else:
                flux = broadening.instrumental_broadening(wave, flux, r_eff)
        return wave, flux, sigma

    def finish(self, wavelength: np.ndarray, flux: np.ndarray, sigma: np.ndarray | None = None,
               vsini: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Steps after :meth:`prepare`: optional rotation, continuum, grid, scaling.

        Args:
            wavelength, flux, sigma: output of :meth:`prepare`.
            vsini: rotational broadening to apply, km/s (synthetic spectra only).

        Returns:
            ``(flux, sigma)`` on ``grid.wavelength``.
        """
        if vsini:
            flux = broadening.rotational_broadening(wavelength, flux, vsini)
        if self.normalisation == "gisic":
            flux, continuum = continuum_normalize(wavelength, flux, **self.normalisation_options)
            if sigma is not None:
                sigma = sigma / continuum
        target = self.grid.wavelength
        out = np.interp(target, wavelength, flux)
        out_sigma = None if sigma is None else np.interp(target, wavelength, sigma)
        scaled = scale(out, self.scaling)
        if out_sigma is not None and self.scaling in ("max", "minmax"):
            span = out.max() - (out.min() if self.scaling == "minmax" else 0.0)
            out_sigma = out_sigma / span
        return scaled, out_sigma

    def __call__(self, spectrum: object, *, vsini: float | None = None) -> Spectrum:
        """Apply every step to one spectrum (a :class:`Spectrum` or specutils Spectrum).

        Args:
            spectrum: the input spectrum (vacuum or ``metadata['medium'] == 'air'``).
            vsini: rotational broadening, km/s, for synthetic spectra.

        Returns:
            A :class:`Spectrum` on ``grid.wavelength`` with flux in [0, 1] (for the default
            scaling) and ``metadata['preprocessing']`` holding this configuration.

        Raises:
            ValueError: see :meth:`prepare`, :func:`continuum_normalize`, :func:`scale`.
        """
        spectrum = Spectrum.coerce(spectrum)
        wave, flux, sigma = self.prepare(spectrum)
        flux, sigma = self.finish(wave, flux, sigma, vsini)
        return Spectrum(self.grid.wavelength, flux, sigma,
                        {**spectrum.metadata, "medium": "vacuum",
                         "preprocessing": self.to_json()})

    def apply(self, spectra: object) -> np.ndarray:
        """Apply to several spectra; returns an (n, pixels) float32 array."""
        items = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
        return np.stack([self(s).flux for s in items]).astype(np.float32)
