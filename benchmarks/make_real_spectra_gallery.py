"""Draw docs/real_spectra.png: each HPF star, corrected to the rest frame and prepared on the MB24
grid, over the real PHOENIX-ACES spectrum (TFG files, 2300-2800 K) that matches it best.

The radial velocity is measured on HPF orders 4-6 (8600-8890 A) against the 2800 K model, with
a second pass on the MB24 window, and the BERV is computed from each header (McDonald/HET).

Usage (the real data are not part of the repository; see the test data folder's provenance):

    python benchmarks/make_real_spectra_gallery.py [--data DIR] [--out docs/real_spectra.png]

Needs the ``test`` and ``plots`` extras (py7zr, matplotlib).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

STARS = (
    ("GJ_699", "GJ_699_Slope-20190319T114849_R01.optimal.fits"),
    ("GJ_273", "GJ_273_Slope-20180302T021512_R01.optimal.fits"),
    ("TOI-1468", "TOI-1468_Slope-20200129T015117_R01.optimal.fits"),
    ("G_227-22", "G_227-22_Slope-20180919T015627_R01.optimal.fits"),
    ("G_9-40", "G_9-40_Slope-20190301T024821_R01.optimal.fits"),
    ("VB_10", "VB_10_Slope-20190612T065809_R01.optimal.fits"),
)
TEFFS = (2300, 2400, 2500, 2600, 2700, 2800)


def _phoenix(data: Path, folder: Path):
    import py7zr

    from mdwarf_zoo.spectra import Spectrum

    models = {}
    for teff in TEFFS:
        archive = data / "phoenix" / "tfg_carmenes_vis_convolved" / f"file_{teff}.7z"
        with py7zr.SevenZipFile(archive) as handle:
            handle.extract(path=folder, targets=[f"file_{teff}.csv"])
        table = np.loadtxt(folder / f"file_{teff}.csv", delimiter=",", skiprows=1)
        keep = (table[:, 0] > 8300) & (table[:, 0] < 9300)
        models[teff] = Spectrum(table[keep, 0], table[keep, 1], metadata={
            "source": f"PHOENIX-ACES {teff} K (TFG)", "resolving_power": 94600.0,
            "medium": "vacuum"})
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repository = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=repository.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=repository / "docs" / "real_spectra.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.coordinates import SkyCoord

    from mdwarf_zoo.spectra import read_spectrum
    from mdwarf_zoo.spectra.preprocess import Preprocessor
    from mdwarf_zoo.spectra.rv import to_rest_frame

    hpf = args.data / "observed" / "hpf"
    prep = Preprocessor(resolving_power=55000)
    with tempfile.TemporaryDirectory() as folder:
        models = _phoenix(args.data, Path(folder))
    prepared_models = {t: prep(m) for t, m in models.items()}
    fig, axes = plt.subplots(len(STARS), 1, figsize=(11, 2.1 * len(STARS)), sharex=True)
    for axis, (star, name) in zip(axes, STARS, strict=True):
        options: dict = {"wave_ext": "Sci Wavl"}
        if star == "GJ_273":
            options = {"wave_file": hpf / "LFC_wavecal_scifiber_v2.fits",
                       "coordinates": SkyCoord("07h27m24.5s", "+05d13m32.8s")}
        spectrum = read_spectrum(hpf / name, flux_ext="Sci Flux", window=(8600, 8890), **options)
        rest, velocity = to_rest_frame(spectrum, models[2800], rv_min=-300, rv_max=300,
                                       refine_window=(prep.grid.start, prep.grid.stop))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prep(rest)
        distances = {t: float(np.mean((prepared.flux - m.flux) ** 2))
                     for t, m in prepared_models.items()}
        teff = min(distances, key=distances.get)
        axis.plot(prepared_models[teff].wavelength, prepared_models[teff].flux, color="tab:red",
                  lw=0.8, label=f"PHOENIX-ACES {teff} K, log g 5.0, [M/H] 0 (nearest of "
                  "2300-2800 K)")
        axis.plot(prepared.wavelength, prepared.flux, color="black", lw=0.7,
                  label=f"HPF {star}")
        bary = ("n/a" if velocity.barycentric_rv is None
                else f"{velocity.barycentric_rv:+.2f}")
        axis.set_title(
            f"{star}: RV {velocity.rv:+.2f} +- {velocity.uncertainty:.2f} km/s, BERV "
            f"{velocity.berv:+.2f} ({velocity.berv_source}), barycentric {bary} km/s, "
            f"{velocity.n_agreeing}/{velocity.n_orders} orders agree, flag {velocity.flag}",
            fontsize=9, loc="left")
        axis.set_ylabel("flux (prepared)")
        axis.set_ylim(-0.05, 1.1)
        axis.legend(loc="lower right", fontsize=7, ncol=2, frameon=False)
    axes[-1].set_xlabel("vacuum wavelength in the star's rest frame (A), MB24 window")
    fig.suptitle("Real HPF spectra prepared on the MB24 grid over real PHOENIX-ACES spectra",
                 fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
