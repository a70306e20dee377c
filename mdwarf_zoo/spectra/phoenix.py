"""PHOENIX-ACES-AGSS-COND-2011 HiRes grids (Husser et al. 2013, A&A 553, A6).

The Goettingen server keeps one FITS file per grid point and one shared wavelength file::

    HiResFITS/WAVE_PHOENIX-ACES-AGSS-COND-2011.fits
    HiResFITS/PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte03000-5.00-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
    HiResFITS/PHOENIX-ACES-AGSS-COND-2011/Z-0.0.Alpha=+0.20/lte03000-5.00-0.0.Alpha=+0.20.PHOENIX-...

Flux is in the primary HDU (float32, erg/s/cm^2/cm), wavelengths in the WAVE file (Angstrom,
vacuum). This module names those files, writes files in that layout, indexes the files present
under a folder (any folder depth: a mirror of the server or a flat copy of ``Z-*`` folders),
downloads the grid points a label set needs, and interpolates the flux linearly in Teff, log g
and [M/H] between native grid points, as Mas-Buitrago et al. 2024 did.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from http.client import HTTPException
from pathlib import Path

import numpy as np
from astropy.io import fits
from tqdm.auto import tqdm

from mdwarf_zoo.spectra.grid import Spectrum, _check_finite

logger = logging.getLogger(__name__)

GRID_NAME = "PHOENIX-ACES-AGSS-COND-2011"
WAVE_FILENAME = f"WAVE_{GRID_NAME}.fits"
DEFAULT_BASE_URL = "http://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/"
FLUX_UNIT = "erg/s/cm^2/cm"

_NAME_PATTERN = re.compile(
    r"^lte(?P<teff>\d{5})-(?P<logg>\d\.\d\d)(?P<mh>[+-]\d\.\d)"
    r"(?:\.Alpha=(?P<alpha>[+-]\d\.\d\d))?\." + re.escape(GRID_NAME) + r"-HiRes\.fits$"
)

#: Native grid values of the HiRes grid (Husser et al. 2013, table 1).
NATIVE_TEFF = tuple(range(2300, 7001, 100)) + tuple(range(7200, 12001, 200))
NATIVE_LOGG = tuple(np.round(np.arange(0.0, 6.01, 0.5), 2).tolist())
NATIVE_METALLICITY = (-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)


@dataclass(frozen=True, order=True)
class GridPoint:
    """One native grid point: Teff (K), log g (dex, cgs), [M/H] (dex), [alpha/M] (dex)."""

    teff: int
    logg: float
    metallicity: float
    alpha: float = 0.0

    def __post_init__(self) -> None:
        teff = float(self.teff)
        if not np.isfinite(teff) or teff != round(teff) or not 0 < teff < 100000:
            raise ValueError(f"GridPoint: teff must be a whole number of K, got {self.teff!r}")
        for name in ("logg", "metallicity", "alpha"):
            if not np.isfinite(float(getattr(self, name))):
                raise ValueError(f"GridPoint: {name} must be finite, got {getattr(self, name)!r}")
        object.__setattr__(self, "teff", round(teff))
        object.__setattr__(self, "logg", round(float(self.logg), 2))
        object.__setattr__(self, "metallicity", round(float(self.metallicity), 1) + 0.0)
        object.__setattr__(self, "alpha", round(float(self.alpha), 2) + 0.0)

    @property
    def relative_path(self) -> str:
        """Path below the HiResFITS base (a URL path and a local path)."""
        name = phoenix_filename(self.teff, self.logg, self.metallicity, self.alpha)
        return f"{GRID_NAME}/{phoenix_subdir(self.metallicity, self.alpha)}/{name}"


def _format_metallicity(metallicity: float) -> str:
    # The server writes solar metallicity as "-0.0" (both in folder and file names).
    value = round(float(metallicity), 1)
    return "-0.0" if value == 0 else f"{value:+.1f}"


def _format_alpha(alpha: float) -> str:
    value = round(float(alpha), 2)
    return "" if value == 0 else f".Alpha={value:+.2f}"


def phoenix_subdir(metallicity: float, alpha: float = 0.0) -> str:
    """The metallicity folder name, e.g. ``Z-0.0`` or ``Z-1.0.Alpha=+0.20``."""
    return f"Z{_format_metallicity(metallicity)}{_format_alpha(alpha)}"


def phoenix_filename(teff: int, logg: float, metallicity: float, alpha: float = 0.0) -> str:
    """The HiRes file name of a grid point.

    Examples:
        >>> from mdwarf_zoo.spectra.phoenix import phoenix_filename
        >>> phoenix_filename(3000, 5.0, 0.0)
        'lte03000-5.00-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits'
        >>> phoenix_filename(3000, 5.0, -1.0, 0.2)
        'lte03000-5.00-1.0.Alpha=+0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits'

    Raises:
        ValueError: when ``teff`` is not a whole number of K or ``logg`` is negative.
    """
    if float(teff) != round(float(teff)) or not 0 < float(teff) < 100000:
        raise ValueError(f"phoenix_filename: teff must be a whole number of K, got {teff!r}")
    if not 0 <= float(logg) < 10:
        raise ValueError(f"phoenix_filename: logg must be in [0, 10), got {logg!r}")
    return (
        f"lte{round(float(teff)):05d}-{float(logg):.2f}{_format_metallicity(metallicity)}"
        f"{_format_alpha(alpha)}.{GRID_NAME}-HiRes.fits"
    )


def parse_phoenix_filename(name: str) -> GridPoint:
    """The grid point named by a HiRes file name.

    Raises:
        ValueError: when ``name`` is not a HiRes file name.
    """
    match = _NAME_PATTERN.match(Path(name).name)
    if match is None:
        raise ValueError(
            f"{name!r} is not a PHOENIX HiRes file name "
            f"(expected like 'lte03000-5.00-0.0.{GRID_NAME}-HiRes.fits')"
        )
    return GridPoint(
        int(match["teff"]),
        float(match["logg"]),
        float(match["mh"]),
        float(match["alpha"] or 0.0),
    )


def _validated_array(values: object, what: str, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{where}: {what} must be a non-empty 1-D array, got shape {array.shape}")
    _check_finite(array, what, where, first=", first {value!r} at index {index}")
    return array


def _write_atomically(hdu: fits.PrimaryHDU, path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass overwrite=True)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".writing")
    hdu.writeto(partial, overwrite=True)
    os.replace(partial, path)
    return path


def write_phoenix_wavelength(root: str | os.PathLike, wavelength: object, *,
                             overwrite: bool = False) -> Path:
    """Write the shared wavelength file ``root/WAVE_PHOENIX-ACES-AGSS-COND-2011.fits``.

    Args:
        root: the grid folder (the local counterpart of ``HiResFITS/``).
        wavelength: wavelengths in Angstrom (vacuum), strictly increasing, stored as float64 in
            the primary HDU as on the server.
        overwrite: replace an existing file (off by default: user files are never overwritten).

    Returns:
        The path written.

    Raises:
        ValueError: for empty, non-finite, non-positive or not strictly increasing wavelengths.
        FileExistsError: when the file exists and ``overwrite`` is false.
    """
    where = f"write_phoenix_wavelength({str(root)!r})"
    wave = _validated_array(wavelength, "wavelength", where)
    if wave[0] <= 0 or np.any(np.diff(wave) <= 0):
        raise ValueError(f"{where}: wavelength must be positive and strictly increasing (Angstrom)")
    hdu = fits.PrimaryHDU(wave.astype(">f8"))
    hdu.header["UNIT"] = ("Angstrom", "wavelength unit (vacuum)")
    hdu.header["WAVE"] = ("vacuum", "PHOENIX wavelengths are vacuum wavelengths")
    return _write_atomically(hdu, Path(root) / WAVE_FILENAME, overwrite)


def write_phoenix_spectrum(
    root: str | os.PathLike,
    flux: object,
    teff: int,
    logg: float,
    metallicity: float,
    alpha: float = 0.0,
    *,
    overwrite: bool = False,
) -> Path:
    """Write one HiRes grid-point file in the Goettingen layout below ``root``.

    The file goes to ``root/PHOENIX-ACES-AGSS-COND-2011/Z.../lte...-HiRes.fits``: float32 flux
    in the primary HDU, erg/s/cm^2/cm, with the header keys PHXTEFF, PHXLOGG, PHXM_H, PHXALPHA
    (and PHXBUNIT, PHXEOS, PHXDUST, PHXVER as the real files have).

    Args:
        root: the grid folder (where :func:`write_phoenix_wavelength` writes the WAVE file).
        flux: 1-D flux, erg/s/cm^2/cm, one value per wavelength of the WAVE file.
        teff: effective temperature, K (a whole number).
        logg: surface gravity, log10(cm/s^2).
        metallicity: [M/H], dex.
        alpha: [alpha/M], dex.
        overwrite: replace an existing file (off by default).

    Returns:
        The path written.

    Raises:
        ValueError: for non-finite or empty flux, or a flux length that differs from the WAVE
            file already present under ``root``.
        FileExistsError: when the file exists and ``overwrite`` is false.
    """
    point = GridPoint(teff, logg, metallicity, alpha)
    where = f"write_phoenix_spectrum({str(root)!r}, teff={teff!r})"
    values = _validated_array(flux, "flux", where)
    wave_file = Path(root) / WAVE_FILENAME
    if wave_file.is_file():
        n_wave = int(fits.getheader(wave_file)["NAXIS1"])
        if n_wave != values.size:
            raise ValueError(
                f"{where}: flux has {values.size} points but {wave_file} has {n_wave} wavelengths"
            )
    hdu = fits.PrimaryHDU(values.astype(">f4"))
    header = hdu.header
    header["PHXTEFF"] = (float(point.teff), "[K] effective temperature")
    header["PHXLOGG"] = (point.logg, "[cm/s^2] log (surface gravity)")
    header["PHXM_H"] = (point.metallicity, "[M/H] metallicity (rel. sol. - Asplund &a 2009)")
    header["PHXALPHA"] = (point.alpha, "[a/M] alpha element enhancement")
    header["PHXDUST"] = (False, "Dust in atmosphere")
    header["PHXEOS"] = ("ASPLUND", "EOS name")
    header["PHXVER"] = ("16.01.00B", "PHOENIX version")
    header["PHXBUNIT"] = (FLUX_UNIT, "Unit of flux")
    header["BUNIT"] = (FLUX_UNIT, "Unit of flux")
    return _write_atomically(hdu, Path(root) / point.relative_path, overwrite)


def check_phoenix_file(path: str | os.PathLike, name: str | None = None) -> GridPoint | None:
    """Check that a HiRes or WAVE file is a complete, readable FITS file of the right kind.

    Args:
        path: the file.
        name: the file name that decides what it must be (default: ``path``'s own name; the
            downloader checks ``x.fits.part`` as ``x.fits``).

    Returns:
        The grid point (for a spectrum file) or ``None`` (for the WAVE file).

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % 2880:
        raise ValueError(f"{path}: {size} bytes is not a whole number of 2880-byte FITS blocks")
    try:
        with fits.open(path, memmap=False) as hdul:
            hdul.verify("exception")
            header = hdul[0].header
            data = hdul[0].data
    except Exception as error:  # astropy raises many types for a damaged file
        raise ValueError(f"{path}: not a readable FITS file ({error})") from error
    if data is None or data.ndim != 1 or data.size == 0:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: primary HDU must hold a 1-D array, got shape {shape}")
    name = name or path.name
    if name == WAVE_FILENAME:
        return None
    point = parse_phoenix_filename(name)
    missing = [k for k in ("PHXTEFF", "PHXLOGG", "PHXM_H") if k not in header]
    if missing:
        raise ValueError(f"{path}: header lacks {missing}; not a PHOENIX HiRes file")
    found = GridPoint(
        header["PHXTEFF"], header["PHXLOGG"], header["PHXM_H"], header.get("PHXALPHA", 0.0)
    )
    if found != point:
        raise ValueError(f"{path}: header says {found} but the file name says {point}")
    return point


