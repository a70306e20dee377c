"""The package's layers (docs/architecture.md): each module imports only from its own layer or
those below it, the hub sits below the models, and no two modules import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mdwarf_zoo"
HUB = PACKAGE / "hub"
ABOVE_THE_HUB = ("models", "pipeline", "training", "recipes", "commands", "diagnostics")

#: The layers, lowest first: a module of layer i imports only modules of layers <= i.
LAYERS = (
    (
        "_version",
        "_files",
        "_resources",
        "_registration",
        "labels",
        "registry",
        "optimizers",
        "plots",
        "spectra",
    ),
    ("hub",),
    ("models",),
    ("diagnostics", "training"),
    ("pipeline",),
    ("recipes",),
    ("commands", "cli", ""),
)


def _imported_modules(tree: ast.AST, package: str) -> list[str]:
    """Every module an ``import`` anywhere in ``tree`` names (relative ones resolved)."""
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            # ``from mdwarf_zoo import models`` names the module in the alias.
            modules += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return modules


def test_hub_never_imports_a_higher_layer():
    """No module of ``mdwarf_zoo/hub/`` imports the models or anything built on them, at any
    level (inside functions too)."""
    forbidden = tuple(f"mdwarf_zoo.{name}" for name in ABOVE_THE_HUB)
    files = sorted(HUB.glob("*.py"))
    assert {path.stem for path in files} >= {"__init__", "manifest", "save", "load", "push"}
    for path in files:
        for module in _imported_modules(ast.parse(path.read_text()), "mdwarf_zoo.hub"):
            hit = module in forbidden or module.startswith(tuple(f"{f}." for f in forbidden))
            assert not hit, f"hub/{path.name} imports {module}"


def test_catalogue_and_manifest_never_import_keras():
    """``mdwarf-zoo weights`` and the ``pipeline.json`` readers use the catalogue and the
    manifest without starting TensorFlow."""
    code = (
        "import sys\n"
        "import mdwarf_zoo.hub.catalogue, mdwarf_zoo.hub.manifest\n"
        "from mdwarf_zoo.hub import PIPELINE_FILE, list_pretrained, read_manifest\n"
        "list_pretrained()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))\n"
        "assert not heavy, heavy[:5]\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _dependencies(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Per module, the package modules it imports anywhere (inside functions too), except
    under ``if TYPE_CHECKING:`` (annotations only, never run)."""

    def known(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    out = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {known(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                # ``from mdwarf_zoo.spectra import grid`` imports the module grid.
                found |= {known(f"{node.module}.{alias.name}") for alias in node.names}
        out[name] = {m for m in found if m.startswith("mdwarf_zoo")} - {name}
    return out


def _layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else ""
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{name} is in no layer of tests/test_layout.py's LAYERS")


def test_every_module_imports_only_its_own_layer_or_below():
    dependencies = _dependencies(_modules())
    for name, imported in sorted(dependencies.items()):
        for other in sorted(imported):
            assert _layer(other) <= _layer(name), (
                f"{name} (layer {_layer(name)}) imports {other} (layer {_layer(other)})"
            )


def test_no_import_circles():
    """Strongly connected components of the import graph (Tarjan): every one a single module."""
    graph = _dependencies(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, circles
