"""The package's layers: the hub sits below the models and everything built on them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HUB = Path(__file__).resolve().parents[1] / "mdwarf_zoo" / "hub"
ABOVE_THE_HUB = ("models", "pipeline", "predict", "runner", "recipes", "transfer")


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
