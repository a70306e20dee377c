"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Real third-party data (see ../shared/data/PROVENANCE.md); never copied into the repository.
SHARED_DATA = Path(
    os.environ.get(
        "MDWARF_ZOO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real third-party data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set MDWARF_ZOO_SHARED_DATA)")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    """A file below the shared data folder; skips the calling test when it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (see shared/data/PROVENANCE.md)")
    return path


#: The longest test files, started first: with two worker processes (``-n 2 --dist loadfile``)
#: the demo then runs beside the rest of the suite instead of after it.
LONGEST_FIRST = ("test_cli_train_demo.py", "test_cli_train.py", "test_distributed.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside each file is kept
