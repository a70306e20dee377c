"""The stages that train a member: pretraining on the synthetic set, transfer to the observed
set, encoding, and the latent regressors; each resumable, each skipped when its output exists."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mdwarf_zoo._files import atomic_savez as _atomic_savez
from mdwarf_zoo.hub import from_pretrained, save_pretrained
from mdwarf_zoo.labels import COLUMN as _COLUMN
from mdwarf_zoo.labels import PARAMETER_UNITS
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.pipeline import (
    LabelScaler,
    RegressorJob,
    RegressorSpec,
    RegressorStore,
    predict_ensemble,
    train_regressors,
)
from mdwarf_zoo.recipes import (
    AutoencoderMember,
)
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.training.distribute import get_strategy
from mdwarf_zoo.training.loop import (
    determinism,
    fit_resumable,
    remove_checkpoint,
    split_indices,
)
from mdwarf_zoo.training.transfer import clone_model, transfer

if TYPE_CHECKING:
    from mdwarf_zoo.recipes.run import Run

logger = logging.getLogger(__name__)


# -- member stages --------------------------------------------------------------------------
def _metadata(run: Run, member: AutoencoderMember, **extra: Any) -> dict[str, Any]:
    return {
        "preprocessor": run.recipe.preprocessing.preprocessor(),
        "recipe": {"name": run.recipe.name, "sha256": run.recipe.sha256},
        "provenance": {
            "run_member": member.name,
            "seed": member.seed,
            "architecture": member.architecture,
            "overrides": member.overrides,
            "synthetic": run.recipe.synthetic.source,
            "observed": run.recipe.observed.source,
        },
        **extra,
    }


def _train(
    run: Run,
    build: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    checkpoint: Path,
    validation: tuple[np.ndarray, np.ndarray] | None,
    description: str,
) -> tuple[Any, list[dict[str, float]]]:
    """Build a compiled model under the recipe's strategy and train it resumably with
    :func:`~mdwarf_zoo.training.loop.fit_resumable`, the one loop of every strategy: the
    same batches, and the checkpoint ``<checkpoint>.npz`` (written by the chief only)."""
    with get_strategy(run.recipe.strategy).scope():
        model = build()
    history = fit_resumable(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        checkpoint=checkpoint.with_name(checkpoint.name + ".npz"),
        validation=validation,
        description=description,
        progress=run.progress,
    )
    if run.recipe.strategy == "multi_worker":
        # Barrier: every worker has read the checkpoint (a resumed job that had finished
        # all epochs trains no step, so no collective ordered it) before the chief saves
        # the model and deletes the checkpoint.
        run.agree(True)
        # Evaluation, prediction and saving are local from here on: a copy outside the
        # strategy (the weights are mirrored on write, so every worker reads its own equal
        # copy without a collective), so no worker waits for another in predict().
        model = inference_copy(model)
    return model, history


def stage_pretrain(run: Run, member: AutoencoderMember) -> None:
    folder = run.member_folder(member)
    if run.agree((folder / "pretrained").is_dir()):
        return
    if run.chief:
        folder.mkdir(parents=True, exist_ok=True)
    with run.lock(folder):
        synthetic = run.read(run.synthetic_path)
        settings = run.recipe.autoencoders
        train, val = split_indices(len(synthetic), settings.validation_split, member.seed)
        determinism(member.seed)
        flux = synthetic.flux
        model, history = _train(
            run,
            lambda: create_model(
                member.architecture,
                input_length=synthetic.flux.shape[1],
                seed=member.seed,
                precision=settings.precision,
                **member.overrides,
            ),
            flux[train],
            flux[train],
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            seed=member.seed,
            checkpoint=folder / "pretrain.ckpt",
            validation=(flux[val], flux[val]),
            description=f"{member.name} pretrain {member.architecture}",
        )
        if not run.chief:
            return
        metrics = {
            "train_loss": history[-1]["loss"] if history else None,
            "validation_loss": history[-1].get("val_loss") if history else None,
            "reconstruction_mse_synthetic_validation": reconstruction_mse(model, flux[val]),
        }
        save_pretrained(
            inference_copy(model),
            folder / "pretrained",
            **_metadata(
                run, member, metrics=metrics, training=history_text(history, "pretraining")
            ),
        )
        remove_checkpoint(folder / "pretrain.ckpt")


def stage_transfer(run: Run, member: AutoencoderMember) -> None:
    """Stage 2 through :func:`mdwarf_zoo.transfer` (resumable: its checkpoint in the member
    folder), saved as ``transferred`` with the observed reconstruction error before and
    after and the drift of the synthetic latents."""
    folder = run.member_folder(member)
    settings = run.recipe.transfer
    if not settings.enabled or run.agree((folder / "transferred").is_dir()):
        return
    run.require(folder / "pretrained", f"pretraining of {member.name}", f"--member {member.index}")
    with run.lock(folder):
        flux = run.read(run.observed_path).flux
        source = from_pretrained(folder / "pretrained")
        # The synthetic spectra: replayed by the anchored mode, and (chief) the drift.
        anchored = settings.mode == "anchored"
        anchors = run.read(run.synthetic_path).flux if anchored or run.chief else None
        before = reconstruction_mse(source, flux) if run.chief else None
        tuned = transfer(
            source,
            flux,
            freeze=(
                source.default_freeze
                if settings.freeze == "default"
                else list(settings.freeze)
                if isinstance(settings.freeze, tuple)
                else settings.freeze
            ),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            validation_split=settings.validation_split,
            seed=member.seed + 100_000,
            mode=settings.mode,
            anchor_spectra=anchors,
            anchor_weight=settings.anchor_weight if anchored else None,
            checkpoint=folder / "transfer.ckpt.npz",
            strategy=run.recipe.strategy,
            progress=run.progress,
        )
        if not run.chief:
            return
        info = tuned.transfer_info
        metrics = {
            "reconstruction_mse_observed_before": before,
            "reconstruction_mse_observed_after": reconstruction_mse(tuned, flux),
            "latent_drift": info["latent_drift"],
        }
        records = [
            dict(zip(tuned.history.history, values, strict=True))
            for values in zip(*tuned.history.history.values(), strict=True)
        ]
        save_pretrained(
            inference_copy(tuned),
            folder / "transferred",
            **_metadata(
                run,
                member,
                metrics=metrics,
                extra={
                    "transfer": {
                        "mode": settings.mode,
                        **({"anchor_weight": settings.anchor_weight} if anchored else {}),
                        "frozen_layers": info["frozen_layers"],
                        "learning_rate": info["learning_rate"],
                        "epochs": settings.epochs,
                        "batch_size": settings.batch_size,
                        "validation_split": settings.validation_split,
                    }
                },
                training=history_text(records, "transfer learning"),
            ),
        )
        remove_checkpoint(folder / "transfer.ckpt")


def stage_encode(run: Run, member: AutoencoderMember) -> None:
    folder = run.member_folder(member)
    if not run.chief or (folder / "latents.npz").is_file():
        return
    run.require(folder / "pretrained", f"pretraining of {member.name}", f"--member {member.index}")
    if run.recipe.transfer.enabled:
        run.require(
            folder / "transferred", f"transfer of {member.name}", f"--member {member.index}"
        )
    synthetic = run.read(run.synthetic_path)
    observed = run.read(run.observed_path)
    original = from_pretrained(folder / "pretrained")
    tuned = from_pretrained(folder / "transferred") if run.recipe.transfer.enabled else original
    transferred = {}
    if tuned is not original:
        # The synthetic spectra through the fine-tuned encoder: the latent drift.
        transferred["synthetic_transferred"] = encode(tuned, synthetic.flux)
    _atomic_savez(
        folder / "latents.npz",
        **transferred,
        synthetic=encode(original, synthetic.flux),
        observed=encode(tuned, observed.flux),
        observed_no_transfer=encode(original, observed.flux),
        reconstruction_mse_observed=np.array(reconstruction_mse(tuned, observed.flux)),
        reconstruction_mse_observed_no_transfer=np.array(
            reconstruction_mse(original, observed.flux)
        ),
    )


def stage_regressors(run: Run, member: AutoencoderMember) -> None:
    """Stage 3 through :func:`mdwarf_zoo.pipeline.train_regressors` (the member folder as
    its store: resumable, each regressor saved when trained), then every regressor's
    predictions of the observed stars with and without transfer (``predictions.npz``)."""
    folder = run.member_folder(member)
    # With "multi_worker" this is also where the other workers wait for the chief's latents.
    if run.agree((folder / "predictions.npz").is_file()):
        return
    run.require(folder / "latents.npz", f"encoding of {member.name}", f"--member {member.index}")
    synthetic = run.read(run.synthetic_path)
    settings = run.recipe.regressors
    parameters = settings.parameters
    scaling = run.label_scaling(synthetic.labels)
    with np.load(folder / "latents.npz") as saved:
        latents = {key: saved[key] for key in saved.files}
    if run.chief:
        (folder / "regressors").mkdir(exist_ok=True)
    with run.lock(folder):
        regressors = train_regressors(
            latents["synthetic"],
            synthetic.labels[:, [_COLUMN[n] for n in parameters]],
            autoencoder=member.name,
            parameters=parameters,
            seeds={
                name: [_regressor_seed(member, p, k) for k in range(settings.seeds)]
                for p, name in enumerate(parameters)
            },
            specs={name: _regressor_spec(settings.settings[name]) for name in parameters},
            scaler=_label_scaler(scaling, parameters),
            standardize_latents=settings.standardize_latents,
            fused=settings.fused,
            progress=run.progress,
            store=_MemberRegressors(run, member, scaling),
        )
        if not run.chief:
            return
        named = {member.name: latents["observed"]}
        observed, _ = predict_ensemble(regressors, named, exact=True)
        named = {member.name: latents["observed_no_transfer"]}
        no_transfer, _ = predict_ensemble(regressors, named, exact=True)
        results: dict[str, np.ndarray] = {}
        scaler = regressors[0].latent_scaler
        if scaler is not None:
            # Kept with the predictions it produced, for pipeline.json: the regressors read
            # these standardised latents.
            results["latent_mean"], results["latent_std"] = scaler.mean, scaler.std
        for name in parameters:
            results[f"{name}_validation_mse"] = np.array(
                [r.validation_mse for r in regressors if r.parameter == name]
            )
            results[f"{name}_observed"] = observed[name]
            results[f"{name}_observed_no_transfer"] = no_transfer[name]
        _atomic_savez(folder / "predictions.npz", **results)


def _label_scaler(scaling: dict[str, dict[str, float]], names) -> LabelScaler:
    """The regressors' label standardisation (``Run.label_scaling``) as a scaler."""
    return LabelScaler(
        names, [scaling[n]["mean"] for n in names], [scaling[n]["std"] for n in names]
    )


