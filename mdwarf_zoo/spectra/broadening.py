"""Line broadening and air/vacuum wavelength conversion.

Rotational broadening uses the Gray (2005) profile with linear limb darkening and one kernel
for the whole window, sampled exactly as PyAstronomy's ``pyasl.fastRotBroad`` samples it, so
the two agree to floating-point precision away from the edges. Instrumental broadening is a
Gaussian of FWHM = (mean wavelength) / R, as in PyAstronomy's ``pyasl.instrBroadGaussFast``.
Both accept one spectrum or a stack of spectra sharing one wavelength grid, and, unlike
PyAstronomy's defaults, pad the edges with the first and last flux values (PyAstronomy's
``edgeHandling="firstlast"``), so a normalised spectrum does not sag at the ends.

Air/vacuum conversion uses the refractive index of standard dry air of Ciddor (1996),
Applied Optics 35, 1566, eqs. 1-2 (15 degC, 101325 Pa, 450 ppm CO2), the formula behind
PyAstronomy's ``airtovac2``/``vactoair2`` (mode "ciddor"); valid from 3000 to 16900 A.

Sources:
    Gray, D. F. 2005, The Observation and Analysis of Stellar Photospheres, 3rd ed., ch. 18.
    Czesla, S. et al. 2019, PyAstronomy (ascl:1906.010), ``pyasl.fastRotBroad``,
    ``pyasl.instrBroadGaussFast``, ``pyasl.airtovac2``.
    Ciddor, P. E. 1996, Applied Optics 35, 1566.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal

__all__ = [
    "air_to_vacuum",
    "gaussian_kernel",
    "instrumental_broadening",
    "rotational_broadening",
    "rotational_kernel",
    "vacuum_to_air",
]

#: Speed of light, km/s.
SPEED_OF_LIGHT_KMS = 299792.458

# Relative tolerance on the pixel spacing of an "evenly spaced" wavelength grid.
_EVEN_RTOL = 1e-5
# Kernels longer than this are applied by FFT (overlap-add), shorter ones directly.
_DIRECT_KERNEL_MAX = 96
# Ciddor (1996) range of validity, Angstrom (as enforced by PyAstronomy too).
_CIDDOR_RANGE = (3000.0, 16900.0)


def _check_wavelength(wavelength: np.ndarray, function: str) -> tuple[np.ndarray, float]:
    """Validate an evenly spaced, increasing, finite wavelength grid; return it and its step."""
    wavelength = np.asarray(wavelength, dtype=np.float64)
    if wavelength.ndim != 1 or wavelength.size < 2:
        raise ValueError(
            f"{function}: wavelength must be a 1-D array of at least 2 values (Angstrom), "
            f"got shape {wavelength.shape}"
        )
    if not np.all(np.isfinite(wavelength)):
        bad = int(np.flatnonzero(~np.isfinite(wavelength))[0])
        raise ValueError(
            f"{function}: wavelength contains a non-finite value {float(wavelength[bad])!r} "
            f"at index {bad}"
        )
    steps = np.diff(wavelength)
    if np.any(steps <= 0):
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"{function}: wavelength must be strictly increasing, but wavelength[{bad + 1}] = "
            f"{float(wavelength[bad + 1])!r} follows {float(wavelength[bad])!r}"
        )
    step = float(wavelength[-1] - wavelength[0]) / (wavelength.size - 1)
    deviation = float(np.max(np.abs(steps - step)))
    if deviation > _EVEN_RTOL * step:
        raise ValueError(
            f"{function}: wavelength must be evenly spaced (steps differ by up to "
            f"{deviation:.3g} A around a mean step of {step:.6g} A); resample the spectrum onto "
            "a uniform grid "
            "first, e.g. with mdwarf_zoo.spectra.grid.WavelengthGrid"
        )
    return wavelength, step


def _check_flux(flux: np.ndarray, n_pixels: int, function: str) -> np.ndarray:
    """Validate a finite flux array of shape (n_pixels,) or (n_spectra, n_pixels)."""
    flux = np.asarray(flux, dtype=np.float64)
    if flux.ndim not in (1, 2) or flux.shape[-1] != n_pixels:
        raise ValueError(
            f"{function}: flux must have shape ({n_pixels},) or (n_spectra, {n_pixels}) to match "
            f"the wavelength grid, got shape {flux.shape}"
        )
    if not np.all(np.isfinite(flux)):
        bad = np.argwhere(~np.isfinite(flux))[0]
        raise ValueError(
            f"{function}: flux contains a non-finite value {float(flux[tuple(bad)])!r} at index "
            f"{tuple(int(i) for i in bad)}; mask or interpolate bad pixels first"
        )
    return flux


def _check_scalar(value: float, name: str, function: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{function}: {name} must be a number, got {value!r}") from error
    if not math.isfinite(value):
        raise ValueError(f"{function}: {name} must be finite, got {value!r}")
    return value


def _convolve_edges(flux: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve along the last axis with an odd, centred kernel, padding with the edge values."""
    if kernel.size == 1:
        return flux * kernel[0]
    if kernel.size <= _DIRECT_KERNEL_MAX:
        return ndimage.convolve1d(flux, kernel, axis=-1, mode="nearest")
    half = kernel.size // 2
    padded = np.pad(flux, [(0, 0)] * (flux.ndim - 1) + [(half, half)], mode="edge")
    return signal.oaconvolve(
        padded, kernel.reshape((1,) * (flux.ndim - 1) + (-1,)), "valid", axes=-1
    )


