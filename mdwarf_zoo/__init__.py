"""mdwarf_zoo: a Keras 3 model zoo for the stellar parameters of M dwarfs.

Importing the package registers every architecture family with the zoo registry and with
Keras serialisation (package ``mdwarf_zoo``), so ``keras.saving.load_model`` can read zoo models.
"""

import os

# TensorFlow's C++ INFO/WARNING chatter drowns the command line; users can still override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mdwarf_zoo import models  # noqa: F401  (registers every family)
from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub import from_pretrained, push_to_hub, save_pretrained
from mdwarf_zoo.registry import create_model, list_models, register_model
from mdwarf_zoo.transfer import transfer
from mdwarf_zoo.weights import list_pretrained

__all__ = [
    "__version__",
    "create_model",
    "from_pretrained",
    "list_models",
    "list_pretrained",
    "push_to_hub",
    "register_model",
    "save_pretrained",
    "transfer",
]
