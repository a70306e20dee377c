"""Shipped recipes and weights cards are found from an install and from a source checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mdwarf_zoo._resources import shipped_folder

REPOSITORY = Path(__file__).resolve().parents[1]


def test_shipped_folders_hold_the_recipes_and_cards():
    recipes = {p.name for p in shipped_folder("training_recipes").iterdir()}
    assert {"quickstart.toml", "mb24_reference.toml", "compare_quick.toml"} <= recipes
    cards = shipped_folder("weights_cards") / "mb24_quickstart_demo"
    assert (cards / "entry.json").is_file() and (cards / "README.md").is_file()
    with pytest.raises(ValueError, match="name must be one of"):
        shipped_folder("data")


def test_python_started_in_the_source_checkout_finds_them():
    # `python -c` puts the current folder first on sys.path: inside the checkout the package
    # is imported from the source tree, where setup.cfg's package_dir mapping does not apply.
    code = (
        "import mdwarf_zoo, mdwarf_zoo.recipes as r;"
        "print(mdwarf_zoo.__file__);"
        "print(','.join(r.list_recipes()));"
        "print(','.join(mdwarf_zoo.list_pretrained()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module_file, recipes, entries = result.stdout.strip().splitlines()[-3:]
    assert Path(module_file).resolve().is_relative_to(REPOSITORY)
    assert "quickstart" in recipes.split(",")
    assert "mb24_quickstart_demo" in entries.split(",")
