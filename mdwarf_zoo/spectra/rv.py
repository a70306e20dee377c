"""Radial velocities by cross-correlation against a template, and Doppler shifts.

Raw echelle data carry the blaze of each order, and a mean-subtracted correlation of a raw order
against a model correlates the blaze as much as the lines (on HPF's order 6 of Barnard's star
that puts the peak 80 km/s from the truth). So the velocity is measured order by order:

1. The spectrum is cut into segments: its echelle orders when the reader recorded them
   (``metadata['order_spans']``), else pieces between gaps, none longer than 200 A. A single
   segment of 40 A or more is cut into two or three pieces, so that there is always something
   to check the peak against.
2. Each segment, and the part of the template it can see at every trial velocity, is divided
   by a low-order polynomial upper-envelope continuum (a high percentile of the flux in bins,
   then a cubic through them): the blaze and the template's slope go, the lines stay.
3. Each segment's cross-correlation function (the Pearson correlation of the segment with the
   template Doppler-shifted as ``lambda * (1 + v / c)``, as PyAstronomy's ``crosscorrRV`` shifts
   it) is computed on a coarse grid (1 km/s); their pixel-weighted mean is the combined function,
   whose highest peak is the first guess.
4. Segments whose own peak lies within 3 km/s of that guess agree; the others are outliers and
   are left out. Each agreeing segment's peak is refined on a fine grid (``rv_step``) with a
   parabola through its three highest points, its uncertainty follows Zucker (2003, MNRAS 342,
   1291, eq. 9), and the velocity is their inverse-variance weighted mean (uncertainty: the
   larger of the formal one and the scatter of the segments over sqrt(n)).

Quality: the result carries the combined peak, the ratio of the second-highest peak (outside
the main lobe) to the first, and how many segments agree. A second peak >= 0.9 of the first,
a majority of segments that disagree, or a peak under :data:`WEAK_PEAK` is flagged and warned
about (:class:`RadialVelocityWarning`); a peak under :data:`NOISE_PEAK` (no stellar signal
above the noise) raises :class:`RadialVelocityError`, naming the star.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from mdwarf_zoo.spectra.broadening import air_to_vacuum, instrumental_broadening
from mdwarf_zoo.spectra.grid import Spectrum

logger = logging.getLogger(__name__)

#: Speed of light, km/s.
C_KMS = 299792.458
#: A combined correlation peak below this is flagged ``weak`` (and warned about).
WEAK_PEAK = 0.15
#: A combined correlation peak below this is noise: no radial velocity is given.
NOISE_PEAK = 0.05
#: A second peak at least this fraction of the first makes the function ``ambiguous``.
AMBIGUOUS_RATIO = 0.9
#: Segments whose peak lies within this distance of the combined peak agree, km/s.
AGREEMENT_KMS = 3.0
#: Longest piece a 1-D spectrum without recorded orders is cut into for the continuum, A.
MAX_SEGMENT = 200.0
#: Fewest pixels a segment needs to take part.
MIN_PIXELS = 20
#: A spectrum of a single segment is checked in pieces at least this long, A.
MIN_CHECK_SPAN = 20.0
#: A segment takes part only where the template has a line at least this deep (relative to
#: its continuum) within reach of the trial velocities: a featureless stretch of template
#: constrains no velocity and would only add a random peak (and a false "disagreeing").
MIN_TEMPLATE_DEPTH = 0.01


class RadialVelocityWarning(UserWarning):
    """The cross-correlation function is ambiguous, its segments disagree, or its peak is
    weak: the velocity is flagged (``RadialVelocity.flag``) and should be checked."""


class RadialVelocityError(ValueError):
    """No radial velocity can be measured (no signal above the noise, or a peak at the edge of
    the velocity range); the message names the star."""


@dataclass(frozen=True)
class RadialVelocity:
    """A cross-correlation radial velocity and how far to trust it.

    Attributes:
        rv: velocity of the spectrum relative to the template, km/s (positive: redshift).
        uncertainty: 1-sigma uncertainty, km/s.
        barycentric_rv: ``rv + berv`` when the spectrum's metadata gave a BERV, else ``None``
            (km/s).
        berv: barycentric Earth radial velocity, km/s, or ``None``.
        peak: the combined correlation coefficient at the peak.
        velocities, ccf: the combined cross-correlation function (coarse grid everywhere, fine
            grid around the peak).
        second_peak_ratio: highest peak outside the main lobe over the main peak (0 when the
            function has no other peak).
        n_orders: segments (echelle orders) correlated.
        n_agreeing: segments whose own peak agrees with the combined one.
        order_rvs: each segment's own peak velocity, km/s (coarse for those that disagree).
        flag: ``"ok"``, or the problems joined by ``+``: ``ambiguous`` (second peak >= 0.9 of
            the first), ``disagreeing`` (a majority of segments disagree), ``weak`` (peak under
            :data:`WEAK_PEAK`).
        berv_source: where the BERV came from (``"header"``, ``"computed"``) or ``None``.
    """

    rv: float
    uncertainty: float
    barycentric_rv: float | None
    berv: float | None
    peak: float
    velocities: np.ndarray
    ccf: np.ndarray
    second_peak_ratio: float = 0.0
    n_orders: int = 1
    n_agreeing: int = 1
    order_rvs: tuple[float, ...] = field(default_factory=tuple)
    flag: str = "ok"
    berv_source: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is flagged."""
        return self.flag == "ok"

    def record(self) -> dict:
        """The scalar facts, for a table row or a provenance record."""
        return {
            "rv": self.rv,
            "rv_error": self.uncertainty,
            "berv": self.berv,
            "berv_source": self.berv_source,
            "barycentric_rv": self.barycentric_rv,
            "rv_peak": self.peak,
            "rv_second_peak_ratio": self.second_peak_ratio,
            "rv_orders": self.n_orders,
            "rv_orders_agreeing": self.n_agreeing,
            "rv_flag": self.flag,
        }


