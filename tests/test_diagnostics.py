"""Domain-gap diagnostics on constructed data with known answers; literature comparison."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from conftest import shared_file

import mdwarf_zoo
from mdwarf_zoo.diagnostics import (
    MB24_LITERATURE,
    compare_with_literature,
    domain_gap_report,
    ks_statistics,
    match_literature,
    median_heuristic,
    mmd,
    nearest_neighbour_distances,
    read_table,
    reconstruction_mse,
)
from mdwarf_zoo.training.transfer import clone_model


def test_nearest_neighbour_distances_known_offsets():
    rng = np.random.default_rng(0)
    synthetic = np.array([[i, j, 0.0] for i in range(0, 50, 10) for j in range(0, 50, 10)])
    offsets = rng.uniform(-1, 1, (40, 3))
    observed = synthetic[rng.choice(len(synthetic), 40)] + offsets
    distances = nearest_neighbour_distances(observed, synthetic)
    assert np.allclose(distances, np.linalg.norm(offsets, axis=1))
    assert nearest_neighbour_distances(synthetic, synthetic).max() == 0.0
    with pytest.raises(ValueError, match="3 and 2 dimensions"):
        nearest_neighbour_distances(observed, synthetic[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        nearest_neighbour_distances([[np.nan, 0, 0]], synthetic)


def test_ks_statistics_known_values():
    x = np.column_stack([np.arange(10.0), np.arange(10.0), np.arange(10.0)])
    y = np.column_stack([np.arange(10.0), np.arange(10.0) + 5, np.arange(10.0) + 100])
    assert ks_statistics(x, y).tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_mmd_known_values():
    # Two single points at distance d: MMD^2 = 2 - 2 exp(-d^2 / (2 s^2)).
    assert mmd([[0.0, 0.0]], [[3.0, 4.0]], bandwidth=5.0) == pytest.approx(
        2 - 2 * np.exp(-0.5)
    )
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, 4))
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-12)
    # 1-D points 0, 1, 3: pairwise distances 1, 3, 2; median 2.
    assert median_heuristic([[0.0], [1.0]], [[3.0]]) == pytest.approx(2.0)
    near = mmd(x, rng.normal(0, 1, (300, 4)))
    far = mmd(x, rng.normal(2, 1, (300, 4)))
    assert near < 0.02 < 0.2 < far
    # Large samples are subsampled reproducibly.
    big = rng.normal(0, 1, (3000, 2))
    assert mmd(big, big + 0.5, max_points=500) == mmd(big, big + 0.5, max_points=500)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        mmd(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="all points are identical"):
        median_heuristic([[1.0]], [[1.0]])


def test_reconstruction_mse_of_a_constant_decoder():
    spectrum = keras.Input((20,))
    constant = keras.layers.Dense(20, kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(0.5))(spectrum)
    model = keras.Model(spectrum, constant)
    flux = np.random.default_rng(2).uniform(0, 1, (7, 20)).astype("float32")
    assert reconstruction_mse(model, flux) == pytest.approx(np.mean((flux - 0.5) ** 2), rel=1e-6)


def test_domain_gap_report_before_equals_after_for_an_unchanged_copy():
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=0)
    rng = np.random.default_rng(3)
    synthetic = rng.uniform(0.2, 1, (40, 3501)).astype("float32")
    observed = rng.uniform(0.2, 1, (10, 3501)).astype("float32")
    report = domain_gap_report(model, clone_model(model), synthetic, observed)
    for name in ("latent_nn_distance", "ks_mean", "mmd", "reconstruction_mse"):
        assert report[f"{name}_before"] == pytest.approx(report[f"{name}_after"])
    assert report["ks_before"].shape == (8,)
    expected = nearest_neighbour_distances(observed, synthetic).mean()
    assert report["flux_nn_distance"] == pytest.approx(expected)


def test_literature_join_on_stripped_identifiers_with_known_statistics():
    ours = Table({"id": ["J1", "J2", "J3", "J4"], "teff": [3000.0, 3200.0, 3400.0, 3600.0]})
    literature = Table({
        "Karmn": ["J4  ", "J2 ", "J1", "J9"],
        "T": MaskedColumn([3610.0, 3190.0, 3020.0, 1.0], mask=[False, False, False, False]),
        "G": MaskedColumn([5.0, 4.9, 4.8, 5.1], mask=[False, True, False, False]),
    })
    pairs = match_literature(ours, literature, {"teff": "T"})
    theirs_minus_ours = pairs["teff"][1] - pairs["teff"][0]
    assert pairs["teff"][2] == ["J1", "J2", "J4"]
    assert theirs_minus_ours.tolist() == [20.0, -10.0, 10.0]
    table = compare_with_literature(ours, {"lit": (literature, {"teff": "T"})})
    row = table[0]
    assert (row["literature"], row["parameter"], row["n"]) == ("lit", "teff", 3)
    assert row["mean_difference"] == pytest.approx(20.0 / 3)
    assert row["rms"] == pytest.approx(np.sqrt((400 + 100 + 100) / 3))
    assert row["pearson_r"] == pytest.approx(
        np.corrcoef([3000, 3200, 3600], [3020, 3190, 3610])[0, 1]
    )
    ours["logg"] = [4.8, 5.0, 5.0, 5.0]
    # A masked literature value drops that star for that parameter only.
    assert compare_with_literature(ours, {"lit": (literature, {"logg": "G"})})["n"][0] == 2
    with pytest.raises(ValueError, match="no teff column"):
        match_literature(ours, literature, {"teff": "Teff1"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_table("/nonexistent/table.csv")


def test_mb24_published_mean_differences_are_reproduced():
    results = read_table(
        shared_file("tables/carmenes_params/masbuitrago2024_final_estimations.csv")
    )
    for source in MB24_LITERATURE:
        shared_file(f"tables/carmenes_params/{source.filename}")
    folder = shared_file("tables/carmenes_params/lit_mar21.csv").parent
    table = compare_with_literature(results, folder=folder)
    found = {(row["literature"], row["parameter"]): row for row in table}
    # MB24 Table 3 (literature minus MB24): Teff -19, -80, -40 K.
    for name, teff, logg, mh, n in (
        ("Marfil+21", -19, 0.12, -0.11, 285),
        ("Passegger+19", -80, 0.00, 0.06, 275),
        ("Schweitzer+19", -40, 0.13, 0.00, 278),
    ):
        assert round(found[(name, "teff")]["mean_difference"]) == teff
        assert round(found[(name, "logg")]["mean_difference"], 2) == pytest.approx(logg)
        assert round(found[(name, "mh")]["mean_difference"], 2) == pytest.approx(mh)
        assert found[(name, "teff")]["n"] == n
        assert 0.9 < found[(name, "teff")]["pearson_r"] < 1.0
        assert 50 < found[(name, "teff")]["rms"] < 150
