"""PretrainedPipeline.predict: optional latent scaling in the manifest and the error models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdwarf_zoo.hub import from_pretrained
from mdwarf_zoo.pipeline.pretrained import PIPELINE_FILE, load_pipeline
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
    spread = demo.predict(flux, progress=False)
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
    demo written in the first format): the prediction is the first format's arithmetic,
    written out here, bit for bit."""
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
    assert demo.latent_alignment is None and demo.error_model == "spread"
    table = demo.predict(flux, progress=False)
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
