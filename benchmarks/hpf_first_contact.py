"""First contact with real stars: a pipeline on the six HPF stars beside their literature labels.

No target, no calibration: each HPF file (``observed/hpf/*.optimal.fits``) is read over the
pipeline's window, its sky fibre subtracted (``subtract_hpf_sky``; GJ 273's file has no sky
wavelengths and is used without), moved to its rest frame against the pipeline's own
radial-velocity template (``pipeline.pretrained.rest_frame``: every order near the window, then
a second pass on it; barycentric correction computed from the header), preprocessed with the
pipeline's ``Preprocessor`` (resolution matched from HPF's R = 55,000) and predicted in one
``PretrainedPipeline.predict`` call. Warnings raised on the way are listed per star.

Literature: Carmencita ``cif03_full_table.csv`` (``Teff_K``/``Teff_ref``, ``logg`` (no
reference column; 0.5 dex steps), ``Fe_H``/``Fe_H_ref``), matched by the GJ number of the HPF
name, else by the header's J2000 coordinates carried to Gaia DR3's epoch 2016.0 with the
header's proper motion (within 3 arcsec); and ``HPF_SpecMatch_Emp_Stars.csv`` (``Teff``,
``log(g)``, ``[Fe/H]``), matched by ``HPF_NAME``. The differences pipeline - literature take
Carmencita where it has a value, else HPF-SpecMatch.

Usage (the real data are not part of the repository; see the shared data's PROVENANCE.md):

    python benchmarks/hpf_first_contact.py [--pipeline NAME_OR_DIR] [--data DIR] [--out ECSV]
"""

from __future__ import annotations

import argparse
import logging
import re
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from scipy.stats import spearmanr

from mdwarf_zoo.commands.predict import add_velocity_columns
from mdwarf_zoo.pipeline.pretrained import load_pipeline, rest_frame
from mdwarf_zoo.spectra import read_spectrum, subtract_hpf_sky

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_PIPELINE = "mb24_quickstart_demo"
#: The science fibre's wavelengths, for HPF files without a ``Sci Wavl`` extension (GJ 273).
WAVE_FILE = "LFC_wavecal_scifiber_v2.fits"
#: Header positions of HPF targets are typed in, a few arcsec off (TOI-1468: 3.6"): a match
#: needs the position within this radius and the header's proper motion within PM_TOLERANCE.
MATCH_RADIUS_ARCSEC = 10.0
PM_TOLERANCE = 10.0  # mas/yr
GAIA_EPOCH = 2016.0
#: The pipeline's labels beside the literature's (Carmencita and HPF-SpecMatch columns).
COMPARED = {
    "teff": ("Teff_K", "Teff"),
    "logg": ("logg", "log(g)"),
    "mh": ("Fe_H", "[Fe/H]"),
}


def hpf_files(folder: Path) -> list[Path]:
    """The HPF spectra in ``folder``, sorted by name (the wavelength file left out)."""
    files = sorted(p for p in folder.glob("*.optimal.fits"))
    if not files:
        raise FileNotFoundError(f"no HPF *.optimal.fits files in {folder}")
    return files


def _strip(column) -> list[str]:
    return [str(v).strip() for v in column]


def carmencita_match(table: Table, name: str, header: fits.Header) -> tuple[int | None, str]:
    """The Carmencita row of an HPF star and how it was found (``None`` when not found)."""
    number = re.fullmatch(r"(?:GJ|Gl|GL)[_ ]?(\d+\w*)", name)
    if number:
        hits = [i for i, gj in enumerate(_strip(table["GJ"])) if gj == number.group(1)]
        if len(hits) == 1:
            return hits[0], f"GJ {number.group(1)}"
    if "QRA" not in header or "QDEC" not in header:
        return None, "no GJ number and no coordinates in the header"
    position = SkyCoord(header["QRA"], header["QDEC"], unit=("hourangle", "deg"))
    # Carmencita's positions are Gaia DR3's (epoch 2016.0); the header's are J2000 with the
    # proper motion beside them (QPMRA is mu_alpha cos delta, mas/yr).
    years = GAIA_EPOCH - float(header.get("QEPOCH", 2000.0))
    dec = position.dec.deg + float(header.get("QPMDEC", 0.0)) * years / 3.6e6
    ra = position.ra.deg + float(header.get("QPMRA", 0.0)) * years / 3.6e6 / np.cos(
        np.radians(position.dec.deg)
    )
    catalogue = SkyCoord(
        np.asarray(table["ra"], float), np.asarray(table["dec"], float), unit="deg"
    )
    separation = SkyCoord(ra, dec, unit="deg").separation(catalogue).arcsec
    best = int(np.nanargmin(separation))
    if separation[best] > MATCH_RADIUS_ARCSEC:
        return None, f"nearest Carmencita star {separation[best]:.0f} arcsec away"
    pm = np.hypot(
        float(header.get("QPMRA", np.nan)) - float(table["pmra"][best]),
        float(header.get("QPMDEC", np.nan)) - float(table["pmdec"][best]),
    )
    if not pm <= PM_TOLERANCE:
        return None, (
            f"Carmencita star {separation[best]:.1f} arcsec away has a proper motion "
            f"{pm:.0f} mas/yr off"
        )
    return best, f"coordinates ({separation[best]:.1f} arcsec, proper motion {pm:.1f} mas/yr)"


