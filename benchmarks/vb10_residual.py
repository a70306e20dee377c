"""VB 10 (HPF) against real PHOENIX-ACES, beside the simulator's observed-minus-synthetic gap.

VB 10 (M8 V) is the one HPF star inside the TFG PHOENIX-ACES range (2300-2800 K, log g 5,
[M/H] 0). Its HPF spectrum (R = 55,000; HPF's sky fiber subtracted, because an OH sky line at
8829.5 A sits in the MB24 window) is moved to its rest frame against the PHOENIX spectrum
nearest its literature Teff, and both go through ``Preprocessor(resolving_power=55000)`` onto
the MB24 grid (8800-8835 A), PHOENIX rotated by the literature v sin i. Beside that residual
stands the simulator's: ``observe(synthetic) - synthetic`` at VB 10's literature labels,
default ``GapConfig``, S/N 150, through the same preprocessing
(``phoenix_calibration.observed_gap``). The other TFG Teff are listed for scale.

Usage (the real data are not part of the repository; see the shared data's PROVENANCE.md):

    python benchmarks/vb10_residual.py [--data DIR] [--no-sky]

Needs the ``test`` extra (py7zr).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from astropy.table import Table

from mdwarf_zoo.spectra import phoenix_calibration as pc
from mdwarf_zoo.spectra import read_spectrum, subtract_hpf_sky

REPOSITORY = Path(__file__).resolve().parents[1]
HPF_FILE = "observed/hpf/VB_10_Slope-20190612T065809_R01.optimal.fits"
KARMN = "J19169+051S"  # VB 10 = GJ 752 B = V1298 Aql in Carmencita
TEFFS = (2300, 2400, 2500, 2600, 2700, 2800)


def read_vb10(data: Path, sky: bool = True):
    """VB 10's HPF orders near the MB24 window, the sky fiber subtracted unless ``sky`` is
    false (sigma from both fibers' variances)."""
    path = data / HPF_FILE
    star = read_spectrum(
        path,
        flux_ext="Sci Flux",
        variance_ext="Sci Variance",
        window=(8600.0, 8890.0),
        wave_ext="Sci Wavl",
    )
    return subtract_hpf_sky(path, star) if sky else star


def _row(table: Table, key: str, value: str):
    names = [str(v).strip() for v in table[key]]
    return table[names.index(value)]


def literature(data: Path) -> dict[str, tuple[float, str]]:
    """VB 10's literature labels and barycentric RV, each with its source."""
    tables = data / "tables"
    marfil = _row(
        Table.read(tables / "carmenes_params" / "lit_mar21.csv", format="ascii.csv"), "Karmn", KARMN
    )
    carmencita = _row(
        Table.read(tables / "carmencita" / "cif03_full_table.csv", format="ascii.csv"),
        "Karmn",
        KARMN,
    )
    return {
        "teff": (float(marfil["Tpr"]), "Marfil+21 (lit_mar21 Tpr; Carmencita cif03 also 2500)"),
        "logg": (float(marfil["gpr"]), "Marfil+21 (lit_mar21 gpr)"),
        "feh": (float(carmencita["Fe_H"]), f"Carmencita cif03 Fe_H ({carmencita['Fe_H_ref']})"),
        "vsini": (float(marfil["vsini"]), "Marfil+21 (lit_mar21 vsini)"),
        "rv": (float(carmencita["rv"]), f"Carmencita cif03 rv ({carmencita['rv_ref']})"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument(
        "--no-sky",
        action="store_true",
        help="keep HPF's sky fiber (the OH line at 8829.5 A stays in)",
    )
    args = parser.parse_args()

    known = literature(args.data)
    labels = tuple(known[k][0] for k in ("teff", "logg", "feh", "vsini"))
    star = read_vb10(args.data, sky=not args.no_sky)
    spectra = pc.load_tfg_spectra(
        args.data / "phoenix" / "tfg_carmenes_vis_convolved", TEFFS, window=(8550.0, 8950.0)
    )
    nearest = min(TEFFS, key=lambda t: abs(t - labels[0]))
    results = {t: pc.observed_gap(star, spectra[t], labels) for t in TEFFS}
    main_result = results[nearest]
    velocity = main_result["velocity"]

    print(
        f"VB 10, HPF {Path(HPF_FILE).name}, sky fiber "
        f"{'kept' if args.no_sky else 'subtracted'}; window 8800-8835 A (MB24 grid, "
        f"0.01 A), Preprocessor(resolving_power={main_result['resolving_power']:.0f}), "
        "GISIC normalisation"
    )
    for key, (value, source) in known.items():
        print(f"  literature {key} = {value:g} ({source})")
    print(
        f"  RV against PHOENIX {nearest} K: {velocity.rv:+.2f} +- {velocity.uncertainty:.2f} "
        f"km/s (BERV {velocity.berv:+.2f}; barycentric {velocity.barycentric_rv:+.2f}, "
        f"literature {known['rv'][0]:+.2f}), flag {velocity.flag}"
    )
    print(
        f"  VB 10 median prepared sigma {main_result['noise']:.4f}; mean line depth VB 10 "
        f"{main_result['depth_star']:.3f}, PHOENIX {nearest} K "
        f"{main_result['depth_phoenix']:.3f}\n"
    )
    print(
        f"| quantity (simulator at Teff {labels[0]:g}, log g {labels[1]:g}, [M/H] "
        f"{labels[2]:g}, v sin i {labels[3]:g}) | value |"
    )
    print("|---|---|")
    print(f"| rms(VB 10 - PHOENIX {nearest} K) | {main_result['rms_real']:.4f} |")
    print(
        f"| rms(observed - synthetic), default GapConfig, S/N 150 | {main_result['rms_gap']:.4f} |"
    )
    print(f"| corr(VB 10 - PHOENIX, observed - synthetic) | {main_result['corr_residuals']:.3f} |")
    print(
        f"| corr(1 - VB 10, 1 - PHOENIX {nearest} K), for scale | {main_result['corr_lines']:.3f} |"
    )
    print("\nEvery TFG Teff (the simulator side is the same in each row):\n")
    print(
        "| PHOENIX Teff (K) | rms(VB 10 - PHOENIX) | corr(1 - VB 10, 1 - PHOENIX) | "
        "corr with the gap residual | RV (km/s) |"
    )
    print("|---|---|---|---|---|")
    for teff, result in results.items():
        print(
            f"| {teff} | {result['rms_real']:.4f} | {result['corr_lines']:.3f} | "
            f"{result['corr_residuals']:.3f} | {result['velocity'].rv:+.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
