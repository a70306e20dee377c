"""PretrainedPipeline.predict: optional latent scaling in the manifest and the error models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdwarf_zoo.hub import from_pretrained
from mdwarf_zoo.pipeline.pretrained import PIPELINE_FILE, load_pipeline
from mdwarf_zoo.pipeline.gap import scale_factors
from mdwarf_zoo.spectra.preprocess import scale
from mdwarf_zoo.spectra.simulate import synthetic_spectra

DEMO = "mb24_quickstart_demo"
LABELS = np.array([[3000.0, 5.0, 0.0, 3.0], [3500.0, 4.9, -0.2, 5.0], [3800.0, 4.8, 0.3, 2.0]])


@pytest.fixture(scope="module")
def flux() -> np.ndarray:
    return scale(synthetic_spectra(LABELS)).astype("float32")


def with_latent_scaling(tmp_path: Path, mean: list[float], std: list[float]):
    """A copy of the demo pipeline whose member carries ``latent_scaling``."""
    folder = tmp_path / "pipeline"
    shutil.copytree(load_pipeline(DEMO).folder, folder)
    manifest = json.loads((folder / PIPELINE_FILE).read_text())
    manifest["members"][0]["latent_scaling"] = {"kind": "standard", "mean": mean, "std": std}
    (folder / PIPELINE_FILE).write_text(json.dumps(manifest))
    return load_pipeline(folder)


def test_latent_scaling_in_the_manifest_is_applied_before_the_regressors(tmp_path, flux):
    demo = load_pipeline(DEMO)
    assert all("latent_scaling" not in m for m in demo.members)  # the bundled demo: raw latents
    plain = demo.predict(flux, progress=False)
    latent_dim = from_pretrained(DEMO).encoder.output_shape[-1]
    identity = with_latent_scaling(tmp_path / "a", [0.0] * latent_dim, [1.0] * latent_dim)
    assert np.allclose(identity.predict(flux, progress=False)["teff"], plain["teff"], atol=1e-3)
    stretched = with_latent_scaling(tmp_path / "b", [0.5] * latent_dim, [3.0] * latent_dim)
    assert not np.allclose(stretched.predict(flux, progress=False)["teff"], plain["teff"], atol=1.0)
    wrong = with_latent_scaling(tmp_path / "c", [0.0] * (latent_dim + 1), [1.0] * (latent_dim + 1))
    with pytest.raises(ValueError, match="member 'member_000': latent_scaling does not fit"):
        wrong.predict(flux, progress=False)


def test_spread_plus_validation_errors_from_the_manifest(flux):
    demo = load_pipeline(DEMO)
    spread = demo.predict(flux, progress=False, error_model="spread")
    loaded = dict(demo._models)
    both = demo.predict(flux, progress=False, error_model="spread+validation")
    # A loaded pipeline keeps its models: the second call loads nothing again.
    regressors = demo.members[0]["regressors"].values()
    assert len(loaded) == 1 + sum(r.get("selected", True) for rs in regressors for r in rs)
    assert demo._models.keys() == loaded.keys()
    assert all(demo._models[key] is model for key, model in loaded.items())
    teff = demo.members[0]["regressors"]["teff"]
    std = demo.manifest["label_scaling"]["teff"]["std"]
    scatter = np.sqrt(np.mean([r["validation_mse"] * std**2 for r in teff]))
    assert both.meta["validation_scatter"]["teff"] == pytest.approx(scatter)
    assert np.allclose(both["teff_err_upper"], np.hypot(spread["teff_err_upper"], scatter))


def test_old_format_pipeline_predicts_exactly_as_the_first_format_did(flux, tmp_path):
    """No ``alignment``, ``latent_scaling`` or ``ensemble.error_model`` in the manifest (the
    demo written in the first format): with ``error_model="spread"`` the prediction is the
    first format's arithmetic, written out here, bit for bit (its default is now the gap model,
    tested in ``test_default_error_model_resolution``)."""
    from mdwarf_zoo.models.inference import encode
    from mdwarf_zoo.pipeline.ensemble import ensemble_table

    old = tmp_path / "first_format"
    shutil.copytree(load_pipeline(DEMO).folder, old)
    manifest = json.loads((old / "pipeline.json").read_text())
    manifest["ensemble"].pop("error_model", None)
    manifest.pop("alignment", None)
    (old / "pipeline.json").write_text(json.dumps(manifest))
    demo = load_pipeline(old)
    assert "alignment" not in demo.manifest and "error_model" not in demo.manifest["ensemble"]
    assert demo.latent_alignment is None
    table = demo.predict(flux, progress=False, error_model="spread")
    scaling = demo.manifest["label_scaling"]
    expected = {name: [] for name in demo.parameters}
    for member in demo.members:
        key = "transferred" if member.get("transferred") else "autoencoder"
        latents = encode(from_pretrained(demo._path(member[key])), flux)
        for name in demo.parameters:
            for regressor in member["regressors"][name]:
                if regressor.get("selected", True):
                    model = from_pretrained(demo._path(regressor["path"]))
                    value = model.predict(latents, verbose=0)[:, 0]
                    # Back to physical units in float64 (LabelScaler.inverse_transform).
                    value = value.astype(np.float64)
                    expected[name].append(value * scaling[name]["std"] + scaling[name]["mean"])
    expected = ensemble_table({n: np.stack(v) for n, v in expected.items()}, keep=None)
    assert table.colnames == expected.colnames
    for column in expected.colnames:
        assert np.array_equal(table[column], expected[column]), column
    assert table.meta["latent_alignment"] == "none" and table.meta["error_model"] == "spread"
    with pytest.raises(
        ValueError,
        match=r"member 'member_000': no alignment_reference .*"
        r"latent_alignment='none'",
    ):
        demo.predict(flux, progress=False, latent_alignment="coral")


def with_ensemble(tmp_path: Path, ensemble: dict, regressor_mse: float | None = -1.0):
    """A copy of the demo pipeline with its manifest's ``ensemble`` replaced; a
    ``regressor_mse`` of ``None`` drops the first teff regressor's ``validation_mse``."""
    folder = tmp_path / "pipeline"
    shutil.copytree(load_pipeline(DEMO).folder, folder)
    manifest = json.loads((folder / PIPELINE_FILE).read_text())
    manifest["ensemble"] = ensemble
    if regressor_mse is None:
        manifest["members"][0]["regressors"]["teff"][0].pop("validation_mse")
    (folder / PIPELINE_FILE).write_text(json.dumps(manifest))
    return load_pipeline(folder)


