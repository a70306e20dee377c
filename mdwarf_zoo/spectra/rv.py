"""Radial velocities by cross-correlation against a template, and Doppler shifts.

The cross-correlation function is PyAstronomy's ``pyasl.crosscorrRV`` (the template is
Doppler-shifted as ``lambda * (1 + v / c)`` and interpolated onto the spectrum), as in
Mas-Buitrago et al. 2024. Both spectra are divided by their mean and have 1 subtracted
(continuum-normalised absorption spectra then correlate on their lines, not on their level),
and the result is normalised to a correlation coefficient. The peak is refined with a parabola
through the three highest points, and the uncertainty follows Zucker (2003, MNRAS 342, 1291,
eq. 9) from the curvature of the peak and the number of pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PyAstronomy import pyasl

from mdwarf_zoo.spectra.grid import Spectrum

logger = logging.getLogger(__name__)

#: Speed of light, km/s.
C_KMS = 299792.458


@dataclass(frozen=True)
class RadialVelocity:
    """A cross-correlation radial velocity.

    Attributes:
        rv: velocity of the spectrum relative to the template, km/s (positive: redshift).
        uncertainty: 1-sigma uncertainty, km/s.
        barycentric_rv: ``rv + berv`` when the spectrum's header gave a BERV, else ``None``
            (km/s).
        berv: barycentric Earth radial velocity from the header, km/s, or ``None``.
        peak: the correlation coefficient at the peak.
        velocities, ccf: the cross-correlation function.
    """

    rv: float
    uncertainty: float
    barycentric_rv: float | None
    berv: float | None
    peak: float
    velocities: np.ndarray
    ccf: np.ndarray


def doppler_shift(spectrum: Spectrum, rv: float, *, to_rest: bool = False) -> Spectrum:
    """Shift a spectrum by ``rv`` km/s: wavelengths times ``(1 + rv / c)``.

    With ``to_rest=True`` the shift is undone instead (wavelengths divided by ``1 + rv / c``),
    the exact inverse of the shift ``crosscorrRV`` applies to the template.

    Raises:
        ValueError: for a non-finite ``rv`` or one not below c.
    """
    if not math.isfinite(rv) or abs(rv) >= C_KMS:
        raise ValueError(f"doppler_shift: rv must be finite and below c, got {rv!r} km/s")
    factor = 1.0 + rv / C_KMS
    wave = spectrum.wavelength / factor if to_rest else spectrum.wavelength * factor
    return spectrum.replace(wavelength=wave)


def radial_velocity(
    spectrum: object,
    template: object,
    *,
    rv_min: float = -200.0,
    rv_max: float = 200.0,
    rv_step: float = 0.25,
    window: tuple[float, float] | None = None,
) -> RadialVelocity:
    """Radial velocity of ``spectrum`` relative to ``template`` by cross-correlation.

    Args:
        spectrum: the observed spectrum (:class:`Spectrum` or specutils Spectrum).
        template: a template (e.g. a PHOENIX model); it must cover the spectrum's range
            shifted by every trial velocity.
        rv_min, rv_max, rv_step: the trial velocities, km/s.
        window: (start, stop) Angstrom of the spectrum to correlate (default: the part the
            template covers at every trial velocity).

    Returns:
        A :class:`RadialVelocity`.

    Raises:
        ValueError: for a bad velocity range, a template that does not cover the spectrum,
            too few pixels, flat spectra, or a peak at the edge of the velocity range.
    """
    spectrum = Spectrum.coerce(spectrum)
    template = Spectrum.coerce(template)
    if not (math.isfinite(rv_min) and math.isfinite(rv_max) and rv_min < rv_max):
        raise ValueError(f"radial_velocity: need rv_min < rv_max, got {rv_min!r}, {rv_max!r}")
    if not (math.isfinite(rv_step) and 0 < rv_step <= (rv_max - rv_min) / 4):
        raise ValueError(f"radial_velocity: rv_step must be > 0 and give >= 5 trial velocities, "
                         f"got {rv_step!r}")
    # The template shifted by any trial velocity must still cover the correlated range.
    low = template.wavelength[0] * (1 + rv_max / C_KMS)
    high = template.wavelength[-1] * (1 + rv_min / C_KMS)
    if window is not None:
        low, high = max(low, window[0]), min(high, window[1])
    keep = (spectrum.wavelength >= low) & (spectrum.wavelength <= high)
    if keep.sum() < 20:
        raise ValueError(
            f"radial_velocity: spectrum {spectrum.source!r} ({spectrum.wavelength[0]:.2f}-"
            f"{spectrum.wavelength[-1]:.2f} A) and template {template.source!r} "
            f"({template.wavelength[0]:.2f}-{template.wavelength[-1]:.2f} A) overlap in "
            f"{int(keep.sum())} pixels over {rv_min:g}..{rv_max:g} km/s; need at least 20"
        )
    wave, flux = spectrum.wavelength[keep], spectrum.flux[keep]
    data = flux / np.mean(flux) - 1.0
    model = template.flux / np.mean(template.flux) - 1.0
    if np.std(data) == 0 or np.std(model) == 0:
        raise ValueError("radial_velocity: spectrum or template is flat; nothing to correlate")
    velocities, raw = pyasl.crosscorrRV(wave, data, template.wavelength, model, rv_min, rv_max,
                                        rv_step, mode="doppler", skipedge=0)
    # Normalise to a correlation coefficient at each trial velocity.
    norm = np.empty_like(raw)
    for i, v in enumerate(velocities):
        shifted = np.interp(wave, template.wavelength * (1 + v / C_KMS), model)
        norm[i] = math.sqrt(float(np.sum(data**2) * np.sum(shifted**2))) or np.inf
    ccf = raw / norm
    best = int(np.argmax(ccf))
    if best == 0 or best == ccf.size - 1:
        raise ValueError(
            f"radial_velocity: the correlation peaks at the edge of {rv_min:g}..{rv_max:g} km/s "
            f"({velocities[best]:g} km/s); widen the velocity range"
        )
    y0, y1, y2 = ccf[best - 1], ccf[best], ccf[best + 1]
    curvature = (y0 - 2 * y1 + y2) / rv_step**2
    offset = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) * rv_step if curvature < 0 else 0.0
    rv = float(velocities[best] + offset)
    peak = float(min(y1 - 0.25 * (y0 - y2) * offset / rv_step, 0.999999))
    n = wave.size
    if curvature < 0 and 0 < peak < 1:
        variance = -1.0 / (n * curvature / peak * peak**2 / (1 - peak**2))
        uncertainty = float(math.sqrt(variance))
    else:
        uncertainty = float("inf")
        logger.warning("%s: correlation peak is not well defined; uncertainty is infinite",
                       spectrum.source)
    berv = spectrum.metadata.get("berv")
    berv = None if berv is None else float(berv)
    return RadialVelocity(rv, uncertainty, None if berv is None else rv + berv, berv, peak,
                          velocities, ccf)


def to_rest_frame(spectrum: object, template: object, **options: object) -> tuple[Spectrum,
                                                                                  RadialVelocity]:
    """Measure the velocity against ``template`` and shift the spectrum to its rest frame.

    Args:
        spectrum, template: see :func:`radial_velocity`.
        **options: passed to :func:`radial_velocity`.

    Returns:
        ``(shifted_spectrum, velocity)``; ``metadata['rv']`` and ``metadata['rv_error']``
        record the shift (km/s).
    """
    spectrum = Spectrum.coerce(spectrum)
    velocity = radial_velocity(spectrum, template, **options)
    shifted = doppler_shift(spectrum, velocity.rv, to_rest=True).replace(
        metadata={"rv": velocity.rv, "rv_error": velocity.uncertainty}
    )
    return shifted, velocity
