"""PHOENIX HiRes layout: names, writers, index, interpolation and the downloader (against an
HTTP server on 127.0.0.1 serving files in the real layout)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mdwarf_zoo.spectra.phoenix import (
    GRID_NAME,
    WAVE_FILENAME,
    DownloadError,
    GridPoint,
    PhoenixGrid,
    check_phoenix_file,
    download_grid,
    interpolation_weights,
    parse_phoenix_filename,
    phoenix_filename,
    read_phoenix_spectrum,
    required_points,
    write_phoenix_spectrum,
    write_phoenix_wavelength,
)

TEFFS = (3000, 3100, 3200)
LOGGS = (4.5, 5.0)
METALLICITIES = (-0.5, 0.0)
WAVE = np.geomspace(8770.0, 8870.0, 5001)  # log-uniform like the real HiRes sampling


def linear_flux(teff: float, logg: float, mh: float) -> np.ndarray:
    """A flux that is linear in each label, so linear interpolation must reproduce it exactly."""
    pattern = 1.0 - 0.5 * np.exp(-0.5 * ((WAVE - 8817.0) / 0.08) ** 2)
    return 1e13 * (teff / 3000.0 + 0.2 * logg - 0.3 * mh) * pattern


def make_grid(root: Path) -> Path:
    write_phoenix_wavelength(root, WAVE)
    for teff in TEFFS:
        for logg in LOGGS:
            for mh in METALLICITIES:
                write_phoenix_spectrum(root, linear_flux(teff, logg, mh), teff, logg, mh)
    return root


def test_file_names_follow_the_server_layout():
    assert phoenix_filename(3000, 5.0, 0.0) == f"lte03000-5.00-0.0.{GRID_NAME}-HiRes.fits"
    assert phoenix_filename(2300, 4.5, 0.5) == f"lte02300-4.50+0.5.{GRID_NAME}-HiRes.fits"
    assert phoenix_filename(3000, 5.0, -1.0, 0.2) == (
        f"lte03000-5.00-1.0.Alpha=+0.20.{GRID_NAME}-HiRes.fits"
    )
    point = GridPoint(3000, 5.0, -1.0, -0.2)
    assert point.relative_path == (
        f"{GRID_NAME}/Z-1.0.Alpha=-0.20/lte03000-5.00-1.0.Alpha=-0.20.{GRID_NAME}-HiRes.fits"
    )
    assert GridPoint(3000, 5.0, 0.0).relative_path.startswith(f"{GRID_NAME}/Z-0.0/")
    assert parse_phoenix_filename(point.relative_path) == point
    with pytest.raises(ValueError, match="not a PHOENIX HiRes file name"):
        parse_phoenix_filename("lte3000.fits")
    with pytest.raises(ValueError, match="whole number"):
        phoenix_filename(3000.5, 5.0, 0.0)


def test_writers_produce_the_real_layout(tmp_path):
    wave_path = write_phoenix_wavelength(tmp_path, WAVE)
    assert wave_path == tmp_path / WAVE_FILENAME
    path = write_phoenix_spectrum(tmp_path, linear_flux(3000, 5.0, 0.0), 3000, 5.0, 0.0)
    assert path == tmp_path / GRID_NAME / "Z-0.0" / phoenix_filename(3000, 5.0, 0.0)
    with fits.open(path) as hdul:
        assert len(hdul) == 1
        header, data = hdul[0].header, hdul[0].data
        assert data.dtype == np.dtype(">f4") and data.shape == WAVE.shape
        assert (header["PHXTEFF"], header["PHXLOGG"], header["PHXM_H"], header["PHXALPHA"]) == (
            3000, 5.0, 0.0, 0.0)
        assert header["PHXBUNIT"] == "erg/s/cm^2/cm"
    with fits.open(wave_path) as hdul:
        assert hdul[0].data.dtype == np.dtype(">f8")
        np.testing.assert_array_equal(hdul[0].data, WAVE)
    assert check_phoenix_file(path) == GridPoint(3000, 5.0, 0.0)
    alpha = write_phoenix_spectrum(tmp_path, linear_flux(3000, 5.0, 0.0), 3000, 5.0, -1.0, 0.4)
    assert alpha.parent.name == "Z-1.0.Alpha=+0.40"
    assert fits.getheader(alpha)["PHXALPHA"] == pytest.approx(0.4)


def test_writers_refuse_bad_input_and_never_overwrite(tmp_path):
    write_phoenix_wavelength(tmp_path, WAVE)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_phoenix_wavelength(tmp_path, WAVE)
    with pytest.raises(ValueError, match="5001 wavelengths"):
        write_phoenix_spectrum(tmp_path, np.ones(10), 3000, 5.0, 0.0)
    bad = np.ones(WAVE.size)
    bad[7] = np.nan
    with pytest.raises(ValueError, match="non-finite.*index 7"):
        write_phoenix_spectrum(tmp_path, bad, 3000, 5.0, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        write_phoenix_wavelength(tmp_path / "other", WAVE[::-1])
    path = write_phoenix_spectrum(tmp_path, np.ones(WAVE.size), 3000, 5.0, 0.0)
    with pytest.raises(FileExistsError):
        write_phoenix_spectrum(tmp_path, np.zeros(WAVE.size), 3000, 5.0, 0.0)
    assert fits.getdata(path)[0] == 1.0


def test_index_read_and_exact_linear_interpolation(tmp_path):
    grid = PhoenixGrid(make_grid(tmp_path))
    assert len(grid) == 12
    np.testing.assert_array_equal(grid.axis("teff"), TEFFS)
    native = grid.read(GridPoint(3100, 4.5, -0.5), 8800, 8835)
    assert native.wavelength[0] >= 8800 and native.wavelength[-1] <= 8835
    np.testing.assert_allclose(native.flux, linear_flux(3100, 4.5, -0.5)[
        (WAVE >= 8800) & (WAVE <= 8835)], rtol=1e-6)
    label = (3137.5, 4.83, -0.21)
    spectrum = grid.interpolate(label, 8800, 8835)
    expected = linear_flux(*label)[(WAVE >= 8800) & (WAVE <= 8835)]
    np.testing.assert_allclose(spectrum.flux, expected, rtol=1e-6)
    weights = interpolation_weights(label, TEFFS, LOGGS, METALLICITIES)
    assert len(weights) == 8 and sum(w for _, w in weights) == pytest.approx(1.0)
    # A label on a native point uses that file alone.
    assert interpolation_weights((3100, 5.0, 0.0), TEFFS, LOGGS, METALLICITIES) == [
        (GridPoint(3100, 5.0, 0.0), 1.0)]
    single = read_phoenix_spectrum(grid.files[GridPoint(3000, 5.0, 0.0)], 8800, 8810)
    assert single.metadata["medium"] == "vacuum" and single.wavelength[-1] <= 8810


def test_labels_outside_the_grid_get_a_clear_error(tmp_path):
    grid = PhoenixGrid(make_grid(tmp_path))
    with pytest.raises(ValueError, match=r"Teff = 3250 lies outside .* 3000\.\.3200"):
        grid.interpolate((3250, 5.0, 0.0))
    with pytest.raises(ValueError, match=r"\[M/H\] = 0.3 lies outside"):
        grid.interpolate((3000, 5.0, 0.3))
    (tmp_path / GridPoint(3100, 5.0, 0.0).relative_path).unlink()
    grid = PhoenixGrid(tmp_path)
    with pytest.raises(ValueError, match="lacks the grid points .*lte03100-5.00-0.0"):
        grid.interpolate((3050, 5.0, 0.0))
    with pytest.raises(ValueError, match="must be finite"):
        grid.interpolate((np.nan, 5.0, 0.0))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no PHOENIX HiRes files"):
        PhoenixGrid(empty)


def test_required_points_for_the_mb24_labels():
    points = required_points([[2325, 4.7, -1.0, 1.5], [3000, 5.0, 0.0, 2]])
    assert GridPoint(2300, 4.5, -1.0) in points and GridPoint(2400, 5.0, -1.0) in points
    assert GridPoint(3000, 5.0, 0.0) in points
    assert len(points) == 4 + 1  # [M/H] = -1.0 is a native value: 2 x 2 corners
    with pytest.raises(ValueError, match="Teff = 2000 lies outside"):
        required_points([[2000, 5.0, 0.0, 1.0]])


# -- the downloader ---------------------------------------------------------------------------
class _Server:
    """A static file server with HTTP Range support and programmable faults."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_once: dict[str, int] = {}   # path -> bytes to send before dropping
        self.fail_once: set[str] = set()          # path -> answer 503 once
        self.corrupt_once: set[str] = set()       # path -> serve garbage once
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server API)
                rel = self.path.lstrip("/")
                server.requests.append((rel, self.headers.get("Range")))
                path = server.directory / rel
                if rel in server.fail_once:
                    server.fail_once.discard(rel)
                    self.send_error(503)
                    return
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                if rel in server.corrupt_once:
                    server.corrupt_once.discard(rel)
                    body = b"X" * len(body)
                start = 0
                header = self.headers.get("Range")
                if header:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Connection", "close")
                self.end_headers()
                payload = body[start:]
                if rel in server.truncate_once:
                    payload = payload[: server.truncate_once.pop(rel)]
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/HiResFITS/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(tmp_path):
    remote = tmp_path / "remote"
    make_grid(remote / "data" / "HiResFITS")
    with _Server(remote) as running:
        yield running


