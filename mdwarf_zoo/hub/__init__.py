"""Pretrained weights: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``, the published
entries (``catalogue``) and their model cards (``cards``).

The names below load on first use, as in ``mdwarf_zoo/__init__.py``: ``save_pretrained`` and
``from_pretrained`` import Keras, while ``mdwarf-zoo weights``, the runner and the
``pipeline.json`` readers need only the catalogue, which never starts TensorFlow.
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
    "build_manifest": "manifest",
    "save_pretrained": "manifest",
    "download": "manifest",
    "from_pretrained": "manifest",
    "push_to_hub": "manifest",
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
