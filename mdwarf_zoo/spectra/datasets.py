"""HDF5 training and observed sets, and the builder of training sets from a PHOENIX grid.

Layout of a set file::

    /flux          float32 (n, pixels)     preprocessed flux on the grid
    /sigma         float32 (n, pixels)     optional uncertainties
    /labels        float64 (n, k)          attrs: names, units (absent for unlabelled sets)
    /wavelength    float64 (pixels,)       Angstrom, vacuum
    /identifiers   str (n,)
    /done          bool (n,)               rows written (the checkpoint of a resumable build)
    attrs: format, kind ("training" | "observed"), complete, preprocessing (JSON),
           provenance (JSON)

The builder works through the label table grouped by (Teff, log g, [M/H]): each group reads
only the window plus margin of the (up to 8) native files it needs, interpolates once,
broadens to the resolving power once, then applies each v sin i. Groups run in a pool of
worker processes; the parent streams finished rows into the file and marks them done, so an
interrupted build resumes where it stopped and memory stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from mdwarf_zoo._version import __version__
from mdwarf_zoo.labels import SET_LABEL_NAMES, SET_LABEL_UNITS
from mdwarf_zoo.spectra.grid import Spectrum
from mdwarf_zoo.spectra.phoenix import PhoenixGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor

logger = logging.getLogger(__name__)

FORMAT = "mdwarf_zoo.SpectrumSet/1"
LABEL_NAMES = SET_LABEL_NAMES
LABEL_UNITS = SET_LABEL_UNITS
_ALIASES = {
    "teff": ("teff", "t_eff", "teff_k"),
    "logg": ("logg", "log_g", "log(g)"),
    "metallicity": ("metallicity", "[m/h]", "m_h", "mh", "[fe/h]", "feh", "fe_h", "z"),
    "vsini": ("vsini", "v_sin_i", "vsin(i)", "vsini_kms"),
}
# Rows written between flushes of the output file: bounds the work an interruption loses.
_FLUSH_EVERY = 512


@dataclass
class SpectrumSet:
    """A set of preprocessed spectra on one wavelength grid.

    Args:
        flux: (n, pixels) flux.
        wavelength: (pixels,) Angstrom.
        labels: (n, k) labels or ``None`` (observed sets).
        label_names, label_units: names and units of the label columns.
        identifiers: one name per spectrum.
        preprocessing: the :class:`Preprocessor` the flux went through.
        provenance: where the data came from (JSON-serialisable).
        sigma: optional (n, pixels) uncertainties.
        kind: ``"training"`` or ``"observed"``.
    """

    flux: np.ndarray
    wavelength: np.ndarray
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = LABEL_NAMES
    label_units: tuple[str, ...] = LABEL_UNITS
    identifiers: list[str] = field(default_factory=list)
    preprocessing: Preprocessor | None = None
    provenance: dict = field(default_factory=dict)
    sigma: np.ndarray | None = None
    kind: str = "training"

    def __post_init__(self) -> None:
        self.flux = np.asarray(self.flux, dtype=np.float32)
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wavelength.size:
            raise ValueError(
                f"SpectrumSet: flux must be (n, {self.wavelength.size}), got {self.flux.shape}"
            )
        n = self.flux.shape[0]
        if not np.all(np.isfinite(self.flux)):
            raise ValueError("SpectrumSet: flux has non-finite values")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.float64)
            if self.labels.ndim != 2 or self.labels.shape[0] != n:
                raise ValueError(f"SpectrumSet: labels must be ({n}, k), got {self.labels.shape}")
            if len(self.label_names) != self.labels.shape[1] or len(self.label_units) != len(
                self.label_names
            ):
                raise ValueError(
                    f"SpectrumSet: {self.labels.shape[1]} label columns but names "
                    f"{self.label_names} and units {self.label_units}"
                )
        if not self.identifiers:
            self.identifiers = [f"spectrum_{i}" for i in range(n)]
        if len(self.identifiers) != n:
            raise ValueError(f"SpectrumSet: {len(self.identifiers)} identifiers for {n} spectra")
        if self.sigma is not None:
            self.sigma = np.asarray(self.sigma, dtype=np.float32)
            if self.sigma.shape != self.flux.shape:
                raise ValueError("SpectrumSet: sigma must have the shape of flux")
        if self.kind not in ("training", "observed"):
            raise ValueError(f"SpectrumSet: kind must be 'training' or 'observed', "
                             f"got {self.kind!r}")

    def __len__(self) -> int:
        return int(self.flux.shape[0])


def _create(path: Path, n: int, wavelength: np.ndarray, *, kind: str, labels: np.ndarray | None,
            label_names: tuple[str, ...], label_units: tuple[str, ...], identifiers: list[str],
            preprocessing: Preprocessor | None, provenance: dict, with_sigma: bool) -> h5py.File:
    handle = h5py.File(path, "w")
    pixels = wavelength.size
    chunk_rows = max(1, min(n, 64))
    handle.create_dataset("flux", (n, pixels), dtype="f4", chunks=(chunk_rows, pixels))
    if with_sigma:
        handle.create_dataset("sigma", (n, pixels), dtype="f4", chunks=(chunk_rows, pixels))
    handle.create_dataset("wavelength", data=wavelength.astype(np.float64))
    if labels is not None:
        dataset = handle.create_dataset("labels", data=labels.astype(np.float64))
        dataset.attrs["names"] = list(label_names)
        dataset.attrs["units"] = list(label_units)
    handle.create_dataset("identifiers", data=np.array(identifiers, dtype=object),
                          dtype=h5py.string_dtype())
    handle.create_dataset("done", data=np.zeros(n, dtype=bool))
    handle.attrs["format"] = FORMAT
    handle.attrs["kind"] = kind
    handle.attrs["complete"] = False
    handle.attrs["preprocessing"] = "" if preprocessing is None else preprocessing.to_json()
    handle.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    return handle


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (choose another --out)")


def write_set(path: str | os.PathLike, spectrum_set: SpectrumSet, *,
              overwrite: bool = False) -> Path:
    """Write a :class:`SpectrumSet` to an HDF5 file.

    Args:
        path: output file.
        spectrum_set: the set.
        overwrite: replace an existing file (off by default).

    Returns:
        The path written.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    s = spectrum_set
    partial = path.with_name(path.name + ".writing")
    with _create(partial, len(s), s.wavelength, kind=s.kind, labels=s.labels,
                 label_names=s.label_names, label_units=s.label_units,
                 identifiers=s.identifiers, preprocessing=s.preprocessing,
                 provenance=s.provenance, with_sigma=s.sigma is not None) as handle:
        handle["flux"][...] = s.flux
        if s.sigma is not None:
            handle["sigma"][...] = s.sigma
        handle["done"][...] = True
        handle.attrs["complete"] = True
    os.replace(partial, path)
    return path