def _save_regressor(
    run: Run,
    member,
    model,
    out: Path,
    name: str,
    scaling: dict[str, dict[str, float]],
    val_mse: float,
    training: str,
    extra: dict[str, Any],
) -> None:
    """A trained latent regressor as a pretrained folder (one-by-one and fused paths)."""
    save_pretrained(
        inference_copy(model),
        out,
        **_metadata(
            run,
            member,
            labels=[name],
            label_units=[PARAMETER_UNITS[name]],
            label_scaling={name: scaling[name]},
            metrics={"validation_mse_scaled": val_mse},
            training=training,
            **extra,
        ),
    )


def _regressor_seed(member: AutoencoderMember, p_index: int, k: int) -> int:
    """The seed of regressor ``k`` of parameter number ``p_index`` of ``member``."""
    return member.seed * 1000 + 100 * (p_index + 1) + k


def _regressor_spec(settings) -> RegressorSpec:
    """A recipe's ``RegressorSettings`` of one parameter as the pipeline's spec."""
    return RegressorSpec(
        settings.architecture,
        {"learning_rate": settings.learning_rate, **settings.overrides},
        settings.epochs,
        settings.batch_size,
        settings.validation_split,
    )


class _MemberRegressors(RegressorStore):
    """A member's ``regressors/`` folder as :func:`train_regressors`' store: models built
    under the recipe's strategy, checkpoints ``<name>.ckpt.npz``, a regressor saved (chief)
    as a pretrained folder ``<parameter>_seed<k>`` as soon as it is trained, and loaded
    instead of trained when that folder exists."""

    def __init__(
        self, run: Run, member: AutoencoderMember, scaling: dict[str, dict[str, float]]
    ) -> None:
        self.run, self.member, self.scaling = run, member, scaling
        self.folder = run.member_folder(member) / "regressors"

    def build(self, create):
        with get_strategy(self.run.recipe.strategy).scope():
            return create()

    def trained(self, model):
        if self.run.recipe.strategy == "multi_worker":
            # Barrier: every worker has read the checkpoint (a resumed job that had finished
            # all epochs trains no step, so no collective ordered it) before the chief saves
            # the model and deletes the checkpoint. Then a copy outside the strategy, so
            # evaluation and prediction are local.
            self.run.agree(True)
            return inference_copy(model)
        return model

    def load(self, job: RegressorJob):
        out = self.folder / job.name
        if not self.run.agree(out.is_dir()):
            return False, None
        return True, (from_pretrained(out) if self.run.chief else None)

    def checkpoint(self, name: str) -> Path:
        return self.folder / f"{name}.ckpt.npz"

    def save(self, regressor, job: RegressorJob, history, fused: bool) -> None:
        if not self.run.chief:
            return
        extra = {}
        if regressor.latent_scaler is not None:
            extra["extra"] = {"latent_scaling": regressor.latent_scaler.to_dict()}
        what = f"{job.parameter} regressor" + (" (fused)" if fused else "")
        _save_regressor(
            self.run,
            self.member,
            regressor.model,
            self.folder / job.name,
            job.parameter,
            self.scaling,
            regressor.validation_mse,
            history_text(history, what),
            extra,
        )

    def release(self, name: str) -> None:
        if self.run.chief:
            self.checkpoint(name).unlink(missing_ok=True)


def inference_copy(model):
    """A copy of ``model`` with the same weights and a fresh, unbuilt optimizer, so the saved
    folder holds the weights only (no Adam moments: a third of the size)."""
    return clone_model(model)


def reconstruction_mse(model, flux: np.ndarray) -> float:
    reconstruction = model.predict(flux, batch_size=256, verbose=0)
    return float(np.mean((reconstruction - flux) ** 2))


def history_text(history: list[dict[str, float]], what: str) -> str:
    if not history:
        return f"{what}: resumed after its last epoch"
    last = history[-1]
    parts = ", ".join(f"{key} {value:.4g}" for key, value in last.items())
    return f"{what}: {len(history)} epochs; last epoch {parts}"