def _bracket(value: float, axis: np.ndarray, name: str, label: object) -> list[tuple[float, float]]:
    """Native values around ``value`` with their linear weights."""
    if value < axis[0] - 1e-9 or value > axis[-1] + 1e-9:
        raise ValueError(
            f"label {label}: {name} = {value:g} lies outside the available grid points "
            f"{axis[0]:g}..{axis[-1]:g}"
        )
    exact = np.flatnonzero(np.isclose(axis, value, atol=1e-6))
    if exact.size:
        return [(float(axis[exact[0]]), 1.0)]
    upper = int(np.searchsorted(axis, value))
    low, high = float(axis[upper - 1]), float(axis[upper])
    t = (value - low) / (high - low)
    return [(low, 1.0 - t), (high, t)]


def interpolation_weights(
    label: Sequence[float],
    teffs: Sequence[float] = NATIVE_TEFF,
    loggs: Sequence[float] = NATIVE_LOGG,
    metallicities: Sequence[float] = NATIVE_METALLICITY,
    alpha: float = 0.0,
) -> list[tuple[GridPoint, float]]:
    """Grid points and weights of trilinear interpolation in Teff, log g, [M/H].

    Args:
        label: (Teff in K, log g, [M/H]); extra entries (v sin i) are ignored.
        teffs, loggs, metallicities: the grid axis values available.
        alpha: [alpha/M] of the grid points used.

    Returns:
        Up to 8 ``(GridPoint, weight)`` pairs with positive weights summing to 1.

    Raises:
        ValueError: when the label is not finite or lies outside the axes.
    """
    if len(label) < 3:
        raise ValueError(f"label {tuple(label)}: need at least Teff, log g, [M/H]")
    teff, logg, metallicity = (float(v) for v in label[:3])
    if not all(np.isfinite([teff, logg, metallicity])):
        raise ValueError(f"label {tuple(label)}: Teff, log g, [M/H] must be finite")
    shown = (teff, logg, metallicity)
    axes = [np.unique(np.asarray(a, dtype=np.float64)) for a in (teffs, loggs, metallicities)]
    parts = [
        _bracket(teff, axes[0], "Teff", shown),
        _bracket(logg, axes[1], "log g", shown),
        _bracket(metallicity, axes[2], "[M/H]", shown),
    ]
    result = []
    for (t, wt), (g, wg), (m, wm) in itertools.product(*parts):
        weight = wt * wg * wm
        if weight > 0:
            result.append((GridPoint(round(t), g, m, alpha), weight))
    return result


