"""The tiny training recipe the recipe, train, compare and distributed tests build on.

``TINY`` is the recipe as tables of keys; ``tiny_recipe`` writes it as TOML text with each
test's changes, so a change to the recipe format is made here once. The text keeps one table
per header, one key per line and a blank line between tables, which is what
``mdwarf-zoo compare`` rewrites and what tests that edit the text itself expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

#: Tables by their dotted TOML name; every test run on it takes seconds.
TINY: dict[str, dict[str, object]] = {
    "recipe": {"name": "tiny", "seed": 5},
    "data.synthetic": {"source": "simulator", "n": 200},
    "data.synthetic.label_ranges": {
        "teff": [2800.0, 3800.0],
        "logg": [4.8, 5.2],
        "mh": [-0.3, 0.3],
        "vsini": [2.0, 6.0],
    },
    "data.observed": {"source": "simulator", "n": 12},
    "preprocessing": {"window": [8800.0, 8810.0, 0.02], "normalisation": "gisic"},
    "autoencoders": {"members": 2, "epochs": 4, "batch_size": 2, "learning_rate": 1e-3},
    "autoencoders.grid": {
        "architecture": "dense_ae_tiny",
        "widths": [[16, 12, 8, 4, 2]],
        "activation": "elu",
    },
    "transfer": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3},
    "regressors": {
        "parameters": ["teff", "logg"],
        "seeds": 2,
        "epochs": 2,
        "learning_rate": 1e-3,
        "batch_size": 16,
    },
    "regressors.overrides": {"nf1": 4, "nf2": 4, "nu": 8},
    "ensemble": {"best": 3},
    "outputs": {"plots": False},
}

Changes = Mapping[str, Mapping[str, object] | None]


def tiny_recipe(*changes: Changes) -> str:
    """The TOML text of ``TINY`` with ``changes`` applied in order.

    Each change maps a table name to its changed keys: a value replaces or adds the key (added
    keys and tables go last), ``None`` as a key's value removes the key, ``None`` as a table's
    removes the table.

    Examples:
        tiny_recipe({"data.synthetic": {"n": 40}, "ensemble": None})
    """
    tables = {name: dict(keys) for name, keys in TINY.items()}
    for change in changes:
        for name, keys in change.items():
            if keys is None:
                del tables[name]
                continue
            table = tables.setdefault(name, {})
            for key, value in keys.items():
                if value is None:
                    del table[key]
                else:
                    table[key] = value
    return "\n".join(
        "".join([f"[{name}]\n", *(f"{key} = {_toml(value)}\n" for key, value in keys.items())])
        for name, keys in tables.items()
    )


def write_recipe(folder: Path, *changes: Changes, name: str = "tiny.toml") -> Path:
    """``tiny_recipe(*changes)`` written to ``folder / name``; returns the file."""
    path = folder / name
    path.write_text(tiny_recipe(*changes))
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr round-trips the float; "1e-07" is written "1e-7", as a person writes it.
        mantissa, _, exponent = repr(value).partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    raise TypeError(
        f"recipe value {value!r}: expected a bool, number, string, list or dict (inline table)"
    )
