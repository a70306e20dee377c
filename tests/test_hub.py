"""Pretrained folders, the Hub client against an in-process hub, entries, offline use, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from hubserver import FakeHub
from huggingface_hub import ModelCard

import mdwarf_zoo
from mdwarf_zoo import cli, hub
from mdwarf_zoo.hub import (
    MANIFEST_NAME,
    ChecksumMismatchError,
    PretrainedError,
    PretrainedInfo,
    PretrainedNotFoundError,
    UnknownArchitectureError,
    sha256_file,
)
from mdwarf_zoo.hub import catalogue as hub_catalogue
from mdwarf_zoo.models import DenseAutoencoder
from mdwarf_zoo.spectra.grid import MB24_GRID, WavelengthGrid
from mdwarf_zoo.spectra.preprocess import Preprocessor

LABELS = ["teff", "logg", "mh", "vsini"]
UNITS = ["K", "dex", "dex", "km/s"]


def spectra(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 1.0, (n, MB24_GRID.size)).astype("float32")


def predictions(model: keras.Model) -> np.ndarray:
    return np.asarray(model(spectra(), training=False))


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "quick_test.toml"
    path.write_text('[model]\nname = "dense_ae_tiny"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, recipe_file) -> tuple[keras.Model, Path]:
    """A seeded ``dense_ae_tiny`` and its pretrained folder with full metadata."""
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=3)
    folder = tmp_path_factory.mktemp("pretrained") / "tiny"
    mdwarf_zoo.save_pretrained(
        model,
        folder,
        preprocessor=Preprocessor(MB24_GRID, resolving_power=94600),
        labels=LABELS,
        label_units=UNITS,
        label_scaling={"teff": {"method": "standard", "mean": 3300.0, "std": 400.0}},
        recipe=recipe_file,
        provenance={"dataset": "simulated MB24 window", "n_spectra": 64},
        metrics={"reconstruction_mse": 5.1e-5},
        license="cc-by-4.0",
        description="A tiny test autoencoder.",
    )
    return model, folder


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory) -> tuple[keras.Model, Path]:
    """Same architecture, other weights (a newer commit of the same repository)."""
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=11)
    folder = mdwarf_zoo.save_pretrained(
        model, tmp_path_factory.mktemp("pretrained") / "tiny2", grid=MB24_GRID
    )
    return model, folder


@pytest.fixture(scope="module")
def server():
    hub_server = FakeHub().start()
    yield hub_server
    hub_server.stop()


@pytest.fixture()
def hf(server, tmp_path):
    """Keyword arguments for the client: this test's own cache, the local server."""
    server.clear_log()
    return {"endpoint": server.endpoint, "cache_dir": tmp_path / "hf-cache"}


