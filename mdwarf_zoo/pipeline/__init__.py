"""Stages 2-4 of the reference pipeline (MB24) and the pipeline folder that carries them.

* :mod:`~mdwarf_zoo.pipeline.scaling`: label and latent standardisation;
* :mod:`~mdwarf_zoo.pipeline.regressors`: the latent regressors (stage 3);
* :mod:`~mdwarf_zoo.pipeline.alignment`: the optional latent alignment;
* :mod:`~mdwarf_zoo.pipeline.ensemble`: best-K, KDE mode, errors, the estimate table;
* :mod:`~mdwarf_zoo.pipeline.gap`: the domain-gap scale of the errors (prior, measurement);
* :mod:`~mdwarf_zoo.pipeline.estimate`: stage 4 once, for every entry point;
* :mod:`~mdwarf_zoo.pipeline.run`: :func:`run_pipeline`, the whole chain in memory;
* :mod:`~mdwarf_zoo.pipeline.pretrained`: a pipeline folder loaded and predicting;
* :mod:`~mdwarf_zoo.pipeline.calibration`: corrections from stars of known parameters.
"""

from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline.alignment import (
    ALIGNMENTS,
    align_latents,
    align_observed_latents,
    alignment_uncertainty,
)
from mdwarf_zoo.pipeline.estimate import Alignment, Estimate, estimate
from mdwarf_zoo.pipeline.gap import (
    GAP_PRIOR,
    coverage_profile,
    coverage_scale,
    measure_gap,
    scale_factors,
)
from mdwarf_zoo.pipeline.regressors import (
    LatentRegressor,
    RegressorJob,
    RegressorSpec,
    RegressorStore,
    predict_ensemble,
    stratified_split,
    train_regressors,
)
from mdwarf_zoo.pipeline.run import PipelineResult, latents, run_pipeline
from mdwarf_zoo.pipeline.scaling import LabelScaler, LatentScaler

__all__ = [
    "ALIGNMENTS",
    "Alignment",
    "GAP_PRIOR",
    "Estimate",
    "LabelScaler",
    "LatentRegressor",
    "LatentScaler",
    "PipelineResult",
    "RegressorJob",
    "RegressorSpec",
    "RegressorStore",
    "align_latents",
    "align_observed_latents",
    "alignment_uncertainty",
    "coverage_profile",
    "coverage_scale",
    "scale_factors",
    "encode",
    "estimate",
    "latents",
    "measure_gap",
    "predict_ensemble",
    "run_pipeline",
    "stratified_split",
    "train_regressors",
]
