"""Where the shipped recipes and weights cards live.

``weights_cards/`` and ``training_recipes/`` sit at the top of the repository; an install
(editable or not) maps them into the package as ``mdwarf_zoo.weights_cards`` and
``mdwarf_zoo.training_recipes`` (``package_dir`` in setup.cfg). Python started inside a source
checkout imports the package from the checkout, where those subpackages do not exist, so the
folders beside the package are used instead.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path

SHIPPED_FOLDERS = ("weights_cards", "training_recipes")


def shipped_folder(name: str) -> Traversable:
    """The shipped folder ``name`` (``"weights_cards"`` or ``"training_recipes"``).

    Raises:
        ValueError: for another name.
        ModuleNotFoundError: when neither the installed package data nor a source checkout
            holds the folder.
    """
    if name not in SHIPPED_FOLDERS:
        raise ValueError(f"shipped_folder: name must be one of {SHIPPED_FOLDERS}, got {name!r}")
    try:
        return importlib.resources.files(f"mdwarf_zoo.{name}")
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / name
        if checkout.is_dir():
            return checkout
        raise
