"""Argument helpers shared by several sub-commands.

Imports nothing heavy, so that ``mdwarf-zoo --help`` stays quick: the Hub client is imported
only when a command calls the Hub.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def add_command(
    subparsers, name: str, run: Callable[[argparse.Namespace], int], *, help: str, description: str
) -> argparse.ArgumentParser:
    """The sub-parser of ``mdwarf-zoo NAME``, which calls ``run`` with the parsed arguments."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(func=run)
    return parser


def add_recipe_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``RECIPE`` and ``--out DIR`` of the commands that run a recipe."""
    parser.add_argument("recipe", metavar="RECIPE", help="recipe file or shipped recipe name")
    parser.add_argument("--out", default=None, metavar="DIR", help=out_help)


def add_hub_arguments(
    parser: argparse.ArgumentParser, *, revision_help: str, token_help: str, cache_dir: bool
) -> None:
    """``--revision``, ``--cache-dir`` (with ``cache_dir``), ``--endpoint`` and ``--token`` of
    the commands that talk to the Hugging Face Hub."""
    parser.add_argument("--revision", default=None, help=revision_help)
    if cache_dir:
        parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT)")
    parser.add_argument("--token", default=None, help=token_help)


def hub_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_hub_arguments` as keyword arguments of :mod:`mdwarf_zoo.hub`."""
    names = ("revision", "cache_dir", "endpoint", "token")
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def call_hub(command: str, function: Callable, *args, **kwargs) -> object | None:
    """``function(*args, **kwargs)``; ``None`` after an HTTP error of the Hub, which is printed
    the way the command line prints errors."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return function(*args, **kwargs)
    except HfHubHTTPError as error:
        print(f"mdwarf-zoo {command}: error: {error}", file=sys.stderr)
        return None