def doppler_shift(spectrum: Spectrum, rv: float, *, to_rest: bool = False) -> Spectrum:
    """Shift a spectrum by ``rv`` km/s: wavelengths times ``(1 + rv / c)``.

    With ``to_rest=True`` the shift is undone instead (wavelengths divided by ``1 + rv / c``),
    the exact inverse of the shift the cross-correlation applies to the template.
    ``metadata['order_spans']``, when present, moves with the wavelengths.

    Raises:
        ValueError: for a non-finite ``rv`` or one not below c.
    """
    if not math.isfinite(rv) or abs(rv) >= C_KMS:
        raise ValueError(f"doppler_shift: rv must be finite and below c, got {rv!r} km/s")
    factor = 1.0 + rv / C_KMS
    factor = 1.0 / factor if to_rest else factor
    changes: dict = {"wavelength": spectrum.wavelength * factor}
    spans = spectrum.metadata.get("order_spans")
    if spans:
        changes["metadata"] = {"order_spans": [[lo * factor, hi * factor] for lo, hi in spans]}
    return spectrum.replace(**changes)


def star_name(spectrum: Spectrum) -> str:
    """``'OBJECT' (file)`` or the file alone, for messages."""
    name = spectrum.metadata.get("object")
    return f"{name!r} ({spectrum.source})" if name else repr(spectrum.source)