def rotational_kernel(
    step: float, vsini: float, limb_darkening: float, reference_wavelength: float
) -> np.ndarray:
    """The discrete rotational-broadening kernel (Gray 2005, eq. 18.14), summing to one.

    Sampled on the same pixel offsets as PyAstronomy's ``pyasl.fastRotBroad``.

    Args:
        step: pixel size, Angstrom.
        vsini: projected rotational velocity, km/s (> 0).
        limb_darkening: linear limb-darkening coefficient epsilon, 0..1.
        reference_wavelength: wavelength at which the kernel width is evaluated, Angstrom.

    Returns:
        An odd-length, symmetric kernel (float64) that sums to one.
    """
    half_width = vsini / SPEED_OF_LIGHT_KMS * reference_wavelength
    n_half = int(np.floor(half_width / step)) + 1
    offset = (np.arange(4 * n_half) - 2 * n_half) * step
    x = offset / half_width
    inside = np.abs(x) < 1.0
    c1 = 2.0 * (1.0 - limb_darkening) / (np.pi * half_width * (1.0 - limb_darkening / 3.0))
    c2 = limb_darkening / (2.0 * half_width * (1.0 - limb_darkening / 3.0))
    kernel = c1 * np.sqrt(1.0 - x[inside] ** 2) + c2 * (1.0 - x[inside] ** 2)
    return kernel / kernel.sum()


def rotational_broadening(
    wavelength: np.ndarray,
    flux: np.ndarray,
    vsini: float,
    limb_darkening: float = 0.6,
) -> np.ndarray:
    """Broaden spectra by stellar rotation with one kernel for the whole window.

    The Gray (2005) rotation profile with linear limb darkening, evaluated at the mean
    wavelength (the wavelength dependence of the Doppler width, 0.3 % over the MB24 window, is
    neglected, as in PyAstronomy ``pyasl.fastRotBroad``). Away from the edges (one kernel
    half-width, ``vsini / c * wavelength``) the result equals ``fastRotBroad``'s to
    floating-point precision; at the edges the flux is padded with its first and last values
    instead of zeros. The kernel sums to one, so the mean flux is conserved.

    Args:
        wavelength: evenly spaced, increasing wavelengths, Angstrom, shape (n_pixels,).
        flux: shape (n_pixels,) or (n_spectra, n_pixels).
        vsini: projected rotational velocity, km/s, >= 0; 0 returns a copy of ``flux``.
        limb_darkening: linear limb-darkening coefficient epsilon, 0..1 (default 0.6).

    Returns:
        The broadened flux, float64, same shape as ``flux``.

    Raises:
        ValueError: for a wavelength grid that is not 1-D, finite, increasing and evenly
            spaced; non-finite flux or a shape mismatch; negative or non-finite ``vsini``;
            ``limb_darkening`` outside 0..1.

    Examples:
        >>> from mdwarf_zoo.spectra.grid import MB24_GRID
        >>> wl = MB24_GRID.wavelength
        >>> broad = rotational_broadening(wl, 1 - 0.5 * np.exp(-((wl - 8817) / 0.05) ** 2), 10.0)
    """
    function = "rotational_broadening"
    wavelength, step = _check_wavelength(wavelength, function)
    flux = _check_flux(flux, wavelength.size, function)
    vsini = _check_scalar(vsini, "vsini", function)
    limb_darkening = _check_scalar(limb_darkening, "limb_darkening", function)
    if vsini < 0:
        raise ValueError(f"{function}: vsini must be >= 0 km/s, got {vsini!r}")
    if not 0.0 <= limb_darkening <= 1.0:
        raise ValueError(
            f"{function}: limb_darkening (linear coefficient) must lie in 0..1, "
            f"got {limb_darkening!r}"
        )
    if vsini == 0.0:
        return flux.copy()
    kernel = rotational_kernel(step, vsini, limb_darkening, float(np.mean(wavelength)))
    return _convolve_edges(flux, kernel)