def test_default_error_model_resolution(tmp_path, flux, caplog):
    from mdwarf_zoo.pipeline.gap import GAP_PRIOR, GAP_PRIOR_SOURCE

    demo = load_pipeline(DEMO)
    # The bundled demo names the gap model, with the gap its ensemble stage measured.
    ensemble = demo.manifest["ensemble"]
    assert ensemble["error_model"] == demo.error_model == "spread+validation+gap"
    assert ensemble["gap_source"].startswith("measured on the simulator")
    measured = demo.predict(flux, progress=False)
    assert measured.meta["gap"] == pytest.approx(ensemble["gap"])
    spread = demo.predict(flux, progress=False, error_model="spread")
    assert spread.meta["error_model"] == "spread" and "gap" not in spread.meta
    both = demo.predict(flux, progress=False, error_model="spread+validation")
    # The bundle's own coverage factor, measured with that gap on the bundle's ensemble.
    factors = ensemble["error_scale"]
    assert ensemble["error_scale_source"].endswith(
        "(spread+validation+gap with that gap) in 5 bins of the estimate at most "
        "(coverage_profile)")
    assert measured.meta["error_scale"] == factors
    for name in demo.parameters:  # a profile: each star takes the factor of its estimate
        assert len(factors[name]["factors"]) == 5
        np.testing.assert_allclose(
            measured[f"{name}_err_upper"],
            scale_factors(factors[name], np.asarray(measured[name]))
            * np.hypot(both[f"{name}_err_upper"], ensemble["gap"][name]),
        )
    # An old manifest that names no error model: the gap model, with the prior.
    old = with_ensemble(tmp_path / "old", {"best": 3})
    assert old.error_model == "spread+validation+gap"
    table = old.predict(flux, progress=False)
    assert table.meta["error_model"] == "spread+validation+gap"
    assert table.meta["gap"] == GAP_PRIOR and set(table.meta["gap_source"].values()) == {
        GAP_PRIOR_SOURCE
    }
    assert np.array_equal(table["teff"], spread["teff"])
    for name in demo.parameters:
        np.testing.assert_allclose(
            table[f"{name}_err_upper"], np.hypot(both[f"{name}_err_upper"], GAP_PRIOR[name])
        )
    # A new manifest with its own gap scales: they replace the prior where given.
    new = with_ensemble(
        tmp_path / "new",
        {"best": 3, "error_model": "spread+validation+gap", "gap": {"teff": 200.0},
         "gap_source": "recipe r: [ensemble] gap"},
    )
    table = new.predict(flux, progress=False)
    assert table.meta["gap"]["teff"] == 200.0 and table.meta["gap"]["mh"] == GAP_PRIOR["mh"]
    assert table.meta["gap_source"]["teff"] == "recipe r: [ensemble] gap"
    np.testing.assert_allclose(table["teff_err_lower"], np.hypot(both["teff_err_lower"], 200.0))
    # gap= given to predict beats the manifest's.
    given = new.predict(flux, progress=False, gap={"teff": 10.0})
    assert given.meta["gap"]["teff"] == 10.0
    assert given.meta["gap_source"]["teff"] == "given to predict"
    with pytest.raises(ValueError, match=r"is only used by error_model='spread\+validation\+gap'"):
        demo.predict(flux, progress=False, gap={"teff": 10.0}, error_model="spread")
    bad = with_ensemble(tmp_path / "bad", {"error_model": "spread+validation+gap",
                                           "gap": {"teff": -5}})
    with pytest.raises(ValueError, match=r"pipeline.json ensemble.gap: gap\['teff'\] = -5"):
        bad.predict(flux, progress=False)
    # Without a validation_mse the validation rms (and so the gap model) is out of reach.
    blind = with_ensemble(tmp_path / "blind", {"best": 3}, regressor_mse=None)
    with caplog.at_level("WARNING", logger="mdwarf_zoo.pipeline.pretrained"):
        assert blind.error_model == "spread"
    assert "no finite validation_mse" in caplog.text and "member_000/teff" in caplog.text