def required_points(labels: object, alpha: float = 0.0) -> list[GridPoint]:
    """The native HiRes grid points needed to interpolate every label (sorted, unique).

    Args:
        labels: array-like (n, >=3) of Teff, log g, [M/H] (v sin i ignored).
        alpha: [alpha/M] of the grid.

    Raises:
        ValueError: for a label outside the native grid.
    """
    table = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    if table.ndim != 2 or table.shape[1] < 3:
        raise ValueError(f"labels must have shape (n, >=3), got {table.shape}")
    needed: set[GridPoint] = set()
    for row in np.unique(np.round(table[:, :3], 6), axis=0):
        needed.update(point for point, _ in interpolation_weights(row, alpha=alpha))
    return sorted(needed)


class PhoenixGrid:
    """The HiRes files present under a folder, with windowed reading and interpolation.

    Args:
        root: folder searched recursively for ``lte*-HiRes.fits`` files and the WAVE file.

    Raises:
        FileNotFoundError: when ``root`` does not exist, holds no HiRes file or no WAVE file.
        ValueError: when two files name the same grid point.

    Examples:
        >>> grid = PhoenixGrid("~/phoenix")                     # doctest: +SKIP
        >>> spectrum = grid.interpolate((3325, 4.85, -0.15), 8795, 8840)  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"PHOENIX grid folder {self.root} does not exist")
        self.files: dict[GridPoint, Path] = {}
        for path in sorted(self.root.rglob(f"lte*.{GRID_NAME}-HiRes.fits")):
            point = parse_phoenix_filename(path.name)
            if point in self.files:
                raise ValueError(f"{point} is present twice: {self.files[point]} and {path}")
            self.files[point] = path
        if not self.files:
            raise FileNotFoundError(
                f"no PHOENIX HiRes files (lte*.{GRID_NAME}-HiRes.fits) under {self.root}"
            )
        waves = sorted(self.root.rglob(WAVE_FILENAME))
        if not waves:
            raise FileNotFoundError(f"{WAVE_FILENAME} not found under {self.root}")
        self.wavelength_file = waves[0]
        self._cache: dict[tuple[GridPoint, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    @property
    def points(self) -> list[GridPoint]:
        """The grid points present, sorted."""
        return sorted(self.files)

    def axis(self, name: str, alpha: float = 0.0) -> np.ndarray:
        """Sorted unique values of ``teff``, ``logg`` or ``metallicity`` present."""
        return np.unique([getattr(p, name) for p in self.files if p.alpha == alpha]).astype(float)

    @cached_property
    def wavelength(self) -> np.ndarray:
        """The shared wavelength array, Angstrom (vacuum)."""
        with fits.open(self.wavelength_file, memmap=False) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float64)

    def pixel_range(self, start: float, stop: float) -> tuple[int, int]:
        """Index range ``[i0, i1)`` of the wavelengths in ``start..stop`` Angstrom.

        Raises:
            ValueError: when the WAVE file does not cover the range.
        """
        wave = self.wavelength
        if start < wave[0] or stop > wave[-1] or stop <= start:
            raise ValueError(
                f"{self.wavelength_file} covers {wave[0]:g}-{wave[-1]:g} A; "
                f"cannot cut {start:g}-{stop:g} A"
            )
        return int(np.searchsorted(wave, start, "left")), int(np.searchsorted(wave, stop, "right"))

    def read_flux(self, point: GridPoint, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Flux (float64, erg/s/cm^2/cm) of one grid point, pixels ``start:stop``.

        Only the requested pixels are read from disk (memory-mapped FITS).

        Raises:
            KeyError: when the grid point is not present.
            ValueError: when the file's length differs from the WAVE file or holds non-finite
                flux in the range.
        """
        if point not in self.files:
            raise KeyError(f"grid point {point} is not present under {self.root}")
        path = self.files[point]
        with fits.open(path, memmap=True) as hdul:
            data = hdul[0].data
            if data.shape != self.wavelength.shape:
                raise ValueError(
                    f"{path}: {data.shape[0]} flux values but {self.wavelength_file} has "
                    f"{self.wavelength.size} wavelengths"
                )
            flux = np.array(data[start:stop], dtype=np.float64)
            del data
        if not np.all(np.isfinite(flux)):
            raise ValueError(f"{path}: non-finite flux in pixels {start}:{stop}")
        return flux

    def read(self, point: GridPoint, start: float | None = None,
             stop: float | None = None) -> Spectrum:
        """One native grid point as a :class:`Spectrum`, optionally cut to ``start..stop`` A."""
        i0, i1 = (0, None) if start is None else self.pixel_range(start, stop)
        wave = self.wavelength[i0:i1]
        return Spectrum(
            wave,
            self.read_flux(point, i0, i1),
            metadata=self._metadata(self.files[point].name, point),
        )

    def _metadata(self, source: str, label: object) -> dict:
        return {"source": source, "flux_unit": FLUX_UNIT, "medium": "vacuum",
                "grid": GRID_NAME, "label": str(label)}

    def weights(self, label: Sequence[float], alpha: float = 0.0) -> list[tuple[GridPoint, float]]:
        """Interpolation weights over the grid points present (see :func:`interpolation_weights`).

        Raises:
            ValueError: when the label lies outside the available points or a needed corner is
                missing (the message lists the missing files).
        """
        weights = interpolation_weights(
            label, self.axis("teff", alpha), self.axis("logg", alpha),
            self.axis("metallicity", alpha), alpha,
        )
        missing = [p for p, _ in weights if p not in self.files]
        if missing:
            raise ValueError(
                f"label {tuple(float(v) for v in label[:3])}: the grid under {self.root} lacks "
                f"the grid points {[p.relative_path for p in missing]} needed to interpolate it "
                "(download them with mdwarf_zoo.spectra.phoenix.download_grid)"
            )
        return weights

    def interpolate_flux(self, label: Sequence[float], start: int = 0, stop: int | None = None,
                         alpha: float = 0.0, cache: bool = False) -> np.ndarray:
        """Linearly interpolated flux (pixels ``start:stop`` of the WAVE file) at ``label``."""
        result = None
        for point, weight in self.weights(label, alpha):
            key = (point, start, -1 if stop is None else stop)
            flux = self._cache.get(key) if cache else None
            if flux is None:
                flux = self.read_flux(point, start, stop)
                if cache:
                    self._cache[key] = flux
            result = weight * flux if result is None else result + weight * flux
        return result

    def interpolate(self, label: Sequence[float], start: float | None = None,
                    stop: float | None = None, alpha: float = 0.0) -> Spectrum:
        """The spectrum at arbitrary (Teff, log g, [M/H]), linear in each between grid points.

        Args:
            label: (Teff K, log g, [M/H]).
            start, stop: wavelength range to read, Angstrom (default: everything).
            alpha: [alpha/M] of the grid points to use.

        Returns:
            A :class:`Spectrum` in erg/s/cm^2/cm on the native wavelengths.

        Raises:
            ValueError: for labels outside the available grid points (naming them).
        """
        i0, i1 = (0, None) if start is None else self.pixel_range(start, stop)
        flux = self.interpolate_flux(label, i0, i1, alpha)
        return Spectrum(
            self.wavelength[i0:i1], flux,
            metadata=self._metadata(f"PHOENIX interpolated at {tuple(label[:3])}", label[:3]),
        )


