"""The one word list: the stellar parameters, their units, ranges and table columns.

Every module that names a parameter takes it from here. Two spellings exist for historical
reasons and both are fixed by file formats already published: the output tables and recipes say
``mh``; HDF5 spectrum sets and the simulator say ``metallicity``.
"""

from __future__ import annotations

#: The four stellar parameters in label-column order (names of the output table and recipes).
PARAMETERS = ("teff", "logg", "mh", "vsini")
#: Their units, as astropy parses them.
PARAMETER_UNITS = {"teff": "K", "logg": "dex", "mh": "dex", "vsini": "km/s"}
#: Human-readable descriptions, for table column metadata.
DESCRIPTIONS = {
    "teff": "effective temperature",
    "logg": "surface gravity log10(g / cm s-2)",
    "mh": "metallicity [M/H]",
    "vsini": "projected rotational velocity",
}
#: Column of each parameter in a label array.
COLUMN = {name: index for index, name in enumerate(PARAMETERS)}

#: The same columns as HDF5 spectrum sets and the simulator name them.
SET_LABEL_NAMES = ("teff", "logg", "metallicity", "vsini")
SET_LABEL_UNITS = tuple(PARAMETER_UNITS[name] for name in PARAMETERS)
#: Parameter name -> its name in spectrum sets and the simulator.
SET_NAME = dict(zip(PARAMETERS, SET_LABEL_NAMES, strict=True))

#: The label ranges of MB24's 22,933 PHOENIX-ACES training spectra (K, dex, dex, km/s).
MB24_LABEL_RANGES = {
    "teff": (2325.0, 4475.0),
    "logg": (4.7, 5.3),
    "mh": (-1.0, 0.6),
    "vsini": (1.5, 30.0),
}

#: What transfer learning re-trains (``mdwarf_zoo.transfer``'s ``mode``, the recipe's
#: ``[transfer] mode``): MB24 as written, anchored to the synthetic latents, or the decoder only.
TRANSFER_MODES = ("mb24", "anchored", "decoder_only")
