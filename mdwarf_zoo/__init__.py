"""mdwarf_zoo: a Keras 3 model zoo for the stellar parameters of M dwarfs.

The public names below load on first use, so ``import mdwarf_zoo`` (and ``mdwarf-zoo --help``)
does not start TensorFlow. Every architecture family is registered with the zoo registry and
with Keras serialisation (package ``mdwarf_zoo``) as soon as Keras is loaded, whichever comes
first, so ``keras.saving.load_model`` reads zoo models once ``mdwarf_zoo`` is imported.
"""

import importlib
import importlib.util
import os

# TensorFlow's C++ INFO/WARNING chatter drowns the command line; users can still override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mdwarf_zoo import _registration
from mdwarf_zoo._version import __version__

#: Public name -> the module that defines it.
_PUBLIC = {
    "create_model": "mdwarf_zoo.registry",
    "list_models": "mdwarf_zoo.registry",
    "register_model": "mdwarf_zoo.registry",
    "from_pretrained": "mdwarf_zoo.hub.load",
    "push_to_hub": "mdwarf_zoo.hub.push",
    "save_pretrained": "mdwarf_zoo.hub.save",
    "transfer": "mdwarf_zoo.training.transfer",
    "list_pretrained": "mdwarf_zoo.hub.catalogue",
    "load_pipeline": "mdwarf_zoo.pipeline.pretrained",
    "calibrate": "mdwarf_zoo.pipeline.calibration",
    "Calibration": "mdwarf_zoo.pipeline.calibration",
    "train_regressors": "mdwarf_zoo.pipeline",
}

__all__ = ["__version__", *sorted(_PUBLIC)]

_registration.register_when_keras_loads()


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"mdwarf_zoo.{name}"):
        value = importlib.import_module(f"mdwarf_zoo.{name}")
    else:
        raise AttributeError(f"module 'mdwarf_zoo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
