"""``benchmarks/hpf_first_contact.py`` on the real HPF files: the literature rows it matches,
the chain (sky fibre, radial velocity, preprocessing, the bundled pipeline) on two stars, and
the HPF sky subtraction it uses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import shared_file

from mdwarf_zoo.spectra import read_spectrum, subtract_hpf_sky

HPF = "observed/hpf/"
FILES = {
    "GJ_699": "GJ_699_Slope-20190319T114849_R01.optimal.fits",
    "GJ_273": "GJ_273_Slope-20180302T021512_R01.optimal.fits",
    "G_9-40": "G_9-40_Slope-20190301T024821_R01.optimal.fits",
    "TOI-1468": "TOI-1468_Slope-20200129T015117_R01.optimal.fits",
    "VB_10": "VB_10_Slope-20190612T065809_R01.optimal.fits",
}


@pytest.fixture(scope="module")
def benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hpf_first_contact.py"
    spec = importlib.util.spec_from_file_location("hpf_first_contact", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    carmencita = Table.read(
        shared_file("tables/carmencita/cif03_full_table.csv"), format="ascii.csv"
    )
    specmatch = Table.read(shared_file("tables/HPF_SpecMatch_Emp_Stars.csv"), format="ascii.csv")
    return carmencita, specmatch


def _header(star: str) -> fits.Header:
    return fits.getheader(shared_file(HPF + FILES[star]))


def test_literature_rows_by_gj_number_and_by_coordinates(benchmark, tables):
    facts = benchmark.literature(*tables, "GJ_699", _header("GJ_699"))
    assert facts["karmn"] == "J17578+046" and facts["carmencita_match"] == "GJ 699"
    assert (facts["teff_carm"], facts["logg_carm"], facts["mh_carm"]) == (3254.0, 5.0, -0.57)
    assert facts["teff_carm_ref"] == facts["mh_carm_ref"] == "Marf21"
    assert (facts["teff_hpfsm"], facts["logg_hpfsm"], facts["mh_hpfsm"]) == (3222.0, 5.11, -0.39)
    # G 9-40 is Carmencita's G 41-13 (same proper motion); TOI-1468's header position is 3.6"
    # off Gaia's. Neither is in HPF-SpecMatch.
    for star, karmn in (("G_9-40", "J08588+210"), ("TOI-1468", "J01066+192")):
        facts = benchmark.literature(*tables, star, _header(star))
        assert facts["karmn"] == karmn and "coordinates" in facts["carmencita_match"], facts
        assert np.isnan(facts["teff_hpfsm"])
    wrong = _header("G_9-40").copy()
    wrong["QPMDEC"] = 0.0
    index, why = benchmark.carmencita_match(tables[0], "G_9-40", wrong)
    assert index is None and "proper motion" in why


def test_sky_subtraction_removes_the_oh_line_and_refuses_gj273():
    path = shared_file(HPF + FILES["VB_10"])
    star = read_spectrum(path, window=(8795.0, 8840.0))
    clean = subtract_hpf_sky(path, star)
    removed = star.flux - clean.flux
    # The OH line at 8829.5 A (observed frame) is the largest thing the sky fibre takes away.
    assert abs(star.wavelength[np.argmax(removed)] - 8829.5) < 0.2
    assert removed.max() > 20 * np.median(np.abs(removed))
    assert np.all(clean.sigma >= star.sigma) and clean.metadata["sky_subtracted"]
    gj273 = shared_file(HPF + FILES["GJ_273"])
    with pytest.raises(ValueError, match=r"GJ_273.*no 'Sky Wavl' extension"):
        subtract_hpf_sky(gj273, star)


def test_two_stars_through_the_bundled_pipeline(benchmark, tables):
    from mdwarf_zoo.pipeline.pretrained import load_pipeline

    pipeline = load_pipeline(benchmark.DEFAULT_PIPELINE)
    template = pipeline.rv_template()
    records, fluxes = {}, []
    for star in ("GJ_699", "GJ_273"):
        facts = benchmark.literature(*tables, star, _header(star))
        flux, records[star] = benchmark.measure(
            shared_file(HPF + FILES[star]), pipeline, template, facts
        )
        fluxes.append(flux)
    assert records["GJ_699"]["sky"] == "subtracted"
    assert records["GJ_273"]["sky"] == "kept (no Sky Wavl)"
    # Carmencita rv: -110.5 (GJ 699) and +17.4 km/s (GJ 273); GJ 273's BERV comes from the
    # matched Carmencita position, its header having none.
    assert records["GJ_699"]["barycentric_rv"] == pytest.approx(-110.5, abs=1.5)
    assert records["GJ_273"]["barycentric_rv"] == pytest.approx(17.4, abs=1.5)
    for record in records.values():
        assert record["rv_flag"] == "ok" and record["berv_source"] == "computed"
        assert any("R = 55000 is below" in w for w in record["warnings"]), record["warnings"]
    table = pipeline.predict(np.stack(fluxes), list(records), progress=False)
    for name in pipeline.parameters:
        assert np.all(np.isfinite(np.asarray(table[name], float))), name
    assert np.all((np.asarray(table["teff"]) > 2000) & (np.asarray(table["teff"]) < 5000))
