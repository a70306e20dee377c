"""Wavelength grids (Angstrom, vacuum)."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
        return int(math.floor((self.stop - self.start) / self.step + 1e-6)) + 1

    def __len__(self) -> int:
        return self.size

    @cached_property
    def wavelength(self) -> np.ndarray:
        """The grid points, Angstrom (float64)."""
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "step": self.step}

    @classmethod
    def from_dict(cls, config: dict) -> "WavelengthGrid":
        try:
            return cls(config["start"], config["stop"], config["step"])
        except KeyError as error:
            raise ValueError(
                f"WavelengthGrid config needs keys start, stop, step; got {sorted(config)}"
            ) from error


#: The window of Mas-Buitrago et al. 2024: 8800-8835 A in 0.01 A steps, 3501 points.
MB24_GRID = WavelengthGrid(8800.0, 8835.0, 0.01)