def test_the_manifests_error_scale_multiplies_the_errors_with_its_gap(tmp_path, flux):
    """``ensemble.error_scale`` is applied under the gap model with the manifest's gap and
    recorded in the table; a gap given to predict leaves it out (it was calibrated with the
    stored gap) unless error_scale is given too; a bad one is refused naming the file."""
    gap = {"teff": 120.0, "logg": 0.05, "mh": 0.2, "vsini": 1.0}
    stored = {"best": 3, "error_model": "spread+validation+gap", "gap": gap,
              "gap_source": "measured", "error_scale": {"teff": 0.7, "mh": 1.3},
              "error_scale_source": "300 simulated twins"}
    pipeline = with_ensemble(tmp_path / "scaled", stored)
    assert pipeline.error_scale() == ({"teff": 0.7, "mh": 1.3}, "300 simulated twins")
    plain = with_ensemble(tmp_path / "plain", {k: v for k, v in stored.items()
                                               if not k.startswith("error_scale")})
    assert plain.error_scale() == (None, "")
    scaled, unscaled = pipeline.predict(flux, progress=False), plain.predict(flux, progress=False)
    assert unscaled.meta["error_scale"] == dict.fromkeys(pipeline.parameters, 1.0)
    assert unscaled.meta["error_scale_source"].startswith("none: the errors are not rescaled")
    assert scaled.meta["error_scale"] == {"teff": 0.7, "logg": 1.0, "mh": 1.3, "vsini": 1.0}
    assert scaled.meta["error_scale_source"].startswith("300 simulated twins (c = 1 for logg")
    for name in pipeline.parameters:
        factor = scaled.meta["error_scale"][name]
        np.testing.assert_allclose(scaled[name], unscaled[name])
        for side in ("lower", "upper"):
            np.testing.assert_allclose(scaled[f"{name}_err_{side}"],
                                       factor * unscaled[f"{name}_err_{side}"], rtol=1e-6)
    own_gap = pipeline.predict(flux, progress=False, gap={"teff": 120.0})
    assert own_gap.meta["error_scale"]["teff"] == 1.0
    given = pipeline.predict(flux, progress=False, gap={"teff": 120.0}, error_scale={"teff": 2.0})
    assert given.meta["error_scale"]["teff"] == 2.0
    assert given.meta["error_scale_source"].startswith("given to predict")
    assert "error_scale" not in pipeline.predict(flux, progress=False, error_model="spread").meta
    bad = with_ensemble(tmp_path / "bad", {**stored, "error_scale": {"teff": -1}})
    with pytest.raises(ValueError, match=r"pipeline.json ensemble.error_scale: error_scale"
                                         r"\['teff'\] = -1; expected a finite number > 0"):
        bad.predict(flux, progress=False)
    # A profile in bins of the estimate: each star takes the factor of its estimate's bin.
    split = float(np.median(unscaled["teff"]))
    profile = {"edges": [split], "factors": [0.5, 2.0]}
    binned = with_ensemble(tmp_path / "binned", {**stored, "error_scale": {"teff": profile}})
    table = binned.predict(flux, progress=False)
    factor = np.where(np.asarray(unscaled["teff"]) >= split, 2.0, 0.5)
    assert 0 < np.sum(factor == 2.0) < len(factor)
    np.testing.assert_allclose(table["teff_err_upper"], factor * unscaled["teff_err_upper"],
                               rtol=1e-6)
    assert table.meta["error_scale"]["teff"] == profile
    broken = with_ensemble(tmp_path / "broken", {**stored, "error_scale": {
        "teff": {"edges": [1.0], "factors": [1.0]}}})
    with pytest.raises(ValueError, match=r"pipeline.json ensemble.error_scale: error_scale"
                                         r"\['teff'\]: 1 edges and 1 factors"):
        broken.predict(flux, progress=False)