class DownloadError(RuntimeError):
    """A file could not be downloaded after all retries."""


def _fetch_one(url: str, target: Path, *, retries: int, timeout: float, backoff: float,
               progress: bool) -> Path:
    partial = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        offset = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "mdwarf-zoo"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
                if status == 206:
                    content_range = response.headers.get("Content-Range", "")
                    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range)
                    if not match or int(match[1]) != offset:
                        raise DownloadError(f"{url}: bad Content-Range {content_range!r}")
                    total = None if match[2] == "*" else int(match[2])
                    mode = "ab"
                else:
                    # 200: the server sent the whole file; start again from byte 0.
                    offset, mode = 0, "wb"
                    length = response.headers.get("Content-Length")
                    total = int(length) if length else None
                with open(partial, mode) as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, leave=False,
                    desc=target.name[:40], disable=not progress,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
                if total is not None and partial.stat().st_size != total:
                    raise DownloadError(
                        f"{url}: connection ended at {partial.stat().st_size} of {total} bytes"
                    )
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:
                pass  # the partial file may already be complete: check it below
            elif error.code in (404, 403, 401, 410):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
            else:
                last_error = error
                logger.warning("%s: HTTP %s (attempt %d of %d)", url, error.code, attempt + 1,
                               retries + 1)
                continue
        except (urllib.error.URLError, HTTPException, OSError, DownloadError) as error:
            last_error = error
            logger.warning("%s: %s (attempt %d of %d); will resume", url, error, attempt + 1,
                           retries + 1)
            continue
        try:
            check_phoenix_file(partial, name=target.name)
        except ValueError as error:
            # A complete transfer that is not a valid FITS file will not get better by
            # resuming: start that file again from scratch.
            last_error = error
            logger.warning("%s: integrity check failed (%s); downloading again", url, error)
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, target)
        return target
    raise DownloadError(f"{url}: failed after {retries + 1} attempts: {last_error}")


