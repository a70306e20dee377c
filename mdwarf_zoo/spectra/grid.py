"""Wavelength grids (Angstrom, vacuum)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class WavelengthGrid:
    """A uniform wavelength grid from ``start`` to ``stop`` inclusive, in Angstrom (vacuum).

    Args:
        start: first wavelength, Angstrom.
        stop: last wavelength, Angstrom (included when it lies on the grid).
        step: spacing, Angstrom.

    Examples:
        >>> from mdwarf_zoo.spectra.grid import WavelengthGrid
        >>> len(WavelengthGrid(8800, 8835, 0.01))   # the MB24 window
        3501
    """

    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        for name in ("start", "stop", "step"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
                float(value)
            ):
                raise ValueError(f"WavelengthGrid: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.step <= 0:
            raise ValueError(f"WavelengthGrid: step must be > 0 Angstrom, got {self.step!r}")
        if self.start <= 0 or self.stop <= self.start:
            raise ValueError(
                "WavelengthGrid: need 0 < start < stop (Angstrom), "
                f"got start={self.start!r}, stop={self.stop!r}"
            )

    @property
    def size(self) -> int:
        # Round so that 8800..8835 by 0.01 gives 3501 points despite floating-point error.
        return math.floor((self.stop - self.start) / self.step + 1e-6) + 1

    def __len__(self) -> int:
        return self.size

    @cached_property
    def wavelength(self) -> np.ndarray:
        """The grid points, Angstrom (float64)."""
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "step": self.step}

    @classmethod
    def from_dict(cls, config: dict) -> WavelengthGrid:
        try:
            return cls(config["start"], config["stop"], config["step"])
        except KeyError as error:
            raise ValueError(
                f"WavelengthGrid config needs keys start, stop, step; got {sorted(config)}"
            ) from error


#: The window of Mas-Buitrago et al. 2024: 8800-8835 A in 0.01 A steps, 3501 points.
MB24_GRID = WavelengthGrid(8800.0, 8835.0, 0.01)


def _as_1d_float(values: object, what: str, source: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{source}: {what} must be 1-D, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class Spectrum:
    """A 1-D spectrum: wavelength (Angstrom, vacuum unless ``metadata['medium'] == 'air'``),
    flux, optional 1-sigma flux uncertainty and a metadata dictionary.

    The constructor validates its input, so every ``Spectrum`` in the package is clean:
    non-empty, finite, strictly increasing wavelengths (no duplicates), finite flux, finite
    non-negative sigma. Readers of real files remove non-finite pixels before building one
    (and say how many); a hole that this leaves inside a window is found by the preprocessing.

    Args:
        wavelength: wavelengths, Angstrom, strictly increasing.
        flux: flux values, same length.
        sigma: 1-sigma uncertainties of the flux, same length, or ``None``.
        metadata: free-form facts about the spectrum (``source``, ``object``, ``berv`` in km/s,
            ``bjd``, ``date_obs``, ``medium``, ``resolving_power`` ...).

    Raises:
        ValueError: for empty, mismatched, non-finite, unsorted or duplicate input; the message
            names ``metadata['source']`` when given.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.spectra import Spectrum
        >>> s = Spectrum(np.array([8800.0, 8800.01]), np.array([1.0, 0.9]))
        >>> len(s)
        2
    """

    wavelength: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        metadata = dict(self.metadata or {})
        source = str(metadata.get("source", "spectrum"))
        wavelength = _as_1d_float(self.wavelength, "wavelength", source)
        flux = _as_1d_float(self.flux, "flux", source)
        if wavelength.size == 0:
            raise ValueError(f"{source}: the spectrum is empty (0 wavelength points)")
        if flux.shape != wavelength.shape:
            raise ValueError(
                f"{source}: flux has {flux.size} points but wavelength has {wavelength.size}"
            )
        _check_finite(wavelength, "wavelength", source)
        _check_finite(flux, "flux", source)
        if wavelength.size > 1:
            steps = np.diff(wavelength)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                i = int(bad[0])
                kind = "duplicate" if steps[i] == 0 else "unsorted (decreasing)"
                raise ValueError(
                    f"{source}: wavelengths must be strictly increasing; {kind} at index {i}: "
                    f"{float(wavelength[i])!r} then {float(wavelength[i + 1])!r} Angstrom "
                    f"({bad.size} such steps in total)"
                )
        if wavelength[0] <= 0:
            first = float(wavelength[0])
            raise ValueError(f"{source}: wavelengths must be > 0 Angstrom, got {first!r}")
        sigma = None
        if self.sigma is not None:
            sigma = _as_1d_float(self.sigma, "sigma", source)
            if sigma.shape != wavelength.shape:
                raise ValueError(
                    f"{source}: sigma has {sigma.size} points but wavelength has {wavelength.size}"
                )
            _check_finite(sigma, "sigma", source)
            if np.any(sigma < 0):
                i = int(np.flatnonzero(sigma < 0)[0])
                value = float(sigma[i])
                raise ValueError(f"{source}: sigma must be >= 0, got {value!r} at index {i}")
        object.__setattr__(self, "wavelength", wavelength)
        object.__setattr__(self, "flux", flux)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "metadata", metadata)

    def __len__(self) -> int:
        return int(self.wavelength.size)

    @property
    def source(self) -> str:
        """Where the spectrum came from (a file name), for messages."""
        return str(self.metadata.get("source", "spectrum"))

    def replace(self, **changes: object) -> Spectrum:
        """A new spectrum with some fields changed (metadata is merged, not replaced)."""
        metadata = {**self.metadata, **dict(changes.pop("metadata", None) or {})}
        values = {
            "wavelength": self.wavelength,
            "flux": self.flux,
            "sigma": self.sigma,
            **changes,
        }
        return Spectrum(metadata=metadata, **values)

    def crop(self, start: float, stop: float) -> Spectrum:
        """The part with ``start <= wavelength <= stop`` (Angstrom).

        Raises:
            ValueError: when no pixel lies in the range.
        """
        keep = (self.wavelength >= start) & (self.wavelength <= stop)
        if not keep.any():
            raise ValueError(
                f"{self.source}: no pixel in {start:g}-{stop:g} A; the spectrum covers "
                f"{self.wavelength[0]:.2f}-{self.wavelength[-1]:.2f} A"
            )
        sigma = None if self.sigma is None else self.sigma[keep]
        return Spectrum(self.wavelength[keep], self.flux[keep], sigma, self.metadata)

    @classmethod
    def from_specutils(cls, spectrum: object, metadata: dict | None = None) -> Spectrum:
        """Convert a ``specutils`` Spectrum (or Spectrum1D) with a 1-D flux.

        specutils is optional: this works on any object with ``spectral_axis`` and ``flux``
        astropy quantities and an optional ``uncertainty``.

        Raises:
            ValueError: when the object is not 1-D or its spectral axis cannot be converted
                to Angstrom.
        """
        import astropy.units as u

        try:
            axis = spectrum.spectral_axis  # type: ignore[attr-defined]
            flux = spectrum.flux  # type: ignore[attr-defined]
        except AttributeError as error:
            raise ValueError(
                f"expected a specutils Spectrum (with spectral_axis and flux), "
                f"got {type(spectrum).__name__}"
            ) from error
        try:
            wavelength = u.Quantity(axis).to_value(u.AA, equivalencies=u.spectral())
        except u.UnitConversionError as error:
            raise ValueError(
                f"specutils spectrum: spectral axis in {axis.unit} cannot be converted to Angstrom"
            ) from error
        flux_values = np.asarray(getattr(flux, "value", flux), dtype=np.float64)
        sigma = None
        uncertainty = getattr(spectrum, "uncertainty", None)
        if uncertainty is not None:
            kind = getattr(uncertainty, "uncertainty_type", "std")
            values = np.asarray(uncertainty.array, dtype=np.float64)
            if kind == "var":
                sigma = np.sqrt(values)
            elif kind == "ivar":
                with np.errstate(divide="ignore"):
                    sigma = 1.0 / np.sqrt(values)
            else:
                sigma = values
        info = {"source": "specutils spectrum", "flux_unit": str(getattr(flux, "unit", ""))}
        meta = getattr(spectrum, "meta", None) or {}
        info.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float))})
        info.update(metadata or {})
        wavelength = np.asarray(wavelength, dtype=np.float64)
        if wavelength.size > 1 and wavelength[0] > wavelength[-1]:
            # A frequency axis converts to decreasing wavelengths; flip it rather than refuse.
            wavelength, flux_values = wavelength[::-1], flux_values[::-1]
            sigma = None if sigma is None else sigma[::-1]
        return cls(wavelength, flux_values, sigma, info)

    @classmethod
    def coerce(cls, spectrum: object) -> Spectrum:
        """Return ``spectrum`` as a :class:`Spectrum` (accepts a specutils Spectrum too).

        Raises:
            ValueError: for any other type.
        """
        if isinstance(spectrum, cls):
            return spectrum
        if hasattr(spectrum, "spectral_axis") and hasattr(spectrum, "flux"):
            return cls.from_specutils(spectrum)
        raise ValueError(
            f"expected a mdwarf_zoo Spectrum or a specutils Spectrum, got {type(spectrum).__name__}"
        )


def _check_finite(
    values: np.ndarray,
    what: str,
    source: str,
    first: str = " (first: {value!r} at index {index}); expected finite numbers",
) -> None:
    """A ValueError that counts the non-finite ``values`` and names the first of them (the
    ``first`` template, given ``value`` and ``index``), when there are any."""
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: {what} has {int(bad.sum())} non-finite value(s)"
            + first.format(value=float(values[i]), index=i)
        )
