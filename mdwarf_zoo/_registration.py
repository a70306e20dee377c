"""Register the zoo's architectures with Keras as soon as Keras is loaded, not before.

Loading Keras starts TensorFlow (seconds of CPU and C++ log lines), which ``import mdwarf_zoo``
and ``mdwarf-zoo --help`` must not pay for. Yet a user who imports ``mdwarf_zoo`` and then calls
``keras.saving.load_model`` on a zoo folder needs the families registered. So
``mdwarf_zoo.models`` is imported right after the outermost import that loaded Keras finishes:
``keras`` and ``tensorflow`` import each other part-way through their own initialisation, and a
zoo module that imports Keras (``mdwarf_zoo.registry``, say) is itself needed by the families, so
the families may only load once none of these is still initialising.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading

_WATCHED = ("keras", "tensorflow")
_lock = threading.Lock()
_done = False


def _watched(name: str) -> bool:
    return name in _WATCHED or name == "mdwarf_zoo" or name.startswith("mdwarf_zoo.")


def _initialising(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _register_if_ready(finished: str | None = None) -> None:
    """Import ``mdwarf_zoo.models`` once Keras is loaded and no watched import is still running
    (``finished``: the module whose code has just run; importlib clears its flag only after)."""
    global _done
    if _done or "keras" not in sys.modules:
        return
    if any(_watched(name) and name != finished and _initialising(name) for name in sys.modules):
        return
    with _lock:
        if _done:
            return
        _done = True
        for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport)]:
            sys.meta_path.remove(finder)
    importlib.import_module("mdwarf_zoo.models")


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then registers the families if the moment has come."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        # Everything else (get_code for ``python -m``, get_resource_reader, is_package...) is the
        # real loader's.
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # The module keeps the real loader (reloading, resources and pickling look it up).
        module.__spec__.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        _register_if_ready(module.__name__)


class _AfterImport(importlib.abc.MetaPathFinder):
    """A meta-path finder that wraps the loaders of Keras, TensorFlow and the zoo's modules."""

    def find_spec(self, fullname: str, path=None, target=None):
        if _done or not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _AfterImport):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def register_when_keras_loads() -> None:
    """Register now if Keras is loaded, else as soon as the import that loads it has finished."""
    with _lock:
        if not _done and not any(isinstance(f, _AfterImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _AfterImport())
    _register_if_ready("mdwarf_zoo")
