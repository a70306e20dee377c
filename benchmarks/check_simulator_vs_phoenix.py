"""Draw docs/simulator_vs_phoenix.png and print the simulator-vs-PHOENIX correlation table.

Both the simulator (``phoenix_flux``, log g 5.0, [M/H] 0) and the real PHOENIX-ACES spectra
(TFG files, 2300-2800 K, already at R = 94,600) go through ``Preprocessor(resolving_power=
94600)`` with 2 km/s of rotation onto the MB24 grid (8800-8835 A); the table gives
corr(1 - simulator, 1 - PHOENIX) at each Teff, the correlation of the 2300 -> 2800 K change,
and, for scale, the correlations between the PHOENIX spectra themselves.

Usage (the real data are not part of the repository; see the shared data's PROVENANCE.md):

    python benchmarks/check_simulator_vs_phoenix.py [--data DIR] [--out docs/...png]

Needs the ``test`` and ``plots`` extras (py7zr, matplotlib).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mdwarf_zoo.spectra import phoenix_calibration as pc
from mdwarf_zoo.spectra.grid import MB24_GRID

REPOSITORY = Path(__file__).resolve().parents[1]
SHOWN = (2300, 2500, 2800)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data"
                        / "phoenix" / "tfg_carmenes_vis_convolved")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs"
                        / "simulator_vs_phoenix.png")
    parser.add_argument("--vsini", type=float, default=2.0)
    args = parser.parse_args()

    spectra = pc.load_tfg_spectra(args.data)
    result = pc.chain_correlations(spectra, vsini=args.vsini)
    print("| Teff (K) | corr(simulator, PHOENIX) |")
    print("|---|---|")
    for teff, value in result["per_teff"].items():
        print(f"| {teff} | {value:.3f} |")
    teffs = sorted(result["per_teff"])
    print(f"\nchange {teffs[0]} -> {teffs[-1]} K: corr {result['change']:.3f}")
    pairs = result["phoenix_pairs"]
    print("PHOENIX vs PHOENIX: " + ", ".join(
        f"{a}/{b} {pairs[(a, b)]:.3f}" for a, b in ((2500, 2800), (2300, 2800), (2700, 2800))))

    eniric = (args.data.parent / "eniric_band_samples"
              / "Z_band_test_sample_lte03900-PHOENIX-ACES.dat.gz")
    if eniric.is_file():
        wavelength, flux = pc.load_eniric_sample(eniric)
        print("outside the fitted labels, PHOENIX-ACES 3900 K, log g 4.5, [M/H] 0 (eniric):")
        for labels in ((3900.0, 4.5, 0.0), (3500.0, 4.5, 0.0), (4300.0, 4.5, 0.0)):
            check = pc.extrapolation_correlation(wavelength, flux, labels)
            print(f"  simulator at {labels[0]:.0f} K, log g {labels[1]}: corr {check['corr']:.3f}, "
                  f"mean depth {check['depth_simulator']:.3f} (PHOENIX "
                  f"{check['depth_phoenix']:.3f})")
        from mdwarf_zoo.spectra import Spectrum
        from mdwarf_zoo.spectra.preprocess import Preprocessor

        hot = Preprocessor(resolving_power=94600.0)(Spectrum(wavelength, flux), vsini=args.vsini)
        scale = np.corrcoef(1 - result["phoenix"][2800], 1 - hot.flux)[0, 1]
        print(f"  for scale, PHOENIX 2800 K, log g 5 vs that 3900 K spectrum: {scale:.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wavelength = MB24_GRID.wavelength
    zoom = (wavelength >= 8815.0) & (wavelength <= 8822.0)
    fig, axes = plt.subplots(len(SHOWN), 2, figsize=(13, 2.4 * len(SHOWN)),
                             gridspec_kw={"width_ratios": [3, 1.2]}, sharey=True)
    for row, teff in zip(axes, SHOWN, strict=True):
        for axis, keep in ((row[0], slice(None)), (row[1], zoom)):
            axis.plot(wavelength[keep], result["phoenix"][teff][keep], color="black", lw=0.7,
                      label="PHOENIX-ACES")
            axis.plot(wavelength[keep], result["simulator"][teff][keep], color="tab:red",
                      lw=0.7, alpha=0.85, label="simulator")
        row[0].set_title(f"Teff {teff} K, log g 5.0, [M/H] 0: line-depth correlation "
                         f"{result['per_teff'][teff]:.3f}", fontsize=9, loc="left")
        row[0].set_ylabel("flux (prepared)")
        row[1].set_title("zoom 8815-8822 A", fontsize=9, loc="left")
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=2, frameon=False)
    for axis in axes[-1]:
        axis.set_xlabel("vacuum wavelength (A)")
    fig.suptitle(f"Simulator over real PHOENIX-ACES, both through Preprocessor(R = 94,600), "
                 f"v sin i {args.vsini:g} km/s; 2300 -> 2800 K change correlates "
                 f"{result['change']:.3f}", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
