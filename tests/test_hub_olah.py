"""Integration: from_pretrained against olah, a self-hosted hub serving local git repositories.

olah (PyPI) runs in offline mode on 127.0.0.1 with ``mirrors-path`` holding
``models/<owner>/<name>`` git repositories; the test starts and stops it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mdwarf_zoo
from mdwarf_zoo.hub import ChecksumMismatchError, PretrainedNotFoundError
from mdwarf_zoo.spectra.grid import MB24_GRID

pytestmark = pytest.mark.integration


def olah_command() -> str | None:
    beside_python = Path(sys.executable).with_name("olah-cli")
    return str(beside_python) if beside_python.is_file() else shutil.which("olah-cli")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return result.stdout.strip()


def commit_folder(repo: Path, folder: Path, message: str) -> str:
    for path in folder.iterdir():
        if path.is_file():
            shutil.copyfile(path, repo / path.name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def spectra() -> np.ndarray:
    return np.random.default_rng(5).uniform(0.2, 1.0, (3, MB24_GRID.size)).astype("float32")


@pytest.fixture(scope="module")
def olah(tmp_path_factory):
    """A running olah with one repository, acme/tiny: two commits on main."""
    command = olah_command()
    if command is None:
        pytest.skip("olah is not installed (pip install 'olah>=0.5.4', part of the test extra)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed; olah serves git repositories")
    root = tmp_path_factory.mktemp("olah")
    models = []
    repo = root / "mirrors" / "models" / "acme" / "tiny"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for seed in (1, 2):
        model = mdwarf_zoo.create_model("dense_ae_tiny", seed=seed)
        folder = mdwarf_zoo.save_pretrained(model, root / f"folder{seed}", grid=MB24_GRID)
        shas.append(commit_folder(repo, folder, f"weights seed {seed}"))
        models.append(model)
    broken = root / "mirrors" / "models" / "acme" / "broken"
    broken.mkdir(parents=True)
    git(broken, "init", "-q", "-b", "main")
    (root / "folder1" / "model.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    commit_folder(broken, root / "folder1", "truncated weights")

    port = free_port()
    config = root / "configs.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n[accessibility]\noffline = true\n',
        encoding="utf-8",
    )
    log = open(root / "olah.log", "wb")  # noqa: SIM115  (closed after the server stops)
    process = subprocess.Popen(
        [command, "-c", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                raise RuntimeError(
                    f"olah did not start: {(root / 'olah.log').read_text(errors='replace')}"
                ) from None
            time.sleep(0.2)
    try:
        yield {"endpoint": endpoint, "process": process, "shas": shas, "models": models}
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_olah_round_trip_pinned_branch_errors_and_server_down(olah, tmp_path):
    kw = {"endpoint": olah["endpoint"], "cache_dir": tmp_path / "cache"}
    first, latest = olah["shas"]
    x = spectra()

    on_main = mdwarf_zoo.from_pretrained("acme/tiny", **kw)
    assert on_main.zoo_metadata.revision == latest
    np.testing.assert_array_equal(on_main.predict(x, verbose=0),
                                  olah["models"][1].predict(x, verbose=0))
    pinned = mdwarf_zoo.from_pretrained(f"hf://acme/tiny@{first}", **kw)
    np.testing.assert_array_equal(pinned.predict(x, verbose=0),
                                  olah["models"][0].predict(x, verbose=0))

    with pytest.raises(PretrainedNotFoundError, match="'acme/absent'"):
        mdwarf_zoo.from_pretrained("acme/absent", **kw)
    # olah answers an unknown branch like an unknown repository.
    with pytest.raises(PretrainedNotFoundError, match="revision 'nope'"):
        mdwarf_zoo.from_pretrained("acme/tiny", revision="nope", **kw)
    with pytest.raises(ChecksumMismatchError, match=r"model\.weights\.h5 .*truncated"):
        mdwarf_zoo.from_pretrained("acme/broken", **kw)

    olah["process"].terminate()
    olah["process"].wait(timeout=10)
    again = mdwarf_zoo.from_pretrained("acme/tiny", revision=first, **kw)
    np.testing.assert_array_equal(again.predict(x, verbose=0), pinned.predict(x, verbose=0))
    assert mdwarf_zoo.from_pretrained("acme/tiny", **kw).zoo_metadata.revision == latest
