"""Spectrum tooling: wavelength grids, PHOENIX-ACES grids, observed formats, preprocessing."""