def copy_folder(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def rewrite_manifest(folder: Path, change) -> None:
    """Apply ``change(manifest)`` and re-hash every file, as a careful attacker would."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    change(manifest)
    manifest["files"] = {
        name: {"sha256": sha256_file(folder / name), "size": (folder / name).stat().st_size}
        for name in manifest["files"]
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------------
# save_pretrained


def test_folder_layout_manifest_and_card(tiny, recipe_file):
    model, folder = tiny
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert names == ["README.md", "config.json", MANIFEST_NAME, "metadata.json", "model.weights.h5"]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["zoo_version"] == mdwarf_zoo.__version__
    architecture = manifest["architecture"]
    assert architecture["class"] == "DenseAutoencoder"
    assert architecture["registry_name"] == "dense_ae_tiny"
    assert architecture["config"]["seed"] == 3
    assert architecture["parameters"] == model.count_params()
    assert manifest["wavelength_grid"] == MB24_GRID.to_dict()
    assert Preprocessor.from_dict(manifest["preprocessing"]).resolving_power == 94600
    assert [label["unit"] for label in manifest["labels"]] == UNITS
    assert manifest["recipe"] == {"name": "quick_test", "sha256": sha256_file(recipe_file)}
    assert manifest["provenance"]["n_spectra"] == 64
    assert set(manifest["files"]) == {"README.md", "config.json", "metadata.json",
                                      "model.weights.h5"}
    for name, record in manifest["files"].items():
        assert record["sha256"] == sha256_file(folder / name)
    # Plain Keras reads the folder too.
    np.testing.assert_array_equal(
        predictions(keras.saving.load_model(folder)), predictions(model)
    )
    card = ModelCard((folder / "README.md").read_text())
    assert card.data.library_name == "keras"
    assert card.data.license == "cc-by-4.0"
    assert "mdwarf_zoo" in card.data.tags
    result = card.data.eval_results[0]
    assert (result.metric_type, result.metric_value) == ("reconstruction_mse", 5.1e-5)
    for heading in ("## Intended use", "## Limitations", "## How it was trained"):
        assert heading in card.text
    assert "quick_test" in card.text


def test_save_refuses_to_overwrite_and_protects_user_files(tiny, other_tiny, tmp_path):
    model, folder = tiny
    target = copy_folder(folder, tmp_path / "existing")
    with pytest.raises(FileExistsError, match="not empty"):
        mdwarf_zoo.save_pretrained(other_tiny[0], target)
    mdwarf_zoo.save_pretrained(other_tiny[0], target, overwrite=True, grid=MB24_GRID)
    assert json.loads((target / MANIFEST_NAME).read_text())["architecture"]["config"]["seed"] == 11
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a pretrained folder"):
        mdwarf_zoo.save_pretrained(model, user, overwrite=True)
    assert (user / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "user"]


def test_save_leaves_nothing_behind_when_writing_fails(tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keras.saving, "save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        mdwarf_zoo.save_pretrained(tiny[0], tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_save_validates_metadata(tiny, tmp_path):
    model = tiny[0]
    with pytest.raises(ValueError, match="unknown metadata keyword.*'labelz'"):
        mdwarf_zoo.save_pretrained(model, tmp_path / "a", labelz=["teff"])
    with pytest.raises(ValueError, match="grid has 11 points but the model"):
        mdwarf_zoo.save_pretrained(model, tmp_path / "b", grid=WavelengthGrid(8800, 8801, 0.1))
    with pytest.raises(ValueError, match="label_units must be"):
        mdwarf_zoo.save_pretrained(model, tmp_path / "c", labels=LABELS, label_units=["K"])
    with pytest.raises(ValueError, match="recipe 'no_such_recipe'"):
        mdwarf_zoo.save_pretrained(model, tmp_path / "d", recipe="no_such_recipe")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="expected a mdwarf_zoo architecture"):
        mdwarf_zoo.save_pretrained(plain, tmp_path / "e")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# from_pretrained on local folders


def test_local_round_trip_metadata_travels(tiny, tmp_path):
    model, folder = tiny
    loaded = mdwarf_zoo.from_pretrained(folder)
    assert isinstance(loaded, DenseAutoencoder) and loaded.name == "dense_ae_tiny"
    np.testing.assert_array_equal(predictions(loaded), predictions(model))
    info = loaded.zoo_metadata
    assert isinstance(info, PretrainedInfo)
    assert info.grid == MB24_GRID
    assert info.preprocessor == Preprocessor(MB24_GRID, resolving_power=94600)
    assert info.label_names == LABELS
    assert info.label_units["vsini"] == "km/s"
    assert info.label_scaling["teff"]["std"] == 400.0
    assert info.recipe["name"] == "quick_test"
    assert (info.repo_id, info.revision) == (None, None)
    # The metadata is plain data: weights, config and Keras saving are untouched by it.
    assert len(loaded.weights) == len(model.weights)
    assert "zoo_metadata" not in json.dumps(loaded.get_config())
    loaded.save(tmp_path / "copy.keras")
    assert keras.saving.load_model(tmp_path / "copy.keras").count_params() == model.count_params()
    # Re-saving a loaded model keeps its metadata.
    again = mdwarf_zoo.save_pretrained(loaded, tmp_path / "again")
    reloaded = DenseAutoencoder.from_pretrained(again)
    assert reloaded.zoo_metadata.label_units == info.label_units
    assert reloaded.zoo_metadata.preprocessor == info.preprocessor


def test_class_method_checks_the_class(tiny):
    from mdwarf_zoo.models.latent import LatentMLP

    with pytest.raises(TypeError, match="holds a DenseAutoencoder, not a LatentMLP"):
        LatentMLP.from_pretrained(tiny[1])


def test_corrupted_and_truncated_weights_are_refused(tiny, tmp_path):
    folder = copy_folder(tiny[1], tmp_path / "corrupt")
    weights_file = folder / "model.weights.h5"
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"model\.weights\.h5 .* sha256"):
        mdwarf_zoo.from_pretrained(folder)
    weights_file.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ChecksumMismatchError, match=r"model\.weights\.h5 .*truncated"):
        mdwarf_zoo.from_pretrained(folder)


def test_hostile_and_unknown_configs_are_refused(tiny, tmp_path):
    evil = keras.Sequential([keras.Input((3501,)), keras.layers.Lambda(lambda x: x * 2.0)])
    keras.saving.save_model(evil, tmp_path / "evil_src", zipped=False)
    folder = copy_folder(tiny[1], tmp_path / "evil")
    (folder / "config.json").write_bytes((tmp_path / "evil_src" / "config.json").read_bytes())
    rewrite_manifest(folder, lambda manifest: None)
    with pytest.raises(PretrainedError, match="refusing to load arbitrary Keras objects"):
        mdwarf_zoo.from_pretrained(folder)

    folder = copy_folder(tiny[1], tmp_path / "unknown")
    config = json.loads((folder / "config.json").read_text())
    config.update(class_name="Payload", registered_name="evil>Payload", module="evil")
    (folder / "config.json").write_text(json.dumps(config))
    rewrite_manifest(folder, lambda manifest: None)
    with pytest.raises(PretrainedError, match="'evil>Payload'"):
        mdwarf_zoo.from_pretrained(folder)

    folder = copy_folder(tiny[1], tmp_path / "future")
    config = json.loads((folder / "config.json").read_text())
    config.update(class_name="FutureNet", registered_name="mdwarf_zoo>FutureNet")
    (folder / "config.json").write_text(json.dumps(config))

    def future(manifest):
        manifest["zoo_version"] = "9.1.0"
        manifest["architecture"].update(class_name="FutureNet",
                                        registered_name="mdwarf_zoo>FutureNet")
        manifest["architecture"]["class"] = "FutureNet"

    rewrite_manifest(folder, future)
    with pytest.raises(UnknownArchitectureError, match=r"FutureNet.*mdwarf-zoo>=9\.1\.0"):
        mdwarf_zoo.from_pretrained(folder)

    rewrite_manifest(folder, lambda manifest: manifest.update(format=99))
    with pytest.raises(PretrainedError, match="manifest format 99"):
        mdwarf_zoo.from_pretrained(folder)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="not an existing folder, a Hub repository"):
        mdwarf_zoo.from_pretrained("no such thing")
    with pytest.raises(ValueError, match="hf://owner/name"):
        mdwarf_zoo.from_pretrained("hf://just-a-name")
    with pytest.raises(ValueError, match="pins revision 'a' but revision='b'"):
        mdwarf_zoo.from_pretrained("hf://acme/demo@a", revision="b")
    with pytest.raises(PretrainedError, match="mdwarf_zoo.json is missing"):
        mdwarf_zoo.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------
# the Hub client against the in-process hub


def test_hub_round_trip_branch_and_pinned_revisions(server, hf, tiny, other_tiny):
    model, folder = tiny
    sha = server.commit_folder("acme/tiny", folder)

    loaded = mdwarf_zoo.from_pretrained("acme/tiny", **hf)
    np.testing.assert_array_equal(predictions(loaded), predictions(model))
    assert (loaded.zoo_metadata.repo_id, loaded.zoo_metadata.revision) == ("acme/tiny", sha)
    log = server.log()
    assert log[:2] == [
        ("GET", "/api/models/acme/tiny/revision/main"),
        ("GET", f"/api/models/acme/tiny/tree/{sha}"),
    ]
    files = {"README.md", "config.json", MANIFEST_NAME, "metadata.json", "model.weights.h5"}
    for method in ("HEAD", "GET"):
        assert {path.rsplit("/", 1)[1] for m, path in log[2:] if m == method} == files

    # A branch is resolved again (one request); the files come from the cache.
    server.clear_log()
    mdwarf_zoo.from_pretrained("acme/tiny", **hf)
    assert server.log() == [("GET", "/api/models/acme/tiny/revision/main")]

    # A pinned commit already in the cache needs no request at all, in every spelling.
    server.clear_log()
    mdwarf_zoo.from_pretrained("acme/tiny", revision=sha, **hf)
    mdwarf_zoo.from_pretrained(f"hf://acme/tiny@{sha}", **hf)
    DenseAutoencoder.from_pretrained(f"hf://acme/tiny@{sha}", **hf)
    assert server.log() == []

    # A new commit on main: the branch follows it, the pinned sha does not move.
    newer = server.commit_folder("acme/tiny", other_tiny[1])
    on_main = mdwarf_zoo.from_pretrained("hf://acme/tiny", **hf)
    assert on_main.zoo_metadata.revision == newer
    np.testing.assert_array_equal(predictions(on_main), predictions(other_tiny[0]))
    pinned = mdwarf_zoo.from_pretrained("acme/tiny", revision=sha, **hf)
    np.testing.assert_array_equal(predictions(pinned), predictions(model))


def test_corrupted_and_truncated_downloads_are_refused(server, hf, tiny):
    files = {p.name: p.read_bytes() for p in tiny[1].iterdir() if p.is_file()}
    weights_bytes = files["model.weights.h5"]
    flipped = bytearray(weights_bytes)
    flipped[100] ^= 0x01
    server.commit("acme/flipped", {**files, "model.weights.h5": bytes(flipped)})
    with pytest.raises(ChecksumMismatchError, match=r"model\.weights\.h5 from acme/flipped@"):
        mdwarf_zoo.from_pretrained("acme/flipped", **hf)
    server.commit("acme/truncated", {**files, "model.weights.h5": weights_bytes[:4096]})
    with pytest.raises(ChecksumMismatchError, match=r"4,096 bytes .*truncated"):
        mdwarf_zoo.from_pretrained("acme/truncated", **hf)

    # Damage inside the cache after a good download is caught on the next load too.
    sha = server.commit("acme/good", files)
    info = hub.download("acme/good", revision=sha, **hf)
    blob = (info.folder / "model.weights.h5").resolve()
    blob.write_bytes(weights_bytes[:-10])
    with pytest.raises(ChecksumMismatchError, match="delete the cached copy"):
        mdwarf_zoo.from_pretrained("acme/good", revision=sha, **hf)


def test_missing_repository_revision_and_files(server, hf, tiny):
    files = {p.name: p.read_bytes() for p in tiny[1].iterdir() if p.is_file()}
    server.commit("acme/present", files)
    with pytest.raises(PretrainedNotFoundError, match="repository 'acme/absent'"):
        mdwarf_zoo.from_pretrained("acme/absent", **hf)
    with pytest.raises(PretrainedNotFoundError, match="revision 'v9' of 'acme/present'"):
        mdwarf_zoo.from_pretrained("acme/present", revision="v9", **hf)

    no_weights = {k: v for k, v in files.items() if k != "model.weights.h5"}
    server.commit("acme/noweights", no_weights)
    with pytest.raises(PretrainedNotFoundError, match=r"model\.weights\.h5 is listed .* missing"):
        mdwarf_zoo.from_pretrained("acme/noweights", **hf)

    server.commit("acme/brokenstore", files)
    server.missing_blobs.add(("acme/brokenstore", "model.weights.h5"))
    with pytest.raises(PretrainedNotFoundError, match="could not be downloaded"):
        mdwarf_zoo.from_pretrained("acme/brokenstore", **hf)

    server.commit("acme/notzoo", {"model.safetensors": b"\0" * 16})
    with pytest.raises(PretrainedError, match="not a mdwarf_zoo pretrained folder"):
        mdwarf_zoo.from_pretrained("acme/notzoo", **hf)


def test_offline_cache_and_server_down(tiny, tmp_path):
    own = FakeHub().start()
    hf = {"endpoint": own.endpoint, "cache_dir": tmp_path / "cache"}
    sha = own.commit_folder("acme/offline", tiny[1])
    own.commit_folder("acme/uncached", tiny[1])
    mdwarf_zoo.from_pretrained("acme/offline", **hf)

    own.clear_log()
    assert mdwarf_zoo.from_pretrained("acme/offline", local_files_only=True, **hf)
    assert mdwarf_zoo.from_pretrained("acme/offline", revision=sha, local_files_only=True, **hf)
    assert own.log() == []
    with pytest.raises(PretrainedNotFoundError, match="mdwarf-zoo download acme/uncached"):
        mdwarf_zoo.from_pretrained("acme/uncached", local_files_only=True, **hf)

    own.stop()
    by_branch = mdwarf_zoo.from_pretrained("acme/offline", **hf)
    assert by_branch.zoo_metadata.revision == sha
    np.testing.assert_array_equal(predictions(by_branch), predictions(tiny[0]))
    with pytest.raises(PretrainedNotFoundError, match="could not be reached.*mdwarf-zoo download"):
        mdwarf_zoo.from_pretrained("acme/uncached", **hf)


def test_hf_hub_offline_environment(server, hf, tiny):
    """``HF_HUB_OFFLINE=1`` is read when huggingface_hub is imported: use a fresh interpreter."""
    sha = server.commit_folder("acme/envoffline", tiny[1])
    server.commit_folder("acme/envuncached", tiny[1])
    mdwarf_zoo.from_pretrained("acme/envoffline", revision=sha, **hf)
    server.clear_log()
    script = textwrap.dedent(
        f"""
        import mdwarf_zoo
        from mdwarf_zoo.hub import PretrainedNotFoundError
        kw = dict(endpoint={server.endpoint!r}, cache_dir={str(hf["cache_dir"])!r})
        print(mdwarf_zoo.from_pretrained("acme/envoffline", revision={sha!r}, **kw).name)
        try:
            mdwarf_zoo.from_pretrained("acme/envuncached", **kw)
        except PretrainedNotFoundError as error:
            print("REFUSED", error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dense_ae_tiny"
    assert lines[1].startswith("REFUSED") and "HF_HUB_OFFLINE=1" in lines[1]
    assert "mdwarf-zoo download acme/envuncached" in lines[1]
    assert server.log() == []


# ------------------------------------------------------------------------------------------
# push_to_hub


def test_push_model_then_download_gives_the_same_model(server, hf, tiny):
    model = tiny[0]
    loaded = mdwarf_zoo.from_pretrained(tiny[1])
    sha = mdwarf_zoo.push_to_hub(
        loaded,
        "acme/pushed",
        token="hf_test_token",
        commit_message="first weights",
        endpoint=hf["endpoint"],
    )
    assert sha == server.repos["acme/pushed"].branches["main"]
    log = server.log()
    assert log[0] == ("POST", "/api/repos/create")
    assert ("POST", "/api/validate-yaml") in log
    assert ("POST", "/api/models/acme/pushed/preupload/main") in log
    assert ("POST", "/api/models/acme/pushed/commit/main") in log
    assert all(
        r.headers.get("authorization") == "Bearer hf_test_token"
        for r in server.requests
        if r.method == "POST"
    )
    assert sorted(server.files("acme/pushed")) == sorted(
        ["README.md", "config.json", MANIFEST_NAME, "metadata.json", "model.weights.h5"]
    )
    again = mdwarf_zoo.from_pretrained("acme/pushed", revision=sha, **hf)
    np.testing.assert_array_equal(predictions(again), predictions(model))
    assert again.zoo_metadata.label_names == LABELS
    assert "hf://acme/pushed" in (server.files("acme/pushed")["README.md"]).decode()


def test_push_folder_to_a_branch_and_refuse_a_damaged_folder(server, hf, tiny, tmp_path):
    main_sha = mdwarf_zoo.push_to_hub(tiny[1], "acme/branched", endpoint=hf["endpoint"])
    dev_sha = mdwarf_zoo.push_to_hub(
        tiny[1], "acme/branched", revision="dev", endpoint=hf["endpoint"]
    )
    # The branch starts at main, and identical files make no new commit.
    assert ("POST", "/api/models/acme/branched/branch/dev") in server.log()
    assert dev_sha == main_sha == server.repos["acme/branched"].branches["dev"]
    assert mdwarf_zoo.from_pretrained("acme/branched", revision="dev", **hf).zoo_metadata.revision \
        == dev_sha

    damaged = copy_folder(tiny[1], tmp_path / "damaged")
    (damaged / "model.weights.h5").write_bytes(b"not weights")
    server.clear_log()
    with pytest.raises(ChecksumMismatchError, match=r"model\.weights\.h5"):
        mdwarf_zoo.push_to_hub(damaged, "acme/branched", endpoint=hf["endpoint"])
    with pytest.raises(ValueError, match="owner/name"):
        mdwarf_zoo.push_to_hub(tiny[1], "no-owner", endpoint=hf["endpoint"])
    assert server.log() == []


# ------------------------------------------------------------------------------------------
# published weights entries


@pytest.fixture()
def catalogue(tmp_path, monkeypatch):
    """An empty cards folder and bundled-weights folder in place of the shipped ones."""
    cards, bundled = tmp_path / "weights_cards", tmp_path / "bundled"
    cards.mkdir()
    bundled.mkdir()
    monkeypatch.setattr(hub_catalogue, "CARDS_ROOT", cards)
    monkeypatch.setattr(hub_catalogue, "BUNDLED_ROOT", bundled)
    return cards, bundled


def test_bundled_and_hub_entries(server, hf, tiny, catalogue, capsys):
    cards, bundled = catalogue
    model, folder = tiny
    copy_folder(folder, bundled / "tiny_demo")
    entry = hub_catalogue.write_entry(
        "tiny_demo", bundled / "tiny_demo", description="bundled test weights",
        license="cc-by-4.0", cards_root=cards, bundled="tiny_demo",
    )
    sha = server.commit_folder("acme/tiny_entry", folder)
    hub_catalogue.write_entry(
        "tiny_hub", folder, description="test weights on the hub", license="cc-by-4.0",
        cards_root=cards, repository="acme/tiny_entry", revision=sha,
    )
    assert mdwarf_zoo.list_pretrained() == ["tiny_demo", "tiny_hub"]
    assert mdwarf_zoo.list_pretrained("*_hub") == ["tiny_hub"]
    record = json.loads((cards / "tiny_demo" / "entry.json").read_text())
    assert record["architecture"] == "dense_ae_tiny" and record["bundled"] == "tiny_demo"
    assert entry.metrics["reconstruction_mse"] == 5.1e-5
    assert entry.card().data.library_name == "keras"
    with pytest.raises(TypeError):
        entry.metrics["x"] = 1.0  # entries are immutable

    demo = mdwarf_zoo.from_pretrained("tiny_demo")
    assert demo.zoo_metadata.entry == "tiny_demo"
    np.testing.assert_array_equal(predictions(demo), predictions(model))
    from_hub = mdwarf_zoo.from_pretrained("tiny_hub", **hf)
    assert (from_hub.zoo_metadata.entry, from_hub.zoo_metadata.revision) == ("tiny_hub", sha)
    with pytest.raises(ValueError, match="pinned to"):
        mdwarf_zoo.from_pretrained("tiny_hub", revision="main", **hf)

    assert cli.main(["weights"]) == 0
    table = capsys.readouterr().out
    assert "tiny_demo" in table and "bundled (tiny_demo)" in table
    assert f"acme/tiny_entry@{sha[:12]}" in table

    # An entry pins its manifest: a changed checkpoint is refused.
    rewrite_manifest(bundled / "tiny_demo", lambda manifest: manifest.update(extra={"x": 1}))
    with pytest.raises(ChecksumMismatchError, match="weights entry 'tiny_demo' pins"):
        mdwarf_zoo.from_pretrained("tiny_demo")
    with pytest.raises(FileExistsError, match="immutable"):
        hub_catalogue.write_entry("tiny_demo", folder, description="x", license="x",
                            cards_root=cards, bundled="tiny_demo")


def test_entry_records_are_validated():
    grid = MB24_GRID.to_dict()
    common = {"name": "x", "architecture": "dense_ae_tiny", "description": "d",
              "license": "mit", "wavelength_grid": grid}
    with pytest.raises(ValueError, match="pinned 40-hex commit sha"):
        hub_catalogue.WeightsEntry.from_dict({**common, "repository": "acme/x", "revision": "main"})
    with pytest.raises(ValueError, match="either repository"):
        hub_catalogue.WeightsEntry.from_dict(common)
    with pytest.raises(ValueError, match="unknown keys"):
        hub_catalogue.WeightsEntry.from_dict({**common, "bundled": "x", "sha": "1"})
    with pytest.raises(ValueError, match="unknown weights entry 'nope'"):
        hub_catalogue.get_pretrained("nope")


# ------------------------------------------------------------------------------------------
# command line


def test_cli_download_and_push(server, hf, tiny, capsys):
    endpoint, cache = hf["endpoint"], str(hf["cache_dir"])
    assert cli.main(["push", str(tiny[1]), "acme/cli", "--endpoint", endpoint,
                     "--message", "from the CLI"]) == 0
    sha = capsys.readouterr().out.splitlines()[-1]
    assert sha == server.repos["acme/cli"].branches["main"]
    assert cli.main(["download", "acme/cli", "--revision", sha, "--endpoint", endpoint,
                     "--cache-dir", cache]) == 0
    out = capsys.readouterr().out
    assert f"acme/cli@{sha}, all files verified" in out
    assert Path(out.splitlines()[-1]).name == sha
    assert cli.main(["download", "acme/missing", "--endpoint", endpoint,
                     "--cache-dir", cache]) == 1
    assert "repository 'acme/missing'" in capsys.readouterr().err