def _value(row, column: str) -> float:
    value = row[column]
    return float("nan") if np.ma.is_masked(value) else float(value)


def _text(row, column: str) -> str:
    value = row[column]
    return "" if np.ma.is_masked(value) else str(value).strip()


def literature(carmencita: Table, specmatch: Table, name: str, header: fits.Header) -> dict:
    """A star's literature labels: Carmencita cif03 (``*_carm``, with the references and how
    the row was matched) and HPF-SpecMatch (``*_hpfsm``); NaN where a table has none."""
    index, how = carmencita_match(carmencita, name, header)
    facts: dict = {"carmencita_match": how, "karmn": ""}
    row = None if index is None else carmencita[index]
    if row is not None:
        facts["karmn"] = _text(row, "Karmn")
        facts["ra"], facts["dec"] = _value(row, "ra"), _value(row, "dec")
    for label, (carm, _) in COMPARED.items():
        facts[f"{label}_carm"] = float("nan") if row is None else _value(row, carm)
    facts["teff_carm_ref"] = "" if row is None else _text(row, "Teff_ref")
    facts["mh_carm_ref"] = "" if row is None else _text(row, "Fe_H_ref")
    hits = [i for i, n in enumerate(_strip(specmatch["HPF_NAME"])) if n == name]
    sm = specmatch[hits[0]] if hits else None
    for label, (_, column) in COMPARED.items():
        facts[f"{label}_hpfsm"] = float("nan") if sm is None else _value(sm, column)
    return facts


