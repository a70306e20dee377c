"""mdwarf_zoo: a Keras 3 model zoo for the stellar parameters of M dwarfs."""

from mdwarf_zoo._version import __version__

__all__ = ["__version__"]
