"""Pretrained weights: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``, the published
entries and their model cards.

The modules, lowest first (none imports ``mdwarf_zoo.models`` or anything above it):
``manifest`` (``mdwarf_zoo.json``: errors, checksums, reading and verifying, ``PretrainedInfo``),
``cards`` (model cards), ``catalogue`` (the published weights entries), ``save``
(``save_pretrained``, ``build_manifest``), ``load`` (``from_pretrained``, ``download``) and
``push`` (``push_to_hub``).

The names below load on first use, as in ``mdwarf_zoo/__init__.py``: ``save``, ``load`` and
``push`` import Keras (9.7 s of the 13.6 s that ``python -X importtime`` gives ``hub.load`` on
a busy 2-core machine), while ``mdwarf-zoo weights``, the runner and the ``pipeline.json``
readers need only the catalogue and the manifest, which never start TensorFlow.
"""

import importlib

#: Public name -> the module of this package that defines it.
_PUBLIC = {
    "CARD_NAME": "manifest",
    "KERAS_FILES": "manifest",
    "MANIFEST_FORMAT": "manifest",
    "MANIFEST_NAME": "manifest",
    "ChecksumMismatchError": "manifest",
    "Label": "manifest",
    "PretrainedError": "manifest",
    "PretrainedInfo": "manifest",
    "PretrainedNotFoundError": "manifest",
    "UnknownArchitectureError": "manifest",
    "read_manifest": "manifest",
    "sha256_file": "manifest",
    "verify_folder": "manifest",
    "build_card": "cards",
    "card_data": "cards",
    "read_card": "cards",
    "PIPELINE_FILE": "catalogue",
    "PIPELINE_FORMAT": "catalogue",
    "WeightsEntry": "catalogue",
    "get_pretrained": "catalogue",
    "list_pretrained": "catalogue",
    "write_entry": "catalogue",
    "build_manifest": "save",
    "save_pretrained": "save",
    "download": "load",
    "from_pretrained": "load",
    "push_to_hub": "push",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mdwarf_zoo.hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