class _Collect(logging.Handler):
    """Keeps the package's logged warnings (resolution, window coverage) for the table."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def measure(path: Path, pipeline, template, facts: dict) -> tuple[np.ndarray, dict]:
    """One HPF file through the chain: preprocessed flux, and its velocity record with the
    sky subtraction and the warnings raised on the way."""
    preprocessor = pipeline.preprocessor()
    options: dict = {}
    with fits.open(path) as hdul:
        if "SCI WAVL" not in [hdu.name.upper() for hdu in hdul]:
            options["wave_file"] = path.parent / WAVE_FILE
            if "ra" in facts:
                # The header holds no coordinates: the matched Carmencita position gives the
                # barycentric correction (an arcminute off would change it by < 1 m/s).
                options["coordinates"] = SkyCoord(facts["ra"], facts["dec"], unit="deg")
    collect = _Collect()
    package_logger = logging.getLogger("mdwarf_zoo")
    package_logger.addHandler(collect)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spectrum = read_spectrum(path, window=preprocessor.span, **options)
        try:
            spectrum = subtract_hpf_sky(path, spectrum)
            sky = "subtracted"
        except ValueError:
            sky = "kept (no Sky Wavl)"
        shifted, velocity = rest_frame(path, spectrum, template, preprocessor, read_options=options)
        flux = preprocessor(shifted).flux
    package_logger.removeHandler(collect)
    record = velocity.record()
    record["sky"] = sky
    messages = collect.messages + [f"{w.category.__name__}: {w.message}" for w in caught]
    record["warnings"] = sorted({m.replace(str(path), path.name) for m in messages})
    return flux, record


def first_contact(pipeline_source: str, data: Path, error_model: str = "default") -> Table:
    """The pipeline's estimates for every HPF star beside its RV and literature labels
    (``error_model`` as in ``PretrainedPipeline.predict``)."""
    pipeline = load_pipeline(pipeline_source)
    template = pipeline.rv_template()
    if template is None:
        raise ValueError(
            f"--pipeline {pipeline_source}: the pipeline has no rv_template; give a run folder "
            "one with mdwarf_zoo.pipeline.pretrained.write_rv_template(FOLDER)"
        )
    tables = data / "tables"
    carmencita = Table.read(tables / "carmencita" / "cif03_full_table.csv", format="ascii.csv")
    specmatch = Table.read(tables / "HPF_SpecMatch_Emp_Stars.csv", format="ascii.csv")
    fluxes, records, known, names = [], [], [], []
    for path in hpf_files(data / "observed" / "hpf"):
        header = fits.getheader(path)
        name = str(header.get("OBJECT", path.name)).strip()
        known.append(literature(carmencita, specmatch, name, header))
        flux, record = measure(path, pipeline, template, known[-1])
        fluxes.append(flux)
        records.append(record)
        names.append(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Keras says so of every regressor saved with its optimizer state; inference does
        # not use that state.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        table = pipeline.predict(np.stack(fluxes), names, progress=False, error_model=error_model)
    add_velocity_columns(table, records)
    shared = sorted({f"predict: {w.category.__name__}: {w.message}" for w in caught})
    table["sky"] = [r["sky"] for r in records]
    table["warnings"] = ["; ".join(r["warnings"] + shared) or "none" for r in records]
    for key in known[0]:
        if key not in ("ra", "dec"):
            table[key] = [k.get(key, float("nan")) for k in known]
    for label in COMPARED:
        reference = np.where(
            np.isfinite(table[f"{label}_carm"]), table[f"{label}_carm"], table[f"{label}_hpfsm"]
        )
        table[f"{label}_lit"] = reference
        table[f"d_{label}"] = np.asarray(table[label], float) - reference
    table.meta["pipeline"] = str(pipeline_source)
    return table


def _number(value: float, digits: int) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _estimate(row, label: str, digits: int) -> str:
    # The errors get one more digit: an ensemble of few regressors that agree gives < 1 K.
    return (
        f"{row[label]:.{digits}f} -{row[label + '_err_lower']:.{digits + 1}f} "
        f"+{row[label + '_err_upper']:.{digits + 1}f}"
    )


def teff_rank_correlation(table: Table) -> float:
    """Spearman's rank correlation between the pipeline's Teff and the literature's (stars
    with a literature Teff): is the order of the stars right, whatever the scale?"""
    reference = np.asarray(table["teff_lit"], float)
    known = np.isfinite(reference)
    return float(spearmanr(np.asarray(table["teff"], float)[known], reference[known])[0])


def markdown(table: Table) -> str:
    """The table as markdown: measurements, literature, differences with their mean and rms."""
    lines = [
        "| star (Karmn) | RV, barycentric (km/s), flag | sky | pipeline Teff (K) | log g | "
        "[M/H] | v sin i (km/s) | Carmencita Teff / log g / [Fe/H] (refs) | HPF-SpecMatch "
        "Teff / log g / [Fe/H] | d Teff | d log g | d [M/H] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        carm = (
            (
                f"{_number(row['teff_carm'], 0)} ({row['teff_carm_ref'] or '–'}) / "
                f"{_number(row['logg_carm'], 2)} / {_number(row['mh_carm'], 2)} "
                f"({row['mh_carm_ref'] or '–'})"
            )
            if row["karmn"]
            else (f"not in Carmencita ({row['carmencita_match']})")
        )
        hpfsm = (
            " / ".join(
                [
                    _number(row["teff_hpfsm"], 0),
                    _number(row["logg_hpfsm"], 2),
                    _number(row["mh_hpfsm"], 2),
                ]
            )
            if np.isfinite(row["teff_hpfsm"])
            else "not in HPF-SpecMatch"
        )
        lines.append(
            f"| {row['id']} ({row['karmn'] or '–'}) | {row['rv']:+.2f} ± {row['rv_error']:.2f}, "
            f"{row['barycentric_rv']:+.2f}, {row['rv_flag']} | {row['sky']} | "
            f"{_estimate(row, 'teff', 0)} | {_estimate(row, 'logg', 2)} | "
            f"{_estimate(row, 'mh', 2)} | {_estimate(row, 'vsini', 1)} | {carm} | {hpfsm} | "
            f"{_number(row['d_teff'], 0)} | {_number(row['d_logg'], 2)} | "
            f"{_number(row['d_mh'], 2)} |"
        )
    lines.append("")
    lines.append("| pipeline - literature | n | mean | rms |")
    lines.append("|---|---|---|---|")
    for label, unit, digits in (("teff", "K", 0), ("logg", "dex", 2), ("mh", "dex", 2)):
        for source, column in (
            ("Carmencita, else HPF-SpecMatch", f"{label}_lit"),
            ("Carmencita", f"{label}_carm"),
            ("HPF-SpecMatch", f"{label}_hpfsm"),
        ):
            d = np.asarray(table[label], float) - np.asarray(table[column], float)
            d = d[np.isfinite(d)]
            mean = _number(float(np.mean(d)), digits) if d.size else "–"
            rms = _number(float(np.sqrt(np.mean(d**2))), digits) if d.size else "–"
            lines.append(f"| {label} ({unit}) vs {source} | {d.size} | {mean} | {rms} |")
    lines += [
        "",
        f"Teff order: Spearman rank correlation with the literature "
        f"{teff_rank_correlation(table):.2f}",
    ]
    warned = [f"- {row['id']}: {row['warnings']}" for row in table if row["warnings"] != "none"]
    lines += ["", "Warnings raised:", *(warned or ["- none"])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline",
        default=DEFAULT_PIPELINE,
        metavar="NAME_OR_DIR",
        help=f"weights entry name or pipeline folder (default {DEFAULT_PIPELINE})",
    )
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument(
        "--error-model",
        default="default",
        choices=("default", "spread", "spread+validation"),
        help="errors of PretrainedPipeline.predict (default: the pipeline's)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table (ECSV)")
    args = parser.parse_args()
    if args.out is not None and args.out.exists():
        raise FileExistsError(f"--out {args.out} exists; it is never overwritten")
    start = time.perf_counter()
    table = first_contact(args.pipeline, args.data, args.error_model)
    print(
        f"pipeline {args.pipeline}, error model {table.meta['error_model']}, regressors per "
        f"parameter {table.meta['n_regressors']}; HPF files in "
        f"{args.data / 'observed' / 'hpf'}\n"
    )
    print(markdown(table))
    if args.out is not None:
        table.write(args.out, format="ascii.ecsv")
        print(f"\nwrote {args.out}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
