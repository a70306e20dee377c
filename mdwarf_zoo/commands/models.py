"""``mdwarf-zoo models [PATTERN]``: the registered architectures as a table."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "models",
        run,
        help="list the registered architectures",
        description="List the registered architectures: name, kind, input shape, latent size "
        "and number of parameters.",
    )
    parser.add_argument(
        "pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'dense_ae*'"
    )
    parser.add_argument(
        "--kind", choices=("autoencoder", "regressor"), default=None, help="keep one kind only"
    )


def model_table(pattern: str | None = None, kind: str | None = None) -> list[dict]:
    """One row per registered model: name, kind, input shape, latent size, parameters."""
    from mdwarf_zoo.registry import create_model, get_entry, list_models

    rows = []
    for name in list_models(pattern, kind=kind):
        model = create_model(name)
        rows.append(
            {
                "name": name,
                "kind": get_entry(name).kind,
                "input": str(tuple(model.input_shape[1:])),
                "latent": str(model.latent_dim) if model.kind == "autoencoder" else "-",
                "parameters": f"{model.count_params():,}",
                "description": get_entry(name).description,
            }
        )
    return rows


def format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    widths = {c: max([len(c), *(len(str(row[c])) for row in rows)]) for c in columns}
    numeric = {"parameters", "latent"}

    def cell(column: str, value: str) -> str:
        return value.rjust(widths[column]) if column in numeric else value.ljust(widths[column])

    lines = ["  ".join(cell(c, c) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(cell(c, str(row[c])) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = model_table(args.pattern, args.kind)
    if not rows:
        print(f"no registered model matches {args.pattern!r}")
        return 1
    print(format_table(rows, ("name", "kind", "input", "latent", "parameters", "description")))
    return 0