def download_grid(
    labels_or_points: object,
    root: str | os.PathLike,
    base_url: str = DEFAULT_BASE_URL,
    *,
    alpha: float = 0.0,
    include_wavelength: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> list[Path]:
    """Download the HiRes files needed for some labels (or given grid points) into ``root``.

    Files land at ``root/<path below HiResFITS/>``. A file already present and valid is kept
    as it is (never overwritten, never downloaded again). Transfers go to ``<name>.part`` and
    resume from where they stopped (HTTP Range), with ``retries`` further attempts and an
    exponential back-off; a file only gets its final name once it passes
    :func:`check_phoenix_file`.

    Args:
        labels_or_points: an (n, >=3) label array (Teff, log g, [M/H], ...) or a list of
            :class:`GridPoint`.
        root: local grid folder.
        base_url: the ``HiResFITS/`` URL of a server (default: the Goettingen server).
        alpha: [alpha/M] of the grid points derived from labels.
        include_wavelength: also fetch the shared WAVE file.
        retries: further attempts per file after a failure.
        timeout: socket timeout, seconds.
        backoff: first pause between attempts, seconds (doubles each time).
        progress: show tqdm progress bars.

    Returns:
        The local paths of all needed files.

    Raises:
        ValueError: for labels outside the native grid, or an existing file that is damaged
            (it is left in place for you to inspect or delete).
        DownloadError: when a file cannot be fetched.
    """
    if isinstance(labels_or_points, (list, tuple)) and labels_or_points and all(
        isinstance(p, GridPoint) for p in labels_or_points
    ):
        points = sorted(set(labels_or_points))
    else:
        points = required_points(labels_or_points, alpha)
    root = Path(root).expanduser()
    base = base_url if base_url.endswith("/") else base_url + "/"
    relative = ([WAVE_FILENAME] if include_wavelength else []) + [p.relative_path for p in points]
    paths = []
    for rel in tqdm(relative, desc="PHOENIX files", unit="file", disable=not progress):
        target = root / rel
        if target.exists():
            try:
                check_phoenix_file(target)
            except ValueError as error:
                raise ValueError(
                    f"{target} exists but is damaged ({error}); delete it to download it again"
                ) from error
            logger.debug("%s is present and valid; keeping it", target)
        else:
            _fetch_one(base + rel, target, retries=retries, timeout=timeout, backoff=backoff,
                       progress=progress)
        paths.append(target)
    return paths


def read_phoenix_spectrum(
    path: str | os.PathLike,
    start: float | None = None,
    stop: float | None = None,
    *,
    wavelength_file: str | os.PathLike | None = None,
) -> Spectrum:
    """Read one HiRes file as a :class:`Spectrum` (erg/s/cm^2/cm, vacuum Angstrom).

    Args:
        path: a ``lte*-HiRes.fits`` file.
        start, stop: wavelength range to keep, Angstrom (default: all).
        wavelength_file: the WAVE file (default: searched in the file's folder and the three
            folders above it).

    Raises:
        FileNotFoundError: when the file or its WAVE file is not found.
        ValueError: for a damaged file or a length that differs from the WAVE file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PHOENIX file {path} does not exist")
    point = check_phoenix_file(path)
    if wavelength_file is None:
        for folder in list(path.parents)[:4]:
            if (folder / WAVE_FILENAME).is_file():
                wavelength_file = folder / WAVE_FILENAME
                break
        else:
            raise FileNotFoundError(
                f"{WAVE_FILENAME} not found next to {path} or in the 3 folders above it; "
                "pass wavelength_file="
            )
    wave = fits.getdata(wavelength_file).astype(np.float64)
    flux = fits.getdata(path).astype(np.float64)
    if wave.shape != flux.shape:
        raise ValueError(f"{path}: {flux.size} flux values but {wavelength_file} has {wave.size}")
    keep = slice(None)
    if start is not None or stop is not None:
        lo = 0 if start is None else int(np.searchsorted(wave, start, "left"))
        hi = wave.size if stop is None else int(np.searchsorted(wave, stop, "right"))
        keep = slice(lo, hi)
    return Spectrum(wave[keep], flux[keep], metadata={
        "source": str(path), "flux_unit": FLUX_UNIT, "medium": "vacuum", "grid": GRID_NAME,
        "label": str((point.teff, point.logg, point.metallicity, point.alpha)),
    })