def gaussian_kernel(step: float, sigma: float, n_sigma: float = 8.0) -> np.ndarray:
    """A Gaussian sampled at pixel centres out to ``n_sigma`` standard deviations, summing to one.

    Args:
        step: pixel size, Angstrom.
        sigma: standard deviation, Angstrom.
        n_sigma: half-width of the kernel in standard deviations.

    Returns:
        An odd-length, symmetric kernel (float64) that sums to one.
    """
    n_half = max(math.ceil(n_sigma * sigma / step), 1)
    offset = np.arange(-n_half, n_half + 1) * step
    kernel = np.exp(-0.5 * (offset / sigma) ** 2)
    return kernel / kernel.sum()


def instrumental_broadening(
    wavelength: np.ndarray, flux: np.ndarray, resolving_power: float
) -> np.ndarray:
    """Convolve spectra with a Gaussian instrumental profile of FWHM = lambda / R.

    The FWHM is evaluated at the mean wavelength, as PyAstronomy ``pyasl.instrBroadGaussFast``
    does; the kernel is cut at 8 standard deviations (the neglected tail is below 1e-14).
    With ``edgeHandling="firstlast"`` in PyAstronomy the two agree to about 1e-12.

    Args:
        wavelength: evenly spaced, increasing wavelengths, Angstrom, shape (n_pixels,).
        flux: shape (n_pixels,) or (n_spectra, n_pixels).
        resolving_power: R = lambda / FWHM, > 0 (CARMENES VIS: 94,600).

    Returns:
        The broadened flux, float64, same shape as ``flux``.

    Raises:
        ValueError: for a bad wavelength grid or flux (see ``rotational_broadening``), or a
            ``resolving_power`` that is not a finite number > 0.

    Examples:
        >>> from mdwarf_zoo.spectra.grid import MB24_GRID
        >>> wl = MB24_GRID.wavelength
        >>> broad = instrumental_broadening(wl, np.ones_like(wl), 94600)
    """
    function = "instrumental_broadening"
    wavelength, step = _check_wavelength(wavelength, function)
    flux = _check_flux(flux, wavelength.size, function)
    resolving_power = _check_scalar(resolving_power, "resolving_power", function)
    if resolving_power <= 0:
        raise ValueError(f"{function}: resolving_power must be > 0, got {resolving_power!r}")
    fwhm = float(np.mean(wavelength)) / resolving_power
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return _convolve_edges(flux, gaussian_kernel(step, sigma))


def _check_range(wavelength: np.ndarray, function: str) -> np.ndarray:
    array = np.asarray(wavelength, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{function}: wavelength must be finite, got non-finite values")
    low, high = _CIDDOR_RANGE
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(
            f"{function}: the Ciddor (1996) formula covers {low:.0f}-{high:.0f} A, got "
            f"wavelengths {array.min():.6g}-{array.max():.6g} A (are they in Angstrom?)"
        )
    return array


def _ciddor_index(vacuum_wavelength: np.ndarray) -> np.ndarray:
    """Refractive index of standard air at a vacuum wavelength in Angstrom (Ciddor 1996)."""
    sigma2 = (1e4 / vacuum_wavelength) ** 2  # wavenumber squared, micron^-2
    return 1.0 + (5792105.0 / (238.0185 - sigma2) + 167917.0 / (57.362 - sigma2)) * 1e-8


def vacuum_to_air(wavelength: np.ndarray | float) -> np.ndarray | float:
    """Convert vacuum wavelengths to standard-air wavelengths (Ciddor 1996).

    Args:
        wavelength: vacuum wavelength(s), Angstrom, within 3000-16900.

    Returns:
        Air wavelength(s), Angstrom, a float for a scalar input, else an array.

    Raises:
        ValueError: for non-finite values or wavelengths outside 3000-16900 A.

    Examples:
        >>> round(vacuum_to_air(8808.18), 2)
        8805.76
    """
    array = _check_range(wavelength, "vacuum_to_air")
    result = array / _ciddor_index(array)
    return float(result) if result.ndim == 0 else result


def air_to_vacuum(wavelength: np.ndarray | float) -> np.ndarray | float:
    """Convert standard-air wavelengths to vacuum wavelengths: the inverse of
    :func:`vacuum_to_air` (Ciddor 1996), for air wavelengths in Angstrom within 3000-16900,
    giving a float for a scalar and an array otherwise, and raising the same ValueError.

    The Ciddor index is a function of the vacuum wavelength, so the inversion is iterated
    (fixed point, converging to 1e-12 A in three or four steps), as PyAstronomy ``airtovac2``.

    Examples:
        >>> round(air_to_vacuum(8806.757), 2)
        8809.18
    """
    air = _check_range(wavelength, "air_to_vacuum")
    vacuum = air * _ciddor_index(air)
    if vacuum.size == 0:
        return vacuum
    for _ in range(20):
        updated = air * _ciddor_index(vacuum)
        converged = np.max(np.abs(updated - vacuum)) < 1e-12 * max(1.0, float(np.max(air)))
        vacuum = updated
        if converged:
            break
    return float(vacuum) if vacuum.ndim == 0 else vacuum