LABELS = np.array([[3050.0, 4.8, -0.2, 2.0]])


def test_download_fetches_resumes_retries_and_keeps_good_files(tmp_path, server):
    local = tmp_path / "local"
    needed = required_points(LABELS)
    assert len(needed) == 8
    first = f"data/HiResFITS/{needed[0].relative_path}"
    second = f"data/HiResFITS/{needed[1].relative_path}"
    server.truncate_once[first] = 10000     # connection drops mid-file: resume with Range
    server.fail_once.add(second)            # a 503: retry
    paths = download_grid(LABELS, local, server.url, backoff=0.01, progress=False)
    assert len(paths) == 9 and all(p.is_file() for p in paths)
    assert not list(local.rglob("*.part"))
    resumed = [r for r in server.requests if r[0] == first]
    assert resumed[0][1] is None and resumed[1][1] == "bytes=10000-"
    remote_file = server.directory / first
    assert (local / needed[0].relative_path).read_bytes() == remote_file.read_bytes()
    grid = PhoenixGrid(local)
    np.testing.assert_allclose(grid.interpolate(LABELS[0]).flux, linear_flux(3050, 4.8, -0.2),
                               rtol=1e-6)
    # A second run downloads nothing and leaves the good files untouched.
    before = len(server.requests)
    mtime = paths[1].stat().st_mtime_ns
    download_grid(LABELS, local, server.url, progress=False)
    assert len(server.requests) == before and paths[1].stat().st_mtime_ns == mtime


