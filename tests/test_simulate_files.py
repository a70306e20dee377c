"""``mdwarf-zoo simulate``: PHOENIX layout through build-set, CARACAL through read_spectrum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mdwarf_zoo.cli import main
from mdwarf_zoo.spectra.datasets import read_set
from mdwarf_zoo.spectra.observed import read_spectrum
from mdwarf_zoo.spectra.phoenix import WAVE_FILENAME
from mdwarf_zoo.spectra.simulate import synthetic_spectra

LABELS = np.array([[3325.0, 4.9, -0.1, 2.0], [3450.0, 5.0, 0.2, 5.0]])


def simulate(label_file: Path, out: Path, *options: str) -> int:
    """Run ``mdwarf-zoo simulate --labels LABEL_FILE --out OUT OPTIONS...``; the exit code."""
    return main(["simulate", "--labels", str(label_file), "--out", str(out), *options])


@pytest.fixture()
def label_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.npy"
    np.save(path, LABELS)
    return path


def test_phoenix_layout_goes_through_build_set(tmp_path, label_file):
    grid_dir = tmp_path / "phoenix"
    assert simulate(label_file, grid_dir, "--format", "phoenix", "--no-progress") == 0
    files = sorted(grid_dir.rglob("lte*.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"))
    # Brackets: 3300/3400 x 4.5/5.0 x -0.5/0.0 (8) and 3400/3500 x 5.0 x 0.0/+0.5 (4), one shared.
    assert len(files) == 11
    assert (grid_dir / WAVE_FILENAME).is_file()
    with fits.open(files[0]) as hdul:
        header, flux = hdul[0].header, hdul[0].data
        assert {"PHXTEFF", "PHXLOGG", "PHXM_H", "PHXALPHA"} <= set(header)
        # Surface flux of a ~3300 K star near 8800 A: ~1e13 erg/s/cm^2/cm, not normalised.
        assert 1e12 < np.median(flux) < 1e14
    out = tmp_path / "set.h5"
    assert (
        main(
            [
                "build-set",
                "--phoenix",
                str(grid_dir),
                "--labels",
                str(label_file),
                "--out",
                str(out),
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    built = read_set(out)
    assert built.flux.shape == (2, 3501)
    np.testing.assert_allclose(built.labels, LABELS)
    # The interpolated, normalised grid spectra resemble the direct simulation.
    direct = synthetic_spectra(LABELS)
    for row in range(2):
        assert np.corrcoef(built.flux[row], direct[row])[0, 1] > 0.8


def test_caracal_layout_goes_through_read_spectrum(tmp_path, label_file):
    out = tmp_path / "car"
    assert (
        simulate(
            label_file,
            out,
            "--format",
            "caracal",
            "--observed",
            "--snr",
            "100",
            "--seed",
            "3",
            "--no-progress",
        )
        == 0
    )
    files = sorted(out.glob("car-*-sci-gtoc-vis_A.fits"))
    assert len(files) == 2
    spectrum = read_spectrum(files[1])
    assert spectrum.metadata["layout"] == "caracal"
    assert spectrum.metadata["object"] == "SIM-00001"
    assert spectrum.wavelength[0] <= 8790 and spectrum.wavelength[-1] >= 8845
    with fits.open(files[1]) as hdul:
        assert hdul[0].header["SIMTEFF"] == 3450.0
        continuum = hdul["CONT"].data[0]
        sigma = hdul["SIG"].data[0]
    ratio = spectrum.flux / continuum
    assert 0.6 < np.median(ratio) < 1.05
    # S/N 100 at the continuum.
    assert np.median(continuum / sigma) == pytest.approx(100 / np.sqrt(np.median(ratio)), rel=0.1)


def test_hdf5_sets(tmp_path, label_file):
    assert simulate(label_file, tmp_path, "--format", "hdf5", "--no-progress") == 0
    synthetic = read_set(tmp_path / "synthetic.h5")
    np.testing.assert_allclose(synthetic.flux, synthetic_spectra(LABELS), atol=1e-6)
    assert synthetic.kind == "training"
    assert (
        simulate(
            label_file,
            tmp_path,
            "--format",
            "hdf5",
            "--observed",
            "--gap",
            "damping_scale=2",
            "--no-progress",
        )
        == 0
    )
    observed = read_set(tmp_path / "observed.h5")
    assert observed.kind == "observed"
    assert observed.provenance["gap"]["damping_scale"] == 2.0
    assert observed.provenance["snr"] == 150.0
    assert not np.allclose(observed.flux, synthetic.flux, atol=1e-3)


def test_cli_errors(tmp_path, label_file, capsys):
    assert simulate(label_file, tmp_path, "--format", "phoenix", "--observed") == 1
    assert "--observed cannot be written as --format phoenix" in capsys.readouterr().err
    assert (
        simulate(
            label_file,
            tmp_path,
            "--format",
            "hdf5",
            "--observed",
            "--gap",
            "nonsense=1",
            "--no-progress",
        )
        == 1
    )
    assert "unknown gap knob(s) nonsense" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[3300.0, 5.0, 0.0, 2.0], [3300.0, 5.0, 2.5, 2.0]]))
    assert simulate(bad, tmp_path, "--format", "hdf5", "--no-progress") == 1
    assert "row 1: metallicity = 2.5" in capsys.readouterr().err
