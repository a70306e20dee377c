"""Readers for observed spectra (CARMENES CARACAL and SERVAL, merged tables, 1-D FITS, echelle
files with named extensions such as HPF) and a writer for the CARACAL layout.

Every reader returns a :class:`~mdwarf_zoo.spectra.grid.Spectrum` (1-D, wavelength in Angstrom)
with the facts of the header in ``metadata``: ``source`` (the file), ``layout``, ``object``,
``date_obs``, ``berv`` (km/s) and ``bjd`` when present, ``medium`` (``vacuum``, ``air`` or
``unknown``) and ``resolving_power`` when the instrument is known. Pixels with non-finite
flux, wavelength or uncertainty are removed (the number is logged); holes this leaves inside a
window are found later by the preprocessing, which refuses them unless asked to interpolate.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from mdwarf_zoo.spectra.grid import Spectrum

logger = logging.getLogger(__name__)

#: Resolving powers of known instrument arms (CARMENES: Quirrenbach et al. 2018; HPF: Mahadevan
#: et al. 2014), stored in metadata so the preprocessing can match a model's resolution.
RESOLVING_POWER = {"carmenes_vis": 94600.0, "carmenes_nir": 80400.0, "hpf": 55000.0}

_WAVE_COLUMNS = ("WAVE", "WAVELENGTH", "LAMBDA", "WAVL", "WL")
_FLUX_COLUMNS = ("SPEC", "FLUX", "SCI_FLUX", "F")
_SIGMA_COLUMNS = ("SIG", "SIGMA", "ERR", "ERROR", "FLUX_ERR", "UNCERTAINTY")
_BERV_KEYS = ("CARACAL BERV", "BERV", "ESO DRS BERV", "HIERARCH ESO DRS BERV")
_BJD_KEYS = ("CARACAL BJD", "BJD", "ESO DRS BJD", "HIERARCH ESO DRS BJD")


def write_caracal(
    path: str | os.PathLike,
    wavelength: object,
    flux: object,
    sigma: object | None = None,
    continuum: object | None = None,
    header: Mapping | fits.Header | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write an echelle spectrum in the CARMENES CARACAL layout (``car-*-{vis,nir}_A.fits``).

    An empty primary HDU carries the header; image extensions SPEC (float32), CONT (float32),
    SIG (float32) and WAVE (float64, vacuum Angstrom) each hold an (orders, pixels) array, as
    CARACAL writes them. CONT and SIG are written only when given. Header keys longer than
    eight characters are written as HIERARCH cards, so ``{"CARACAL BERV": 26.3}`` becomes
    ``HIERARCH CARACAL BERV = 26.3``.

    Args:
        path: output file; an existing file is never replaced unless ``overwrite`` is true.
        wavelength: (orders, pixels) or (pixels,) vacuum wavelengths, Angstrom, increasing
            within each order.
        flux: same shape as ``wavelength``.
        sigma: 1-sigma flux uncertainties, same shape, or ``None``.
        continuum: continuum estimate, same shape, or ``None``.
        header: primary-header cards, e.g. ``{"OBJECT": "J17578+046", "DATE-OBS": "...",
            "CARACAL BERV": 26.26, "CARACAL BJD": 2457472.73}``.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        ValueError: for shapes that differ, empty arrays or non-finite wavelengths.
        FileExistsError: when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    where = f"write_caracal({str(path)!r})"
    wave = np.atleast_2d(np.asarray(wavelength, dtype=np.float64))
    arrays = {"SPEC": flux, "CONT": continuum, "SIG": sigma}
    if wave.ndim != 2 or wave.size == 0:
        raise ValueError(f"{where}: wavelength must be (orders, pixels), got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{where}: wavelength has non-finite values")
    if np.any(np.diff(wave, axis=1) <= 0):
        raise ValueError(f"{where}: wavelength must increase strictly within each order")
    images = {}
    for name, values in arrays.items():
        if values is None:
            continue
        array = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if array.shape != wave.shape:
            raise ValueError(
                f"{where}: {name} has shape {array.shape} but WAVE has shape {wave.shape}"
            )
        images[name] = array.astype(np.float32)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass overwrite=True)")
    primary = fits.PrimaryHDU()
    for key, value in (header or {}).items():
        if isinstance(value, tuple):
            value, comment = value
        else:
            comment = None
        card_key = key
        if (len(key) > 8 or " " in key) and not key.upper().startswith("HIERARCH"):
            card_key = f"HIERARCH {key}"
        primary.header[card_key] = (value, comment) if comment else value
    hdus = [primary]
    for name in ("SPEC", "CONT", "SIG"):
        if name in images:
            hdus.append(fits.ImageHDU(images[name], name=name))
    hdus.append(fits.ImageHDU(wave, name="WAVE"))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".writing")
    fits.HDUList(hdus).writeto(partial, overwrite=True)
    os.replace(partial, path)
    return path


def _describe(hdul: fits.HDUList) -> str:
    parts = []
    for i, hdu in enumerate(hdul):
        shape = getattr(hdu.data, "shape", None) if hdu.data is not None else None
        extra = ""
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            extra = f" columns={list(hdu.columns.names)}"
        parts.append(f"[{i}] {hdu.name or '(no name)'} {type(hdu).__name__} shape={shape}{extra}")
    return "; ".join(parts)


def _header_value(header: fits.Header, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in header:
            try:
                return float(header[key])
            except (TypeError, ValueError):
                return None
    return None


def _header_metadata(path: Path, header: fits.Header, layout: str) -> dict:
    metadata: dict = {"source": str(path), "layout": layout}
    if "OBJECT" in header:
        metadata["object"] = str(header["OBJECT"]).strip()
    if "DATE-OBS" in header:
        metadata["date_obs"] = str(header["DATE-OBS"])
    berv = _header_value(header, _BERV_KEYS)
    if berv is not None:
        metadata["berv"] = berv
    bjd = _header_value(header, _BJD_KEYS)
    if bjd is not None:
        metadata["bjd"] = bjd
    return metadata


def _clean(path: Path, wavelength: np.ndarray, flux: np.ndarray,
           sigma: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    good = np.isfinite(wavelength) & np.isfinite(flux)
    if sigma is not None:
        good &= np.isfinite(sigma) & (sigma >= 0)
    dropped = int(good.size - good.sum())
    if dropped:
        logger.debug("%s: removed %d of %d pixels with non-finite values", path, dropped, good.size)
    if not good.any():
        raise ValueError(f"{path}: no pixel has finite wavelength and flux")
    return wavelength[good], flux[good], None if sigma is None else sigma[good]


def merge_orders(
    wavelength: np.ndarray,
    flux: np.ndarray,
    sigma: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    source: str = "spectrum",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[int]]:
    """Select or merge echelle orders into one 1-D spectrum.

    With a ``window``, an order that covers it alone is preferred (the one where the window
    lies farthest from the order edges); otherwise the orders that overlap the window are
    merged. Without a window all orders are merged. Where neighbouring orders overlap, each
    keeps the half of the overlap nearest its own centre (order edges are noisiest).

    Args:
        wavelength, flux, sigma: (orders, pixels) arrays (NaN allowed; ignored).
        window: (start, stop) in Angstrom, or ``None``.
        source: name for messages.

    Returns:
        ``(wavelength, flux, sigma, orders_used)``; 1-D arrays sorted by wavelength.

    Raises:
        ValueError: when no order reaches the window.
    """
    wave = np.atleast_2d(wavelength)
    flux = np.atleast_2d(flux)
    sig = None if sigma is None else np.atleast_2d(sigma)
    spans = _all_spans(wave, flux)
    if not spans:
        raise ValueError(f"{source}: no order has finite wavelength and flux")
    if window is not None:
        start, stop = window
        covering = [(min(start - lo, hi - stop), k) for lo, hi, k in spans
                    if lo <= start and hi >= stop]
        if covering:
            k = max(covering)[1]
            return wave[k], flux[k], None if sig is None else sig[k], [k]
        spans = [s for s in spans if s[1] >= start and s[0] <= stop]
        if not spans:
            ranges = ", ".join(f"{lo:.1f}-{hi:.1f}" for lo, hi, _ in _all_spans(wave, flux))
            raise ValueError(
                f"{source}: no order reaches the window {start:g}-{stop:g} A; orders cover "
                f"{ranges} A"
            )
    spans.sort()
    parts_w, parts_f, parts_s = [], [], []
    for i, (lo, hi, k) in enumerate(spans):
        low_cut = -np.inf if i == 0 else 0.5 * (lo + min(spans[i - 1][1], hi))
        high_cut = np.inf if i == len(spans) - 1 else 0.5 * (max(spans[i + 1][0], lo) + hi)
        if i > 0 and spans[i - 1][1] < lo:
            low_cut = -np.inf
        if i < len(spans) - 1 and spans[i + 1][0] > hi:
            high_cut = np.inf
        keep = (wave[k] >= low_cut) & (wave[k] < high_cut)
        parts_w.append(wave[k][keep])
        parts_f.append(flux[k][keep])
        if sig is not None:
            parts_s.append(sig[k][keep])
    merged_w = np.concatenate(parts_w)
    order = np.argsort(merged_w, kind="stable")
    merged_s = None if sig is None else np.concatenate(parts_s)[order]
    return merged_w[order], np.concatenate(parts_f)[order], merged_s, [k for _, _, k in spans]


def _all_spans(wave: np.ndarray, flux: np.ndarray) -> list[tuple[float, float, int]]:
    spans = []
    for k in range(wave.shape[0]):
        finite = np.isfinite(wave[k]) & np.isfinite(flux[k])
        if finite.any():
            spans.append((float(np.min(wave[k][finite])), float(np.max(wave[k][finite])), k))
    return spans


def _image(hdul: fits.HDUList, name: str, path: Path) -> np.ndarray:
    try:
        data = hdul[name].data
    except KeyError as error:
        raise ValueError(
            f"{path}: no extension named {name!r}; found {_describe(hdul)}"
        ) from error
    if data is None:
        raise ValueError(f"{path}: extension {name!r} holds no data")
    return np.asarray(data, dtype=np.float64)


def _select_order(path: Path, wave: np.ndarray, flux: np.ndarray, sigma: np.ndarray | None,
                  order: int | None, window: tuple[float, float] | None,
                  metadata: dict) -> Spectrum:
    wave, flux = np.atleast_2d(wave), np.atleast_2d(flux)
    sigma = None if sigma is None else np.atleast_2d(sigma)
    if wave.shape != flux.shape or (sigma is not None and sigma.shape != flux.shape):
        raise ValueError(
            f"{path}: wavelength {wave.shape}, flux {flux.shape} and sigma "
            f"{None if sigma is None else sigma.shape} must have the same shape"
        )
    if order is not None:
        if not -wave.shape[0] <= order < wave.shape[0]:
            raise ValueError(f"{path}: order={order} but the file has {wave.shape[0]} orders")
        used = [order % wave.shape[0]]
        w, f, s = wave[order], flux[order], None if sigma is None else sigma[order]
    else:
        w, f, s, used = merge_orders(wave, flux, sigma, window, str(path))
    w, f, s = _clean(path, w, f, s)
    if w.size > 1 and np.any(np.diff(w) <= 0):
        # A merged overlap or a descending order: sort, and refuse genuine duplicates.
        idx = np.argsort(w, kind="stable")
        w, f = w[idx], f[idx]
        s = None if s is None else s[idx]
    metadata["orders"] = used
    if len(used) > 1:
        metadata["order_spans"] = _order_spans(wave, flux, used)
    return Spectrum(w, f, s, metadata)


def _order_spans(wave: np.ndarray, flux: np.ndarray, used: list[int]) -> list[list[float]]:
    """Wavelength range of each merged order, overlaps split at their middle as in
    :func:`merge_orders`; the radial velocity normalises and correlates each separately."""
    spans = sorted(s[:2] for s in _all_spans(wave, flux) if s[2] in used)
    bounds = []
    for i, (lo, hi) in enumerate(spans):
        if i > 0 and spans[i - 1][1] >= lo:
            lo = 0.5 * (lo + spans[i - 1][1])
        if i < len(spans) - 1 and spans[i + 1][0] <= hi:
            hi = 0.5 * (spans[i + 1][0] + hi)
        bounds.append([float(lo), float(hi)])
    return bounds


def _read_caracal(path: Path, hdul: fits.HDUList, serval: bool, order: int | None,
                  window: tuple[float, float] | None) -> Spectrum:
    header = hdul[0].header
    metadata = _header_metadata(path, header, "serval" if serval else "caracal")
    metadata["medium"] = "vacuum"
    name = path.name.lower()
    if "-vis" in name or "_vis" in name:
        metadata["resolving_power"] = RESOLVING_POWER["carmenes_vis"]
    elif "-nir" in name or "_nir" in name:
        metadata["resolving_power"] = RESOLVING_POWER["carmenes_nir"]
    wave = _image(hdul, "WAVE", path)
    if serval:
        # SERVAL templates store ln(lambda / Angstrom).
        wave = np.exp(wave)
    flux = _image(hdul, "SPEC", path)
    sigma = _image(hdul, "SIG", path) if "SIG" in hdul else None
    return _select_order(path, wave, flux, sigma, order, window, metadata)


def _looks_like_log(wave: np.ndarray) -> bool:
    finite = wave[np.isfinite(wave)]
    # ln(lambda) of any optical/IR wavelength in Angstrom lies in 7..12; lambda itself is >> 100.
    return finite.size > 0 and float(np.max(finite)) < 20 and float(np.min(finite)) > 5


def _read_named(path: Path, hdul: fits.HDUList, flux_ext: str, wave_ext: str | None,
                sigma_ext: str | None, variance_ext: str | None, wave_file: Path | None,
                order: int | None, window: tuple[float, float] | None) -> Spectrum:
    header = hdul[0].header
    metadata = _header_metadata(path, header, "echelle")
    flux = _image(hdul, flux_ext, path)
    if wave_ext is not None:
        wave = _image(hdul, wave_ext, path)
    elif wave_file is not None:
        with fits.open(wave_file, memmap=False) as wave_hdul:
            wave = np.asarray(wave_hdul[0].data, dtype=np.float64)
            if wave_hdul[0].data is None:
                raise ValueError(f"{wave_file}: the primary HDU holds no wavelength array")
        metadata["wave_file"] = str(wave_file)
    else:
        raise ValueError(
            f"{path}: no wavelength for flux extension {flux_ext!r}; pass wave_ext= (one of "
            f"{[h.name for h in hdul]}) or wave_file= (a FITS file with the wavelengths of "
            "every order in its primary HDU, e.g. HPF's LFC_wavecal_scifiber_v2.fits)"
        )
    if wave.shape != flux.shape:
        raise ValueError(
            f"{path}: wavelength shape {wave.shape} "
            f"{'from ' + str(wave_file) if wave_ext is None else 'of ' + repr(wave_ext)} "
            f"differs from flux shape {flux.shape} of {flux_ext!r}"
        )
    sigma = None
    if sigma_ext is not None:
        sigma = _image(hdul, sigma_ext, path)
    elif variance_ext is not None:
        variance = _image(hdul, variance_ext, path)
        with np.errstate(invalid="ignore"):
            sigma = np.sqrt(np.where(variance >= 0, variance, np.nan))
    return _select_order(path, wave, flux, sigma, order, window, metadata)


def _column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    upper = {n.upper(): n for n in names}
    for candidate in candidates:
        if candidate in upper:
            return upper[candidate]
    return None


def _read_table(path: Path, hdul: fits.HDUList, hdu: fits.BinTableHDU, order: int | None,
                window: tuple[float, float] | None) -> Spectrum:
    names = list(hdu.columns.names)
    wave_col, flux_col = _column(names, _WAVE_COLUMNS), _column(names, _FLUX_COLUMNS)
    sigma_col = _column(names, _SIGMA_COLUMNS)
    metadata = _header_metadata(path, hdul[0].header, "table")
    metadata.update({k: v for k, v in _header_metadata(path, hdu.header, "table").items()
                     if k not in metadata})
    metadata["medium"] = "vacuum" if "CARACAL BERV" in hdul[0].header else "unknown"
    if "CARACAL BERV" in hdul[0].header or path.name.startswith("car-"):
        arm = "carmenes_nir" if "nir" in path.name.lower() else "carmenes_vis"
        metadata["resolving_power"] = RESOLVING_POWER[arm]
    data = hdu.data
    wave = np.asarray(data[wave_col], dtype=np.float64)
    flux = np.asarray(data[flux_col], dtype=np.float64)
    sigma = None if sigma_col is None else np.asarray(data[sigma_col], dtype=np.float64)
    if wave.ndim == 1:
        return _select_order(path, wave[None, :], flux[None, :],
                             None if sigma is None else sigma[None, :], order, window, metadata)
    # One row per order with array cells: an echelle table.
    return _select_order(path, wave, flux, sigma, order, window, metadata)


def _read_linear_1d(path: Path, hdul: fits.HDUList) -> Spectrum:
    hdu = hdul[0]
    header = hdu.header
    flux = np.asarray(hdu.data, dtype=np.float64)
    step = header.get("CDELT1", header.get("CD1_1"))
    reference = float(header.get("CRPIX1", 1.0))
    pixel = np.arange(1, flux.size + 1, dtype=np.float64)
    axis = float(header["CRVAL1"]) + (pixel - reference) * float(step)
    metadata = _header_metadata(path, header, "linear_1d")
    ctype = str(header.get("CTYPE1", "")).upper()
    if int(header.get("DC-FLAG", 0)) == 1 or "LOG" in ctype:
        wave = 10.0 ** axis
    else:
        wave = axis
    unit = str(header.get("CUNIT1", "Angstrom")).strip().lower()
    scale = {"angstrom": 1.0, "a": 1.0, "aa": 1.0, "nm": 10.0, "um": 1e4, "micron": 1e4}
    if unit not in scale:
        raise ValueError(f"{path}: CUNIT1 = {unit!r}; expected Angstrom, nm or um")
    wave = wave * scale[unit]
    medium = str(header.get("AIRORVAC", header.get("MEDIUM", ""))).strip().lower()
    metadata["medium"] = {"air": "air", "vac": "vacuum", "vacuum": "vacuum"}.get(medium, "unknown")
    w, f, _ = _clean(path, wave, flux, None)
    return Spectrum(w, f, None, metadata)


def read_spectrum(
    path: str | os.PathLike,
    *,
    window: tuple[float, float] | None = None,
    order: int | None = None,
    flux_ext: str | None = None,
    wave_ext: str | None = None,
    sigma_ext: str | None = None,
    variance_ext: str | None = None,
    wave_file: str | os.PathLike | None = None,
    medium: str | None = None,
    resolving_power: float | None = None,
    coordinates: object | None = None,
    location: object | None = None,
) -> Spectrum:
    """Read an observed spectrum from a FITS file of a known layout.

    Layouts, tried in this order:

    - named echelle extensions (``flux_ext=...``; HPF files are recognised by their
      ``Sci Flux`` extension and read with ``Sci Wavl`` and ``Sci Variance``);
    - SERVAL templates (SPEC, WAVE as ln lambda, usually QMAP);
    - CARMENES CARACAL ``car-*-{vis,nir}_A.fits`` (SPEC, SIG, WAVE, CONT; orders x pixels);
    - binary tables with wavelength and flux columns (one row per pixel, or one row per order);
    - 1-D images with ``CRVAL1`` and ``CDELT1`` (or ``CD1_1``).

    Args:
        path: the FITS file.
        window: (start, stop) Angstrom: keep the order that covers it, or merge the orders
            that reach it.
        order: take this order only (0-based) instead.
        flux_ext, wave_ext, sigma_ext, variance_ext: extension names for echelle files.
        wave_file: a FITS file whose primary HDU holds the wavelengths of every order, for files
            without a wavelength extension (HPF ``GJ_273``: ``LFC_wavecal_scifiber_v2.fits``).
        medium: ``"vacuum"`` or ``"air"``, overriding what the layout implies.
        resolving_power: the instrument's R, overriding what the layout implies.
        coordinates: ``astropy.coordinates.SkyCoord`` of the target, for the BERV of a header
            that lacks both a BERV and coordinates (HPF ``GJ_273``).
        location: ``astropy.coordinates.EarthLocation`` of the observatory, for a header whose
            site is not in :data:`mdwarf_zoo.spectra.barycentric.OBSERVATORIES`.

    Returns:
        A 1-D :class:`Spectrum` with header facts in ``metadata``. ``berv`` (km/s) comes from
        the header (``berv_source='header'``) or, when the header has none, is computed from
        its time, coordinates and observatory (``berv_source='computed'``, with
        ``berv_time``, ``berv_coordinates``, ``berv_location`` saying from what); when it
        cannot be computed, ``berv_missing`` says what was missing. Merged echelle orders
        are listed in ``orders`` and their ranges in ``order_spans`` (the radial velocity
        treats each separately).

    Raises:
        FileNotFoundError: when ``path`` (or ``wave_file``) does not exist.
        SpectrumFileError: (a ``ValueError``) for a truncated or corrupt file whose data
            cannot be read; the message names the file and what was expected.
        ValueError: for an unknown layout (listing the extensions found), a missing named
            extension, mismatched shapes, or data that cannot form a spectrum.

    Examples:
        >>> from mdwarf_zoo.spectra import read_spectrum
        >>> s = read_spectrum("GJ_699.fits", flux_ext="Sci Flux", wave_ext="Sci Wavl",
        ...                   order=6)  # doctest: +SKIP
    """
    path = Path(path)
    wave_file = _check_arguments(path, wave_file, medium, order, window)
    hdul = _open_fits(path)
    try:
        with hdul, warnings.catch_warnings():
            # A truncated file is an error here, not a warning and a half-read array.
            warnings.filterwarnings("error", message=".*truncated.*")
            spectrum, header, hpf = _dispatch(path, hdul, window, order, flux_ext, wave_ext,
                                              sigma_ext, variance_ext, wave_file)
            extra = _berv_metadata(path, header, spectrum.metadata, coordinates, location)
    except SpectrumFileError:
        raise
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise SpectrumFileError(_corrupt(path, error)) from error
    except (OSError, TypeError, IndexError, KeyError, EOFError, AttributeError, VerifyError,
            Warning) as error:
        raise SpectrumFileError(_corrupt(path, error)) from error
    hpf = hpf or (flux_ext is not None and _is_hpf(header))
    extra.update(_instrument_facts(hpf, medium, resolving_power))
    if window is not None:
        _warn_partial_window(path, spectrum, window)
    return spectrum.replace(metadata=extra) if extra else spectrum


def _check_arguments(
    path: Path,
    wave_file: str | os.PathLike | None,
    medium: str | None,
    order: int | None,
    window: tuple[float, float] | None,
) -> Path | None:
    """The ``wave_file`` as a path, once the files exist and the options agree."""
    if not path.is_file():
        raise FileNotFoundError(f"spectrum file {path} does not exist")
    if wave_file is not None:
        wave_file = Path(wave_file)
        if not wave_file.is_file():
            raise FileNotFoundError(f"wave_file {wave_file} does not exist")
    if medium not in (None, "vacuum", "air"):
        raise ValueError(f"{path}: medium must be 'vacuum' or 'air', got {medium!r}")
    if order is not None and window is not None:
        raise ValueError(f"{path}: give order= or window=, not both")
    return wave_file


def _open_fits(path: Path) -> fits.HDUList:
    try:
        return fits.open(path, memmap=False)
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError, VerifyError) as error:
        raise SpectrumFileError(
            f"{path}: not a readable FITS file ({type(error).__name__}: {error}); expected a "
            "complete FITS file"
        ) from error


def _instrument_facts(hpf: bool, medium: str | None, resolving_power: float | None) -> dict:
    """``medium`` and ``resolving_power`` as given, else as an HPF file implies."""
    if hpf:
        medium = medium or "vacuum"
        resolving_power = resolving_power or RESOLVING_POWER["hpf"]
    facts: dict = {}
    if medium is not None:
        facts["medium"] = medium
    if resolving_power is not None:
        facts["resolving_power"] = float(resolving_power)
    return facts


def _warn_partial_window(path: Path, spectrum: Spectrum, window: tuple[float, float]) -> None:
    covered = spectrum.wavelength[0] <= window[0] and spectrum.wavelength[-1] >= window[1]
    if not covered:
        logger.warning(
            "%s covers %.2f-%.2f A, not all of the window %g-%g A",
            path,
            spectrum.wavelength[0],
            spectrum.wavelength[-1],
            *window,
        )


class SpectrumFileError(ValueError):
    """A spectrum file that is truncated or corrupt: its data cannot be read."""


def _corrupt(path: Path, error: BaseException) -> str:
    return (
        f"{path}: the file is truncated or corrupt; its FITS data cannot be read "
        f"({type(error).__name__}: {error}). Expected complete FITS extensions of a known "
        "layout (CARACAL/SERVAL, a spectrum table, a 1-D image or named echelle extensions)"
    )


def _is_hpf(header: fits.Header) -> bool:
    return str(header.get("INSTRUME", "")).strip().upper() == "HPF"


def _berv_metadata(path: Path, header: fits.Header, metadata: dict, coordinates: object,
                   location: object) -> dict:
    """``berv`` and ``berv_source``: from the header, or computed from its time, coordinates
    and observatory (see :mod:`mdwarf_zoo.spectra.barycentric`)."""
    if metadata.get("berv") is not None:
        return {"berv_source": "header"}
    from mdwarf_zoo.spectra.barycentric import berv_from_header

    try:
        berv, facts = berv_from_header(header, coordinates=coordinates, location=location,
                                       source=str(path))
    except ValueError as error:
        raise ValueError(
            f"{path}: the BERV cannot be computed from the header ({error})"
        ) from error
    if berv is None:
        logger.debug("%s: no BERV (missing %s)", path, facts["berv_missing"])
        return facts
    return {"berv": berv, "berv_source": "computed", **facts}


def _dispatch(path: Path, hdul: fits.HDUList, window, order, flux_ext, wave_ext, sigma_ext,
              variance_ext, wave_file) -> tuple[Spectrum, fits.Header, bool]:
    """The spectrum of an open file by its layout, its primary header, and whether it was
    recognised as HPF by its extensions."""
    names = {hdu.name.upper() for hdu in hdul}
    header = hdul[0].header
    hpf = False
    if flux_ext is not None or "SCI FLUX" in names:
        if flux_ext is None:
            hpf = True
            flux_ext = "Sci Flux"
            wave_ext = wave_ext or ("Sci Wavl" if "SCI WAVL" in names else None)
            if sigma_ext is None and variance_ext is None and "SCI VARIANCE" in names:
                variance_ext = "Sci Variance"
        spectrum = _read_named(path, hdul, flux_ext, wave_ext, sigma_ext, variance_ext,
                               wave_file, order, window)
    elif {"SPEC", "WAVE"} <= names and hdul["WAVE"].data is not None and isinstance(
        hdul["WAVE"], fits.ImageHDU
    ):
        serval = "QMAP" in names or _looks_like_log(np.asarray(hdul["WAVE"].data))
        spectrum = _read_caracal(path, hdul, serval, order, window)
    elif (table := _first_spectrum_table(hdul)) is not None:
        spectrum = _read_table(path, hdul, table, order, window)
    elif (
        hdul[0].data is not None
        and hdul[0].data.ndim == 1
        and "CRVAL1" in hdul[0].header
        and ("CDELT1" in hdul[0].header or "CD1_1" in hdul[0].header)
    ):
        if order is not None:
            raise ValueError(f"{path}: order={order} given but the file is a 1-D spectrum")
        spectrum = _read_linear_1d(path, hdul)
    else:
        raise ValueError(
            f"{path}: unknown FITS layout; found {_describe(hdul)}. Expected CARACAL/SERVAL "
            "(SPEC + WAVE images), a table with wavelength and flux columns, a 1-D image "
            "with CRVAL1/CDELT1, or named echelle extensions (pass flux_ext=, wave_ext=)"
        )
    return spectrum, header.copy(), hpf


def _first_spectrum_table(hdul: fits.HDUList) -> fits.BinTableHDU | None:
    for hdu in hdul[1:]:
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            names = list(hdu.columns.names)
            if _column(names, _WAVE_COLUMNS) and _column(names, _FLUX_COLUMNS):
                return hdu
    return None


def subtract_hpf_sky(path: str | os.PathLike, spectrum: Spectrum) -> Spectrum:
    """An HPF science spectrum (read from ``path``) minus the same file's sky fibre.

    HPF's sky fibre sees the OH emission lines (one at 8829.5 A sits in the MB24 window); its
    flux is interpolated onto the science wavelengths and subtracted, and the two fibres'
    sigmas are added in quadrature. The sky fibre is read over the spectrum's own span.

    Args:
        path: the HPF ``*.optimal.fits`` file ``spectrum`` was read from.
        spectrum: its science fibre, e.g. ``read_spectrum(path, window=...)``.

    Returns:
        The subtracted spectrum, with ``sky_subtracted=True`` in its metadata.

    Raises:
        ValueError: when the file has no ``Sky Wavl`` extension (HPF ``GJ_273``: the science
            fibre's LFC wavelength file does not hold the sky fibre's wavelengths).
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        names = [hdu.name.upper() for hdu in hdul]
    missing = [ext for ext in ("Sky Flux", "Sky Wavl") if ext.upper() not in names]
    if missing:
        raise ValueError(
            f"{path}: no {' or '.join(map(repr, missing))} extension (found {names}); the sky "
            "fibre cannot be subtracted, use the science fibre alone"
        )
    variance = "Sky Variance" if "SKY VARIANCE" in names else None
    sky = read_spectrum(
        path,
        flux_ext="Sky Flux",
        wave_ext="Sky Wavl",
        variance_ext=variance,
        window=(float(spectrum.wavelength[0]), float(spectrum.wavelength[-1])),
    )
    flux = spectrum.flux - np.interp(spectrum.wavelength, sky.wavelength, sky.flux)
    sigma = spectrum.sigma
    if sigma is not None and sky.sigma is not None:
        sigma = np.hypot(sigma, np.interp(spectrum.wavelength, sky.wavelength, sky.sigma))
    return spectrum.replace(flux=flux, sigma=sigma, metadata={"sky_subtracted": True})