def test_download_checks_integrity_and_reports_failures(tmp_path, server):
    local = tmp_path / "local"
    point = GridPoint(3000, 4.5, 0.0)
    rel = f"data/HiResFITS/{point.relative_path}"
    server.corrupt_once.add(rel)
    (path,) = download_grid([point], local, server.url, include_wavelength=False,
                            backoff=0.01, progress=False)
    assert check_phoenix_file(path) == point
    assert sum(1 for r in server.requests if r[0] == rel) == 2
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_grid([GridPoint(4000, 4.5, 0.0)], local, server.url, include_wavelength=False,
                      progress=False)
    # A damaged file already present is reported, not silently replaced.
    path.write_bytes(b"broken")
    with pytest.raises(ValueError, match="exists but is damaged"):
        download_grid([point], local, server.url, include_wavelength=False, progress=False)
    assert path.read_bytes() == b"broken"
    server.fail_once.update({f"data/HiResFITS/{GridPoint(3100, 4.5, 0.0).relative_path}"})
    with pytest.raises(DownloadError, match="failed after 1 attempts"):
        download_grid([GridPoint(3100, 4.5, 0.0)], local, server.url, include_wavelength=False,
                      retries=0, progress=False)


def _tfg_spectrum(teff: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    py7zr = pytest.importorskip("py7zr")
    from conftest import shared_file

    archive = shared_file(f"phoenix/tfg_carmenes_vis_convolved/file_{teff}.7z")
    with py7zr.SevenZipFile(archive) as handle:
        handle.extract(path=folder, targets=[f"file_{teff}.csv"])
    data = np.loadtxt(folder / f"file_{teff}.csv", delimiter=",", skiprows=1)
    return data[:, 0], data[:, 1]


def test_real_phoenix_derived_spectra_through_the_layout_and_interpolation(tmp_path):
    """Real PHOENIX-ACES spectra (TFG, R = 94,600) written in the HiRes layout and read back."""
    wave, flux_2700 = _tfg_spectrum(2700, tmp_path)
    wave_2800, flux_2800 = _tfg_spectrum(2800, tmp_path)
    np.testing.assert_array_equal(wave, wave_2800)
    write_phoenix_wavelength(tmp_path / "grid", wave)
    write_phoenix_spectrum(tmp_path / "grid", flux_2700, 2700, 5.0, 0.0)
    write_phoenix_spectrum(tmp_path / "grid", flux_2800, 2800, 5.0, 0.0)
    grid = PhoenixGrid(tmp_path / "grid")
    middle = grid.interpolate((2750, 5.0, 0.0), 8790, 8845)
    keep = (wave >= 8790) & (wave <= 8845)
    np.testing.assert_allclose(middle.flux, 0.5 * (flux_2700[keep] + flux_2800[keep]),
                               rtol=1e-6)
    assert 1e12 < np.median(middle.flux) < 1e14   # erg/s/cm^2/cm, as PROVENANCE.md says
    with pytest.raises(ValueError, match="log g = 4.5 lies outside"):
        grid.interpolate((2750, 4.5, 0.0))
    from mdwarf_zoo.spectra.preprocess import Preprocessor

    # Already at R = 94,600: the Preprocessor must not broaden it again.
    prepared = Preprocessor(resolving_power=94600)(
        middle.replace(metadata={"resolving_power": 94600.0}))
    assert len(prepared) == 3501 and 0 <= prepared.flux.min() and prepared.flux.max() == 1.0
    assert 0.3 < np.median(prepared.flux) < 1.0
