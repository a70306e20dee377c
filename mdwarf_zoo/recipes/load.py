"""Finding recipes: the shipped ones by name (package data ``mdwarf_zoo.training_recipes``, or
``training_recipes/`` beside a source checkout) or any TOML file by path."""

from __future__ import annotations

import difflib
import importlib.resources
import os
from pathlib import Path

from mdwarf_zoo._resources import shipped_folder
from mdwarf_zoo.recipes.parse import parse_recipe
from mdwarf_zoo.recipes.schema import Recipe


def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``training_recipes/*.toml``)."""
    folder = shipped_folder("training_recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_recipe(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """The TOML text of a recipe and its file.

    Args:
        name_or_path: a path to a ``.toml`` file, or the name of a shipped recipe
            (``"quickstart"``, ``"mb24_reference"``, ... see :func:`list_recipes`).

    Returns:
        ``(text, path)``; ``path`` is the file a shipped recipe was read from.

    Raises:
        FileNotFoundError: for a path that does not exist or an unknown recipe name.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path.read_text(encoding="utf-8"), path.resolve()
    name = str(name_or_path)
    if name.endswith(".toml") or os.sep in name or "/" in name:
        raise FileNotFoundError(f"recipe file {name!r} does not exist")
    resource = shipped_folder("training_recipes") / f"{name}.toml"
    if not resource.is_file():
        shipped = list_recipes()
        close = difflib.get_close_matches(name, shipped, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise FileNotFoundError(
            f"no recipe file {name!r} and no shipped recipe of that name.{hint} Shipped "
            f"recipes: {', '.join(shipped)}"
        )
    with importlib.resources.as_file(resource) as file:
        return Path(file).read_text(encoding="utf-8"), Path(file)


def load_recipe(
    name_or_path: str | os.PathLike, *, check_files: bool = True, check_models: bool = True
) -> Recipe:
    """Read and validate a recipe.

    Args:
        name_or_path: a ``.toml`` path or the name of a shipped recipe.
        check_files: refuse paths that do not exist (turn off to inspect a recipe whose data
            paths are still to be filled in, e.g. ``mb24_reference``).
        check_models: build every autoencoder grid point and regressor once, so a constructor
            argument of a wrong type or out of range fails here rather than mid-run.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        FileNotFoundError: for an unknown recipe.
        RecipeError: for any invalid content; the message names the key, the value and what
            is allowed.

    Examples:
        >>> from mdwarf_zoo.recipes import load_recipe
        >>> recipe = load_recipe("quickstart")
        >>> recipe.name
        'quickstart'
    """
    text, path = find_recipe(name_or_path)
    return parse_recipe(text, source=path, check_files=check_files, check_models=check_models)
