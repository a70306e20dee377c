"""Reading one table of a recipe: typed keys with ranges, paths against the recipe's folder, and
unknown keys refused with a close-name suggestion."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mdwarf_zoo.recipes.schema import RecipeError


class Checker:
    """Reads one table of the TOML document, recording every key it consumes."""

    def __init__(
        self,
        where: str,
        table: Mapping[str, Any],
        origin: str,
        base: Path | None,
        check_files: bool,
    ):
        self.where = where
        self.table = table
        self.origin = origin
        self.base = base
        self.check_files = check_files
        self.used: set[str] = set()

    def fail(self, key: str, value: Any, expected: str) -> RecipeError:
        return RecipeError(
            f"recipe {self.origin}: [{self.where}] {key} = {show(value)}: expected {expected}"
        )

    def has(self, key: str) -> bool:
        return key in self.table

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.table.get(key, default)

    def required(self, key: str, expected: str) -> Any:
        if key not in self.table:
            raise RecipeError(
                f"recipe {self.origin}: [{self.where}] is missing the key {key!r} ({expected})"
            )
        return self.raw(key)

    def integer(
        self, key: str, default: Any = None, *, minimum: int = 0, required: bool = False
    ) -> int | None:
        value = (
            self.required(key, f"an integer >= {minimum}") if required else self.raw(key, default)
        )
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, value, f"an integer >= {minimum}")
        return int(value)

    def number(
        self,
        key: str,
        default: Any = None,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float | None:
        value = self.raw(key, default)
        if value is None and key not in self.table:
            return None
        bounds = _bounds_text(low, high, low_open, high_open)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise self.fail(key, value, f"a number{bounds}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise self.fail(key, value, f"a number{bounds}")
        if high is not None and (value > high or (high_open and value == high)):
            raise self.fail(key, value, f"a number{bounds}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def choice(
        self, key: str, allowed: tuple[str, ...], default: Any = None, *, required: bool = False
    ) -> str:
        if required:
            value = self.required(key, f"one of {list(allowed)}")
        else:
            value = self.raw(key, default)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(key, value, f"one of {list(allowed)}{hint}")
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.raw(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, value, "a string")
        return value

    def path(self, key: str, *, kind: str = "file", required: bool = False) -> Path | None:
        if required:
            value = self.required(key, f"the path of a {kind}")
        else:
            value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, f"the path of a {kind} (a string)")
        resolved = self.resolve(value)
        if self.check_files:
            exists = resolved.is_dir() if kind == "folder" else resolved.is_file()
            if not exists:
                raise RecipeError(
                    f"recipe {self.origin}: [{self.where}] {key} = {value!r}: no such {kind} "
                    f"({resolved}); fix the path (relative paths are relative to the recipe's "
                    f"folder{'' if self.base is None else f' {self.base}'})"
                )
        return resolved

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        return path

    def sub(self, key: str, *, required: bool = False) -> Mapping[str, Any]:
        value = self.raw(key, None)
        if value is None:
            if required:
                raise RecipeError(
                    f"recipe {self.origin}: the table [{self.where}.{key}] is missing"
                )
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, value, f"a table ([{self.where}.{key}])")
        return value

    def finish(self, allowed: tuple[str, ...] | None = None) -> None:
        """Refuse keys that were never read, suggesting close names."""
        known = tuple(self.used) if allowed is None else allowed
        for key in self.table:
            if key not in self.used and key not in (allowed or ()):
                names = sorted(set(known) | self.used)
                raise unknown_key(self.origin, self.where, key, names, cutoff=0.6)


def unknown_key(
    origin: str, where: str, key: str, allowed: Sequence[str], *, cutoff: float = 0.5
) -> RecipeError:
    """The error for ``key`` in the table ``[where]``, which allows only ``allowed``."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=cutoff)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return RecipeError(
        f"recipe {origin}: [{where}] has an unknown key {key!r}{hint} "
        f"Allowed keys: {', '.join(allowed)}"
    )


def is_numbers(value: Any, count: int) -> bool:
    """A list of ``count`` numbers (TOML integers or floats, not booleans)."""
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def show(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bounds_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return f" {' and '.join(parts)}" if parts else ""


def open_section(
    document: Mapping[str, Any],
    name: str,
    origin: str,
    base: Path | None,
    check_files: bool,
    *,
    required: bool = False,
) -> Checker:
    """The checker of the table ``name`` (dotted for a nested one) of a parsed document."""
    parts = name.split(".")
    table: Any = document
    for part in parts:
        table = table.get(part, {}) if isinstance(table, Mapping) else None
        if not isinstance(table, Mapping):
            raise RecipeError(f"recipe {origin}: [{name}] must be a table, got {show(table)}")
    if required and not table:
        raise RecipeError(f"recipe {origin}: the table [{name}] is missing")
    return Checker(name, table, origin, base, check_files)