def _upper_envelope(wave: np.ndarray, flux: np.ndarray, degree: int = 3) -> np.ndarray:
    """A low-order polynomial through the 90th percentile of the flux in bins."""
    span = wave[-1] - wave[0]
    x = (wave - wave[0]) / span * 2.0 - 1.0 if span > 0 else np.zeros_like(wave)
    n_bins = int(np.clip(wave.size // 100, 4, 20))
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    centres, levels = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (x >= lo) & (x <= hi)
        if inside.sum() >= 3:
            centres.append(float(np.median(x[inside])))
            levels.append(float(np.percentile(flux[inside], 90)))
    if len(centres) < 2:
        return np.full_like(flux, float(np.percentile(flux, 90)))
    coefficients = np.polyfit(centres, levels, min(degree, len(centres) - 1))
    envelope = np.polyval(coefficients, x)
    # A blaze never reaches zero inside an order; keep a noisy fit from dividing by ~0.
    floor = 0.05 * float(np.max(np.abs(levels)))
    return np.where(envelope > floor, envelope, floor)


def _segments(spectrum: Spectrum, low: float, high: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(wavelength, flux) pieces inside ``low..high``: one per recorded order, else pieces
    between gaps, none longer than :data:`MAX_SEGMENT`."""
    wave, flux = spectrum.wavelength, spectrum.flux
    spans = spectrum.metadata.get("order_spans")
    if spans:
        bounds = [(float(lo), float(hi)) for lo, hi in spans]
    else:
        step = np.diff(wave)
        breaks = np.flatnonzero(step > 10 * np.median(step)) if wave.size > 2 else []
        starts = np.concatenate([[0], np.asarray(breaks, dtype=int) + 1])
        stops = np.concatenate([np.asarray(breaks, dtype=int), [wave.size - 1]])
        bounds = []
        for a, b in zip(starts, stops, strict=True):
            lo, hi = float(wave[a]), float(wave[b])
            pieces = max(1, math.ceil((hi - lo) / MAX_SEGMENT))
            edges = np.linspace(lo, hi, pieces + 1)
            bounds.extend(zip(edges[:-1], edges[1:], strict=True))
    segments = []
    for lo, hi in bounds:
        keep = (wave >= max(lo, low)) & (wave <= min(hi, high))
        if keep.sum() >= MIN_PIXELS:
            segments.append((wave[keep], flux[keep]))
    if len(segments) == 1:
        # One piece cannot be checked against another: cut it into pieces of at least
        # MIN_CHECK_SPAN, so that a template whose lines do not match the star shows up as
        # pieces that disagree instead of one confident wrong peak.
        seg_wave, seg_flux = segments[0]
        pieces = min(3, int((seg_wave[-1] - seg_wave[0]) // MIN_CHECK_SPAN))
        if pieces >= 2:
            edges = np.linspace(seg_wave[0], seg_wave[-1], pieces + 1)
            index = np.clip(np.searchsorted(edges, seg_wave, side="right") - 1, 0, pieces - 1)
            split = [(seg_wave[index == i], seg_flux[index == i]) for i in range(pieces)]
            if all(w.size >= MIN_PIXELS for w, _ in split):
                segments = split
    return segments


def _in_vacuum(spectrum: Spectrum, template: Spectrum) -> Spectrum:
    """An air-wavelength spectrum in vacuum wavelengths when the template is not in air (an
    air/vacuum mismatch is a false ~70 km/s shift at 8800 A)."""
    if spectrum.metadata.get("medium") != "air" or template.metadata.get("medium") == "air":
        return spectrum

    facts: dict = {"medium": "vacuum"}
    spans = spectrum.metadata.get("order_spans")
    if spans:
        facts["order_spans"] = [[float(air_to_vacuum(lo)), float(air_to_vacuum(hi))]
                                for lo, hi in spans]
    return spectrum.replace(wavelength=air_to_vacuum(spectrum.wavelength), metadata=facts)


def _matching_resolution(spectrum: Spectrum, template: Spectrum) -> float | None:
    """R of the Gaussian that brings the template to the spectrum's resolving power, when
    both are known (``metadata['resolving_power']``) and the template's is higher."""
    observed = spectrum.metadata.get("resolving_power")
    model = template.metadata.get("resolving_power")
    if observed is None:
        return None
    observed = float(observed)
    if model is None:
        return observed
    model = float(model)
    if model <= observed * 1.01:
        return None
    return 1.0 / math.sqrt(1.0 / observed**2 - 1.0 / model**2)


def _matched(wave: np.ndarray, flux: np.ndarray,
             kernel_r: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A template piece broadened to the spectrum's resolution (on an even grid at its
    finest step, as the convolution needs one); unchanged without a kernel."""
    if kernel_r is None or wave.size < 10:
        return wave, flux

    # A third of the finest step: linear interpolation of the shifted template then adds
    # little of its own smoothing.
    step = float(np.min(np.diff(wave))) / 3.0
    even = np.arange(wave[0], wave[-1], step)
    return even, instrumental_broadening(even, np.interp(even, wave, flux), kernel_r)


def _correlate(wave: np.ndarray, data: np.ndarray, template_wave: np.ndarray,
               model: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``data`` with the template shifted by each velocity."""
    centred = data - data.mean()
    norm = math.sqrt(float(np.sum(centred**2)))
    ccf = np.zeros(velocities.size)
    if norm == 0:
        return ccf
    for i, v in enumerate(velocities):
        shifted = np.interp(wave, template_wave * (1.0 + v / C_KMS), model)
        shifted = shifted - shifted.mean()
        scale = math.sqrt(float(np.sum(shifted**2)))
        ccf[i] = float(np.dot(centred, shifted)) / (norm * scale) if scale > 0 else 0.0
    return ccf


def _refine(velocities: np.ndarray, ccf: np.ndarray, step: float,
            n_pixels: int) -> tuple[float, float, float] | None:
    """Parabolic peak, its height and Zucker's uncertainty; ``None`` at an edge."""
    best = int(np.argmax(ccf))
    if best == 0 or best == ccf.size - 1:
        return None
    y0, y1, y2 = ccf[best - 1], ccf[best], ccf[best + 1]
    denominator = y0 - 2 * y1 + y2
    curvature = denominator / step**2
    offset = 0.5 * (y0 - y2) / denominator * step if curvature < 0 else 0.0
    peak = float(min(y1 - 0.25 * (y0 - y2) * offset / step, 0.999999))
    if curvature < 0 and 0 < peak < 1:
        variance = -1.0 / (n_pixels * curvature / peak * peak**2 / (1 - peak**2))
        uncertainty = math.sqrt(variance)
    else:
        uncertainty = math.inf
    return float(velocities[best] + offset), peak, uncertainty


def _second_peak_ratio(velocities: np.ndarray, ccf: np.ndarray, best: int) -> float:
    """Highest local maximum outside the main lobe (where the CCF stays above half the
    peak) over the peak."""
    peak = ccf[best]
    if peak <= 0:
        return 1.0
    lo = best
    while lo > 0 and ccf[lo - 1] > 0.5 * peak:
        lo -= 1
    hi = best
    while hi < ccf.size - 1 and ccf[hi + 1] > 0.5 * peak:
        hi += 1
    interior = np.arange(1, ccf.size - 1)
    local = interior[(ccf[1:-1] > ccf[:-2]) & (ccf[1:-1] >= ccf[2:])]
    others = local[(local < lo) | (local > hi)]
    if others.size == 0:
        return 0.0
    return float(max(0.0, ccf[others].max()) / peak)


def radial_velocity(
    spectrum: object,
    template: object,
    *,
    rv_min: float = -300.0,
    rv_max: float = 300.0,
    rv_step: float = 0.25,
    window: tuple[float, float] | None = None,
    warn: bool = True,
) -> RadialVelocity:
    """Radial velocity of ``spectrum`` relative to ``template`` by cross-correlation, order by
    order (see the module docstring for the method).

    Args:
        spectrum: the observed spectrum (:class:`Spectrum` or specutils Spectrum), raw or
            normalised; echelle orders merged by ``read_spectrum`` are correlated separately.
            A spectrum in air (``metadata['medium'] == 'air'``) is correlated in vacuum
            wavelengths unless the template is in air too.
        template: a template (e.g. a PHOENIX model, raw flux is fine); it must cover the
            spectrum's range shifted by every trial velocity (parts it does not cover are left
            out). When the spectrum's ``metadata['resolving_power']`` is known, the template
            is broadened to it first (from its own ``resolving_power``, or as unbroadened
            when it has none).
        rv_min, rv_max: the trial velocities, km/s (default +-300).
        rv_step: the fine step around the peak, km/s (the search runs at 1 km/s or this step
            when coarser).
        window: (start, stop) Angstrom of the spectrum to correlate (default: all of it that
            the template covers at every trial velocity).
        warn: issue a :class:`RadialVelocityWarning` when the result is flagged.

    Returns:
        A :class:`RadialVelocity`.

    Raises:
        ValueError: for a bad velocity range, or a template that does not cover the spectrum.
        RadialVelocityError: when the correlation peak is at the noise level or at the edge of
            the velocity range (the message names the star).

    Examples:
        >>> from mdwarf_zoo.spectra import read_spectrum, radial_velocity
        >>> s = read_spectrum("GJ_699.fits", flux_ext="Sci Flux", wave_ext="Sci Wavl",
        ...                   window=(8600, 8890))  # doctest: +SKIP
        >>> rv = radial_velocity(s, template, rv_min=-300, rv_max=300)  # doctest: +SKIP
        >>> rv.barycentric_rv, rv.flag  # doctest: +SKIP
    """
    spectrum = _in_vacuum(Spectrum.coerce(spectrum), Spectrum.coerce(template))
    template = Spectrum.coerce(template)
    _check_velocity_range(rv_min, rv_max, rv_step)
    prepared = _prepare(spectrum, template, rv_min, rv_max, window)
    coarse_step = min(max(rv_step, 1.0), (rv_max - rv_min) / 4)
    coarse = np.arange(rv_min, rv_max + 0.5 * coarse_step, coarse_step)
    weights = np.array([p[0].size for p in prepared], dtype=np.float64)
    ccfs, combined = _correlations(prepared, weights, coarse)
    best = _coarse_peak(spectrum, template, coarse, combined, rv_min, rv_max)
    guess = float(coarse[best])
    ratio = _second_peak_ratio(coarse, combined, best)
    fine = _fine_grid(guess, coarse_step, rv_step, rv_min, rv_max)
    fine_ccfs, combined_fine = _correlations(prepared, weights, fine)
    order_rvs, values, errors = _segment_velocities(
        prepared, coarse, ccfs, fine, fine_ccfs, guess, coarse_step, rv_step
    )
    overall = _refine(fine, combined_fine, rv_step, int(weights.sum()))
    peak = overall[1] if overall is not None else float(combined[best])
    rv, uncertainty = _combined_velocity(values, errors, overall, guess)
    flag = _flag(ratio, len(prepared), len(values), peak)
    if flag != "ok" and warn:
        _warn_flagged(spectrum, flag, rv, peak, ratio, len(values), order_rvs)
    if not math.isfinite(uncertainty):
        logger.warning(
            "%s: correlation peak is not well defined; uncertainty is infinite", spectrum.source
        )
    berv = spectrum.metadata.get("berv")
    berv = None if berv is None else float(berv)
    velocities, ccf = _merged_ccf(coarse, combined, fine, combined_fine)
    return RadialVelocity(
        rv=rv,
        uncertainty=float(uncertainty),
        barycentric_rv=None if berv is None else rv + berv,
        berv=berv,
        peak=float(peak),
        velocities=velocities,
        ccf=ccf,
        second_peak_ratio=float(ratio),
        n_orders=len(prepared),
        n_agreeing=len(values),
        order_rvs=tuple(float(v) for v in order_rvs),
        flag=flag,
        berv_source=spectrum.metadata.get("berv_source") if berv is not None else None,
    )


def _check_velocity_range(rv_min: float, rv_max: float, rv_step: float) -> None:
    if not (math.isfinite(rv_min) and math.isfinite(rv_max) and rv_min < rv_max):
        raise ValueError(f"radial_velocity: need rv_min < rv_max, got {rv_min!r}, {rv_max!r}")
    if not (math.isfinite(rv_step) and 0 < rv_step <= (rv_max - rv_min) / 4):
        raise ValueError(
            f"radial_velocity: rv_step must be > 0 and give >= 5 trial velocities, got {rv_step!r}"
        )


def _prepare(
    spectrum: Spectrum,
    template: Spectrum,
    rv_min: float,
    rv_max: float,
    window: tuple[float, float] | None,
) -> list[tuple[np.ndarray, ...]]:
    """``(wave, data, template_wave, model)`` of every segment worth correlating: the segment
    and the template around it, each divided by its upper envelope, minus one."""
    # The template shifted by any trial velocity must still cover the correlated range.
    low = template.wavelength[0] * (1 + rv_max / C_KMS)
    high = template.wavelength[-1] * (1 + rv_min / C_KMS)
    if window is not None:
        low, high = max(low, window[0]), min(high, window[1])
    segments = _segments(spectrum, low, high)
    n_overlap = int(np.sum((spectrum.wavelength >= low) & (spectrum.wavelength <= high)))
    if not segments:
        raise ValueError(
            f"radial_velocity: spectrum {spectrum.source!r} ({spectrum.wavelength[0]:.2f}-"
            f"{spectrum.wavelength[-1]:.2f} A) and template {template.source!r} "
            f"({template.wavelength[0]:.2f}-{template.wavelength[-1]:.2f} A) overlap in "
            f"{n_overlap} pixels over {rv_min:g}..{rv_max:g} km/s; need at least "
            f"{MIN_PIXELS} in one order"
        )
    kernel_r = _matching_resolution(spectrum, template)
    prepared = []
    for wave, flux in segments:
        data = flux / _upper_envelope(wave, flux) - 1.0
        pad = 2.0 + wave[-1] * max(abs(rv_min), abs(rv_max)) / C_KMS
        near = (template.wavelength >= wave[0] - pad) & (template.wavelength <= wave[-1] + pad)
        t_wave, t_flux = _matched(template.wavelength[near], template.flux[near], kernel_r)
        model = t_flux / _upper_envelope(t_wave, t_flux) - 1.0
        if np.std(data) == 0 or -np.min(model, initial=0.0) < MIN_TEMPLATE_DEPTH:
            continue
        prepared.append((wave, data, t_wave, model))
    if not prepared:
        raise RadialVelocityError(
            f"radial_velocity: spectrum {star_name(spectrum)} or template {template.source!r} "
            "is flat in every order; nothing to correlate"
        )
    return prepared


def _coarse_peak(
    spectrum: Spectrum,
    template: Spectrum,
    coarse: np.ndarray,
    combined: np.ndarray,
    rv_min: float,
    rv_max: float,
) -> int:
    """Index of the combined function's highest point; an error when it lies at an edge of the
    velocity range or under the noise level."""
    best = int(np.argmax(combined))
    if best == 0 or best == coarse.size - 1:
        raise RadialVelocityError(
            f"radial_velocity: for {star_name(spectrum)} the correlation peaks at the edge of "
            f"{rv_min:g}..{rv_max:g} km/s ({coarse[best]:g} km/s); widen the velocity range"
        )
    if combined[best] < NOISE_PEAK:
        raise RadialVelocityError(
            f"radial_velocity: the S/N of {star_name(spectrum)} is too low for a radial "
            f"velocity: the correlation with template {template.source!r} peaks at "
            f"{combined[best]:.3f}, under the noise level {NOISE_PEAK}"
        )
    return best


def _segment_velocities(
    prepared: list,
    coarse: np.ndarray,
    ccfs: np.ndarray,
    fine: np.ndarray,
    fine_ccfs: np.ndarray,
    guess: float,
    coarse_step: float,
    rv_step: float,
) -> tuple[list[float], list[float], list[float]]:
    """Each segment's own peak (refined where it agrees with ``guess``), and the refined
    velocities and uncertainties of the agreeing segments."""
    order_rvs, values, errors = [], [], []
    for k, (wave, *_rest) in enumerate(prepared):
        own = float(coarse[int(np.argmax(ccfs[k]))])
        refined = _refine(fine, fine_ccfs[k], rv_step, wave.size)
        if abs(own - guess) > AGREEMENT_KMS + coarse_step or refined is None:
            order_rvs.append(own)
            continue
        order_rvs.append(refined[0])
        if abs(refined[0] - guess) <= AGREEMENT_KMS + coarse_step:
            values.append(refined[0])
            errors.append(refined[2])
    return order_rvs, values, errors


def _combined_velocity(
    values: list[float],
    errors: list[float],
    overall: tuple[float, float, float] | None,
    guess: float,
) -> tuple[float, float]:
    """Inverse-variance weighted mean of the agreeing segments (uncertainty: the larger of the
    formal one and their scatter over sqrt(n)); the combined function's peak when none agree."""
    if not values:
        rv = overall[0] if overall is not None else guess
        return rv, overall[2] if overall is not None else math.inf
    values_a, errors_a = np.array(values), np.array(errors)
    finite = np.isfinite(errors_a) & (errors_a > 0)
    if finite.any():
        w = 1.0 / errors_a[finite] ** 2
        rv = float(np.sum(w * values_a[finite]) / w.sum())
        uncertainty = math.sqrt(1.0 / w.sum())
    else:
        rv, uncertainty = float(np.mean(values_a)), math.inf
    if values_a.size >= 2:
        uncertainty = max(uncertainty, float(np.std(values_a, ddof=1)) / math.sqrt(values_a.size))
    return rv, uncertainty


def _flag(ratio: float, n_orders: int, n_agreeing: int, peak: float) -> str:
    """``"ok"`` or the problems joined by ``+`` (see :class:`RadialVelocity`)."""
    problems = []
    if ratio >= AMBIGUOUS_RATIO:
        problems.append("ambiguous")
    if n_orders >= 2 and 2 * n_agreeing <= n_orders:
        problems.append("disagreeing")
    if peak < WEAK_PEAK:
        problems.append("weak")
    return "+".join(problems) or "ok"


def _correlations(
    prepared: list, weights: np.ndarray, velocities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's cross-correlation function, and their pixel-weighted mean."""
    ccfs = np.array([_correlate(w, d, tw, m, velocities) for w, d, tw, m in prepared])
    return ccfs, weights @ ccfs / weights.sum()


def _fine_grid(
    guess: float, coarse_step: float, rv_step: float, rv_min: float, rv_max: float
) -> np.ndarray:
    """The fine trial velocities around the guess, wide enough for every agreeing segment's
    own peak."""
    half = AGREEMENT_KMS + 3 * coarse_step
    fine = np.arange(guess - half, guess + half + 0.5 * rv_step, rv_step)
    return fine[(fine > rv_min) & (fine < rv_max)]


def _merged_ccf(
    coarse: np.ndarray, combined: np.ndarray, fine: np.ndarray, combined_fine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The combined function on the coarse and the fine grid together, by velocity."""
    velocities = np.concatenate([coarse, fine])
    values = np.concatenate([combined, combined_fine])
    order = np.argsort(velocities, kind="stable")
    return velocities[order], values[order]


def _warn_flagged(
    spectrum: Spectrum,
    flag: str,
    rv: float,
    peak: float,
    ratio: float,
    n_agreeing: int,
    order_rvs: list[float],
) -> None:
    # stacklevel 3: the warning points at the caller of radial_velocity.
    warnings.warn(
        f"radial velocity of {star_name(spectrum)} is flagged {flag!r}: {rv:+.2f} km/s, "
        f"peak {peak:.3f}, second peak {ratio:.2f} of the first, {n_agreeing} of "
        f"{len(order_rvs)} orders agree (order peaks "
        f"{', '.join(f'{v:+.1f}' for v in order_rvs)} km/s); check it before use",
        RadialVelocityWarning,
        stacklevel=3,
    )


def to_rest_frame(
    spectrum: object,
    template: object,
    *,
    refine_window: tuple[float, float] | None = None,
    **options: object,
) -> tuple[Spectrum, RadialVelocity]:
    """Measure the velocity against ``template`` and shift the spectrum to its rest frame.

    Different orders of one spectrograph agree to ~0.5-1 km/s only (template mismatch, blends,
    the wavelength solution), so a model that reads one window is best served by the velocity
    of that window. With ``refine_window``, the velocity found over all orders (robust against
    a wrong peak) is refined within +-10 km/s of it on ``refine_window`` alone.

    Args:
        spectrum, template: see :func:`radial_velocity`.
        refine_window: (start, stop) Angstrom of the second pass, e.g. a model's window plus
            margin (``Preprocessor.span``); ``None``: no second pass.
        **options: passed to :func:`radial_velocity`.

    Returns:
        ``(shifted_spectrum, velocity)``; ``metadata['rv']``, ``metadata['rv_error']`` and
        ``metadata['rv_flag']`` record the shift (km/s). With a second pass, ``velocity.rv``
        is the refined velocity and ``velocity.order_rvs`` still lists the orders' peaks.
    """

    spectrum = Spectrum.coerce(spectrum)
    velocity = radial_velocity(spectrum, template, **options)
    if refine_window is not None:
        local_options = {k: v for k, v in options.items() if k in ("rv_step",)}
        try:
            local = radial_velocity(spectrum, template, rv_min=velocity.rv - 10.0,
                                    rv_max=velocity.rv + 10.0, window=refine_window,
                                    warn=False, **local_options)
        except ValueError as error:
            logger.warning("%s: no second pass on %s A (%s); the velocity of all orders is "
                           "used", spectrum.source, refine_window, error)
        else:
            velocity = dataclasses.replace(
                velocity,
                rv=local.rv,
                uncertainty=local.uncertainty,
                barycentric_rv=None if velocity.berv is None else local.rv + velocity.berv,
            )
    shifted = doppler_shift(spectrum, velocity.rv, to_rest=True).replace(
        metadata={"rv": velocity.rv, "rv_error": velocity.uncertainty, "rv_flag": velocity.flag}
    )
    return shifted, velocity