def read_set(path: str | os.PathLike) -> SpectrumSet:
    """Read a set written by :func:`write_set` or :func:`build_training_set`.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for a file that is not a set, or an unfinished build (with the number of
            rows done).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spectrum set {path} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 file ({error})") from error
    with handle:
        if handle.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: format {handle.attrs.get('format')!r}, expected {FORMAT!r}")
        if not bool(handle.attrs["complete"]):
            done = int(np.count_nonzero(handle["done"][...]))
            raise ValueError(
                f"{path}: unfinished build ({done} of {handle['done'].shape[0]} rows done); "
                "run the same build-set command again to resume it"
            )
        labels = names = units = None
        if "labels" in handle:
            labels = handle["labels"][...]
            names = tuple(str(v) for v in handle["labels"].attrs["names"])
            units = tuple(str(v) for v in handle["labels"].attrs["units"])
        text = handle.attrs["preprocessing"]
        return SpectrumSet(
            flux=handle["flux"][...],
            wavelength=handle["wavelength"][...],
            labels=labels,
            label_names=names or LABEL_NAMES,
            label_units=units or LABEL_UNITS,
            identifiers=[v.decode() if isinstance(v, bytes) else str(v)
                         for v in handle["identifiers"][...]],
            preprocessing=Preprocessor.from_json(text) if text else None,
            provenance=json.loads(handle.attrs["provenance"]),
            sigma=handle["sigma"][...] if "sigma" in handle else None,
            kind=str(handle.attrs["kind"]),
        )


def load_labels(source: str | os.PathLike | np.ndarray) -> np.ndarray:
    """A label table as an (n, 4) float64 array of Teff (K), log g, [M/H], v sin i (km/s).

    ``.npy`` files hold the four columns in that order (like the MB24 ``ph_pars.npy``);
    CSV and ECSV files need named columns (``teff``, ``logg``, ``[M/H]``/``feh``/``mh``,
    ``vsini``, any case).

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for an unknown extension, missing columns, a wrong shape, non-finite
            values or a negative v sin i (naming the row).
    """
    if isinstance(source, np.ndarray):
        table, where = np.asarray(source, dtype=np.float64), "labels"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"label file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            table = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        elif suffix in (".csv", ".ecsv"):

            data = Table.read(path, format="ascii.ecsv" if suffix == ".ecsv" else "ascii.csv")
            lower = {name.strip().lower(): name for name in data.colnames}
            columns = []
            for label, aliases in _ALIASES.items():
                match = next((lower[a] for a in aliases if a in lower), None)
                if match is None:
                    raise ValueError(
                        f"{path}: no column for {label} (tried {list(aliases)}); found "
                        f"{data.colnames}"
                    )
                columns.append(np.asarray(data[match], dtype=np.float64))
            table = np.column_stack(columns)
        else:
            raise ValueError(f"{path}: label table must be .npy, .csv or .ecsv, got {suffix!r}")
    if table.ndim != 2 or table.shape[1] != 4 or table.shape[0] == 0:
        raise ValueError(
            f"{where}: labels must have shape (n, 4) (Teff, log g, [M/H], v sin i), got "
            f"{table.shape}"
        )
    bad = ~np.all(np.isfinite(table), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: row {i} has non-finite labels {table[i].tolist()}")
    if np.any(table[:, 3] < 0):
        i = int(np.flatnonzero(table[:, 3] < 0)[0])
        value = float(table[i, 3])
        raise ValueError(f"{where}: row {i} has v sin i = {value!r} km/s; expected >= 0")
    return table


# -- workers ---------------------------------------------------------------------------------
_WORKER: dict = {}
# Native pixels read beyond window + margin, Angstrom: broadening kernels reach ~1 A at
# v sin i = 30 km/s, so this keeps their edge effects out of the margin.
_PAD = 2.0


def _init_worker(root: str, config: str) -> None:
    grid = PhoenixGrid(root)
    prep = Preprocessor.from_json(config)
    low, high = prep.span
    wave = grid.wavelength
    start = max(low - _PAD, float(wave[0]))
    stop = min(high + _PAD, float(wave[-1]))
    i0, i1 = grid.pixel_range(start, stop)
    _WORKER.update(grid=grid, prep=prep, i0=i0, i1=i1, wave=wave[i0:i1].copy())


def _compute_group(task: tuple[tuple[float, float, float], list[int], list[float]]
                   ) -> tuple[list[int], np.ndarray]:
    label, rows, vsinis = task
    grid, prep = _WORKER["grid"], _WORKER["prep"]
    flux = grid.interpolate_flux(label, _WORKER["i0"], _WORKER["i1"], cache=True)
    spectrum = Spectrum(_WORKER["wave"], flux,
                        metadata={"source": f"PHOENIX at {label}", "medium": "vacuum"})
    wave, broad, _ = prep.prepare(spectrum)
    out = np.empty((len(rows), prep.grid.size), dtype=np.float32)
    for j, vsini in enumerate(vsinis):
        out[j], _ = prep.finish(wave, broad, None, vsini)
    return rows, out


def _fingerprint(labels: np.ndarray, preprocessor: Preprocessor) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(labels).tobytes())
    digest.update(preprocessor.to_json().encode())
    return digest.hexdigest()


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork: workers inherit the imported modules instead of importing the package again (whose
    # top level loads Keras/TensorFlow); spawn is the fallback where fork does not exist.
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def build_training_set(
    phoenix_dir: str | os.PathLike,
    labels: str | os.PathLike | np.ndarray,
    out: str | os.PathLike,
    *,
    preprocessor: Preprocessor | None = None,
    workers: int | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> Path:
    """Build an HDF5 training set from a local PHOENIX HiRes grid and a label table.

    Each label (Teff, log g, [M/H], v sin i) becomes the grid spectrum interpolated linearly
    in Teff, log g, [M/H], brought to the preprocessor's resolving power, rotationally
    broadened by v sin i, continuum-normalised on window + margin, put on the window grid and
    scaled: exactly what :class:`Preprocessor` does to an observed spectrum, plus rotation.

    Args:
        phoenix_dir: folder with the HiRes files and the WAVE file (see :class:`PhoenixGrid`).
        labels: label file (.npy/.csv/.ecsv) or (n, 4) array; see :func:`load_labels`.
        out: the HDF5 file to write. An unfinished file from the same labels and configuration
            is resumed; a finished one is never overwritten.
        preprocessor: the preprocessing (default: MB24 window, 5 A margin, R = 94,600).
        workers: worker processes (default: the number of CPU cores).
        progress: show a tqdm progress bar.
        limit: use only the first ``limit`` labels (quick looks).

    Returns:
        The output path.

    Raises:
        FileExistsError: when ``out`` is a finished set, or an unfinished set of other labels
            or another configuration.
        ValueError: for labels outside the grid points present (naming the label and the
            missing files), or bad labels.
    """
    out = Path(out)
    prep = preprocessor or Preprocessor(resolving_power=94600.0)
    table = load_labels(labels)
    if limit is not None:
        table = table[: int(limit)]
    grid = PhoenixGrid(phoenix_dir)
    keys = np.round(table[:, :3], 6)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Check every label before any work, so a bad row fails in seconds, not after an hour.
    for row in unique:
        grid.weights(row)
    grid.pixel_range(prep.span[0], prep.span[1])
    fingerprint = _fingerprint(table, prep)
    if out.exists():
        done = _resumable_rows(out, fingerprint)
        logger.info("resuming %s: %d of %d rows already done", out, int(done.sum()), done.size)
    else:
        provenance = _build_provenance(phoenix_dir, labels, table, grid, unique)
        _start_build(out, table, prep, provenance, fingerprint)
        done = np.zeros(table.shape[0], dtype=bool)
    tasks = []
    for g in range(unique.shape[0]):
        rows = [int(r) for r in np.flatnonzero((inverse == g) & ~done)]
        if rows:
            tasks.append((tuple(float(v) for v in unique[g]), rows,
                          [float(table[r, 3]) for r in rows]))
    n_workers = max(1, int(workers or os.cpu_count() or 1))
    _run_tasks(out, tasks, table.shape[0], str(phoenix_dir), prep.to_json(), n_workers, progress)
    _WORKER.clear()
    return out


def _resumable_rows(out: Path, fingerprint: str) -> np.ndarray:
    """The ``done`` rows of an unfinished build of the same labels and configuration; an
    error for any other file."""
    try:
        existing = h5py.File(out, "r")
    except OSError as error:
        raise FileExistsError(
            f"{out} exists and is not a spectrum set (not HDF5); not touching it"
        ) from error
    with existing as handle:
        if handle.attrs.get("format") != FORMAT:
            raise FileExistsError(f"{out} exists and is not a spectrum set; not touching it")
        if bool(handle.attrs["complete"]):
            raise FileExistsError(f"{out} is a finished training set; refusing to overwrite")
        if handle.attrs.get("fingerprint") != fingerprint:
            raise FileExistsError(
                f"{out} is an unfinished build of other labels or another configuration; "
                "remove it or choose another --out"
            )
        return handle["done"][...]


def _build_provenance(
    phoenix_dir: str | os.PathLike,
    labels: str | os.PathLike | np.ndarray,
    table: np.ndarray,
    grid: PhoenixGrid,
    unique: np.ndarray,
) -> dict:
    return {
        "created_by": f"mdwarf_zoo {__version__} build_training_set",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "phoenix_dir": str(Path(phoenix_dir).resolve()),
        "grid": "PHOENIX-ACES-AGSS-COND-2011 HiRes (Husser et al. 2013)",
        "interpolation": "linear in Teff, log g, [M/H] between native grid points",
        "grid_points_used": sorted(
            {p.relative_path for row in unique for p, _ in grid.weights(row)}
        ),
        "labels": str(labels) if not isinstance(labels, np.ndarray) else "array",
        "labels_sha256": hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest(),
    }


def _start_build(
    out: Path, table: np.ndarray, prep: Preprocessor, provenance: dict, fingerprint: str
) -> None:
    """An empty training set of ``table``'s rows, none done yet."""
    identifiers = [f"teff{t:g}_logg{g:g}_mh{m:+g}_vsini{v:g}" for t, g, m, v in table.tolist()]
    with _create(
        out,
        table.shape[0],
        prep.grid.wavelength,
        kind="training",
        labels=table,
        label_names=LABEL_NAMES,
        label_units=LABEL_UNITS,
        identifiers=identifiers,
        preprocessing=prep,
        provenance=provenance,
        with_sigma=False,
    ) as handle:
        handle.attrs["fingerprint"] = fingerprint


