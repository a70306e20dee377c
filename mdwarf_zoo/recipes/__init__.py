"""TOML training recipes: load, validate and describe a whole training run.

A recipe is one TOML file that names everything a run of the reference pipeline needs:
where the synthetic and observed spectra come from, the preprocessing, the autoencoder
architectures and their hyper-parameter grid, transfer learning, the latent regressors, the
ensemble and the outputs. :func:`load_recipe` checks all of it (unknown keys with close-name
suggestions, types, ranges, architecture names against the registry, files on disk) *before*
any training starts and returns a :class:`Recipe`; :mod:`mdwarf_zoo.recipes.run` executes it.

Sections and keys (see ``training_recipes/*.toml`` for commented examples)::

    [recipe]          name, description, seed, strategy ("default" | "mirrored" | "multi_worker")
    [data.synthetic]  source = "simulator" | "phoenix" | "set"
                      simulator: n, line_list_seed, workers, labels (optional table), limit,
                                 [data.synthetic.label_ranges] teff/logg/mh/vsini = [lo, hi]
                      phoenix:   grid (folder), labels (table), limit, workers
                      set:       path (HDF5 set)
    [data.observed]   source = "simulator" | "files" | "set"
                      simulator: n, snr, seed, [data.observed.label_ranges], [data.observed.gap]
                      files:     files (paths or globs), template (or no_rv = true for spectra
                                 already in the rest frame), rv_range, labels (optional truth)
                      set:       path
    [preprocessing]   window = [start, stop, step] (Angstrom), margin, resolving_power,
                      normalisation, scaling, fill_gaps
    [autoencoders]    members, epochs, batch_size, learning_rate, validation_split, contractive,
                      precision ("float32", "mixed_bfloat16", "mixed_float16"),
                      [autoencoders.grid] architecture = [...], <constructor argument> = [...]
    [transfer]        enabled, freeze, epochs, learning_rate, batch_size, validation_split,
                      mode ("mb24" | "anchored" | "decoder_only"), anchor_weight (anchored)
    [regressors]      architecture, parameters, seeds, epochs, learning_rate, batch_size,
                      validation_split, standardize_latents (not MB24), fused,
                      [regressors.overrides], [regressors.<parameter>]
    [ensemble]        best, error_model ("spread+validation+gap", default | "spread+validation"
                      | "spread", MB24), gap (with the gap model: { teff = K, mh = dex ... };
                      default the prior GAP_PRIOR), error_scale_bins (with gap = "simulator":
                      bins of the estimate of the coverage factor, default 5),
                      latent_alignment ("none" | "coral" | "coral_neighbours"),
                      alignment_neighbours (with "coral_neighbours"),
                      alignment_resamples (with an alignment; 0 leaves the bootstrap out)
    [calibration]     labels (a table of known parameters of some observed stars, with an id
                      column), id_column (default "id"), parameters (default: every one
                      labelled): the final table is corrected (``mdwarf_zoo.calibrate``)
    [outputs]         table_format, plots
    [compare]         baselines (read by ``mdwarf-zoo compare``)


Modules: :mod:`~mdwarf_zoo.recipes.schema` (the settings dataclasses and stage names),
:mod:`~mdwarf_zoo.recipes.checker` (reading one table), :mod:`~mdwarf_zoo.recipes.sections`
(one reader per section), :mod:`~mdwarf_zoo.recipes.parse` (:func:`parse_recipe`) and
:mod:`~mdwarf_zoo.recipes.load` (finding and loading recipes by name or path).
"""

from __future__ import annotations

# PARAMETERS is re-exported because scripts import it from here (benchmarks/).
from mdwarf_zoo.labels import PARAMETERS as PARAMETERS
from mdwarf_zoo.recipes import schema
from mdwarf_zoo.recipes.load import find_recipe, list_recipes, load_recipe
from mdwarf_zoo.recipes.parse import parse_recipe
from mdwarf_zoo.recipes.schema import *  # noqa: F403 (the settings classes and constants)

__all__ = [*schema.__all__, "find_recipe", "list_recipes", "load_recipe", "parse_recipe"]
