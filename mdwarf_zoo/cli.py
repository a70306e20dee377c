"""The ``mdwarf-zoo`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

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
    "calibrate",
    "compare",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdwarf-zoo",
        description="Stellar parameters of M dwarfs from high-resolution spectra: "
        "a Keras 3 model zoo with pretrained weights.",
    )
    parser.add_argument("--version", action="version", version=f"mdwarf-zoo {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level and show TensorFlow's own log and warnings",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mdwarf_zoo.commands.{name}").add_parser(subparsers)
    return parser


#: Python warnings that TensorFlow and Keras print on every run and that say nothing to a user
#: of the command line (a regressor loaded for inference has no optimizer state to restore; each
#: zoo model traces its own graph once).
_NOISE = (
    "Skipping variable loading for optimizer",
    ".*triggered tf.function retracing",
    "Compiled the loaded model, but the compiled metrics have yet to be built",
)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def _quiet(native: bool) -> None:
    """Hide TensorFlow's chatter: its C++ log, its Python logger and its routine warnings.

    TensorFlow's C++ code writes some lines (``cuInit`` on a machine without a GPU, absl's
    pre-initialisation notice) to file descriptor 2 before any log level applies. With
    ``native``, descriptor 2 goes to the null device and Python's ``sys.stderr`` keeps the
    terminal, so the command's own messages, progress bars and errors still show.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in _NOISE:
        warnings.filterwarnings("ignore", message=message)
    # A warning meant for the user (a flagged radial velocity, say) is one line, without the
    # source line that Python's default format adds.
    warnings.showwarning = _one_line_warning
    if native:
        terminal = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        sys.stderr = os.fdopen(terminal, "w", buffering=1, errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run ``mdwarf-zoo``; ``argv=None`` means the real command line (the console script).

    Without ``-v`` TensorFlow's own output is hidden; from the real command line that includes
    what its C++ code writes straight to the terminal.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        _quiet(native=argv is None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
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
