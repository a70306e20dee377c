"""``mdwarf-zoo weights [PATTERN]``: the published weights entries as a table."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "weights",
        run,
        help="list the published pretrained weights",
        description="List the published weights entries: name, architecture, where the weights "
        "come from (Hub repository at a pinned commit, or bundled with the package), licence, "
        "metrics. Load a model with mdwarf_zoo.from_pretrained(NAME), a pipeline with "
        "mdwarf_zoo.load_pipeline(NAME) or mdwarf-zoo predict --model NAME.",
    )
    parser.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'mb24_*'")
    parser.add_argument(
        "--kind", choices=("model", "pipeline"), default=None, help="keep one kind only"
    )


def run(args: argparse.Namespace) -> int:
    from mdwarf_zoo.commands.models import format_table
    from mdwarf_zoo.hub import get_pretrained, list_pretrained

    names = list_pretrained(args.pattern, kind=args.kind)
    if not names:
        if args.pattern:
            print(f"no published weights entry matches {args.pattern!r}")
            return 1
        print("no published weights entry is installed")
        return 0
    rows = []
    for name in names:
        entry = get_pretrained(name)
        source = (
            f"{entry.repository}@{entry.revision[:12]}"
            if entry.repository
            else f"bundled ({entry.bundled})"
        )
        metrics = ", ".join(f"{key}={value:.3g}" for key, value in entry.metrics.items())
        rows.append(
            {
                "name": name,
                "kind": entry.kind,
                "architecture": entry.architecture,
                "source": source,
                "licence": entry.license,
                "metrics": metrics or "-",
                "description": entry.description,
            }
        )
    columns = ("name", "kind", "architecture", "source", "licence", "metrics", "description")
    print(format_table(rows, columns))
    return 0