def _run_tasks(
    out: Path,
    tasks: list,
    n_rows: int,
    phoenix_dir: str,
    config: str,
    n_workers: int,
    progress: bool,
) -> None:
    """Compute the groups (in a pool of ``n_workers`` processes when there are several) and
    stream their rows into ``out``, marking each done; the set is complete when all are."""
    remaining = sum(len(t[1]) for t in tasks)
    with (
        h5py.File(out, "r+") as handle,
        tqdm(
            total=n_rows,
            initial=n_rows - remaining,
            unit="spectrum",
            desc="build-set",
            disable=not progress,
        ) as bar,
    ):
        flux_ds, done_ds = handle["flux"], handle["done"]
        since_flush = 0

        def store(rows: list[int], flux: np.ndarray) -> None:
            nonlocal since_flush
            # h5py takes a list of rows only when it is increasing.
            order = np.argsort(rows)
            rows_sorted = np.asarray(rows)[order]
            flux_ds[rows_sorted] = flux[order]
            done_ds[rows_sorted] = True
            since_flush += len(rows)
            if since_flush >= _FLUSH_EVERY:
                handle.flush()
                since_flush = 0
            bar.update(len(rows))

        if n_workers == 1 or len(tasks) < 2:
            _init_worker(phoenix_dir, config)
            for task in tasks:
                store(*_compute_group(task))
        else:
            context = _pool_context()
            with context.Pool(
                n_workers, initializer=_init_worker, initargs=(phoenix_dir, config)
            ) as pool:
                for rows, flux in pool.imap_unordered(_compute_group, tasks, chunksize=4):
                    store(rows, flux)
        if bool(np.all(done_ds[...])):
            handle.attrs["complete"] = True
