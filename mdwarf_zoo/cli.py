"""The ``mdwarf-zoo`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mdwarf_zoo._version import __version__

# One module in mdwarf_zoo/commands/ per sub-command, in the order --help lists them.
COMMANDS = (
    "models",
    "weights",
    "download",
    "push",
    "build_set",
    "prepare_observed",
    "simulate",
    "train",
    "plan",
    "demo",
    "predict",
    "compare",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdwarf-zoo",
        description="Stellar parameters of M dwarfs from high-resolution spectra: "
        "a Keras 3 model zoo with pretrained weights.",
    )
    parser.add_argument("--version", action="version", version=f"mdwarf-zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mdwarf_zoo.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        print(f"mdwarf-zoo {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
