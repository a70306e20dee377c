"""Deep transfer learning: fine-tune a copy of an autoencoder on (unlabelled) observed spectra.

This is stage 2 of Mas-Buitrago et al. 2024 (A&A 687, A205), MB24: the autoencoder trained on
synthetic spectra is re-trained on observed spectra with its first layers frozen, so the
low-level features learnt from the synthetic grid are kept and the deeper layers adapt to the
observed domain. MB24 freezes ``layers[:5]`` of the flat dense autoencoder (the input and the
first four encoder layers) and re-trains with the same loss, Adam 1e-4, 60 epochs, batch 128 and
an 80/20 train/validation split.

The modes of :func:`transfer`, what is re-trained:

* ``"mb24"`` (default): every layer not frozen, with the reconstruction loss alone, as MB24
  wrote it. Nothing holds the latent coordinates that regressors trained on the original
  encoder's synthetic latents rely on: on the simulator the synthetic latents drift by
  ~0.3-0.9 sigma even when the "observed" spectra are synthetic.
* ``"anchored"``: the same layers, plus a penalty that holds the fine-tuned encoder's latents of
  replayed synthetic spectra (``anchor_spectra``) where the original encoder put them,
  ``anchor_weight * mean(((E'(x_syn) - E(x_syn)) / sigma)^2)`` (sigma: each latent dimension's
  spread under the original encoder); see :func:`anchored_trainer`.
* ``"decoder_only"``: the encoder (up to the bottleneck) is frozen too: the latent space cannot
  move, only the reconstruction of the observed spectra improves.

Freezing in Keras 3 (TensorFlow backend) only takes effect if the ``trainable`` flags are set
*before* ``compile()``: a flag changed after compiling is ignored by the compiled train step.
:func:`transfer` therefore works on a fresh copy, sets the flags, and only then compiles.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mdwarf_zoo.diagnostics import latent_drift
from mdwarf_zoo.labels import TRANSFER_MODES
from mdwarf_zoo.models import ZooModel
from mdwarf_zoo.models.inference import encode
from mdwarf_zoo.optimizers import FusedAdam
from mdwarf_zoo.spectra.datasets import SpectrumSet, read_set
from mdwarf_zoo.spectra.grid import Spectrum
from mdwarf_zoo.spectra.preprocess import Preprocessor
from mdwarf_zoo.training.distribute import agree, get_strategy
from mdwarf_zoo.training.loop import determinism, fit_resumable

__all__ = [
    "TRANSFER_MODES",
    "AnchorReplay",
    "anchor_targets",
    "anchored_trainer",
    "clone_model",
    "model_preprocessor",
    "prepare_spectra",
    "resolve_freeze",
    "transfer",
    "transfer_layers",
]

#: Default weight of the anchor penalty of ``mode="anchored"``.
ANCHOR_WEIGHT = 1.0

logger = logging.getLogger(__name__)

FreezeSpec = (
    int | slice | Sequence[int | str] | str | Callable[[keras.layers.Layer], bool]
)

# Attributes a loaded model may carry (set by ``mdwarf_zoo.hub`` or by the user) that a
# fine-tuned copy must keep: the preprocessing the model expects and its published metadata.
_CARRIED_ATTRIBUTES = ("preprocessor", "zoo_metadata")


def describe_layers(model: keras.Model) -> str:
    """The model's flat layer list, one ``index: name (class, weights)`` per line."""
    lines = []
    for index, layer in enumerate(model.layers):
        n_params = sum(int(np.prod(w.shape)) for w in layer.weights)
        lines.append(f"  {index:3d}: {layer.name} ({type(layer).__name__}, {n_params} weights)")
    return "\n".join(lines)


def resolve_freeze(model: keras.Model, freeze: FreezeSpec) -> list[int]:
    """The indices into ``model.layers`` that ``freeze`` selects.

    Args:
        model: the model whose flat ``model.layers`` list is indexed (index 0 is the
            ``InputLayer`` of a functional model).
        freeze: one of
            - an ``int`` N: ``layers[:N]`` (negative N counts from the end, as in Python);
            - a ``slice``: ``layers[slice]``;
            - a layer name (``str``), or a list/tuple mixing indices (negative allowed) and names;
            - a predicate ``f(layer) -> bool``.

    Returns:
        Sorted, unique layer indices.

    Raises:
        ValueError: for an index outside the layer list or an unknown layer name (the message
            lists the model's layers with their indices).
        TypeError: for a ``freeze`` of another type.

    Examples:
        >>> import mdwarf_zoo
        >>> from mdwarf_zoo.training.transfer import resolve_freeze
        >>> model = mdwarf_zoo.create_model("dense_ae_tiny")
        >>> resolve_freeze(model, 5)
        [0, 1, 2, 3, 4]
        >>> resolve_freeze(model, ["spectrum", -1])
        [0, 12]
    """
    layers = model.layers
    n = len(layers)

    def listing() -> str:
        return f"model {model.name!r} has {n} layers:\n{describe_layers(model)}"

    def one_index(value: int) -> int:
        if not -n <= value < n:
            raise ValueError(f"freeze: layer index {value} is out of range -{n}..{n - 1}; "
                             f"{listing()}")
        return value % n

    names = [layer.name for layer in layers]

    def one_item(item: Any) -> int:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"freeze: no layer named {item!r}; {listing()}")
            return names.index(item)
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            return one_index(int(item))
        raise TypeError(
            f"freeze: list items must be layer indices (int) or names (str), got {item!r}"
        )

    if isinstance(freeze, bool):
        raise TypeError(f"freeze: expected an int, slice, list of indices/names or a predicate, "
                        f"got {freeze!r}")
    if isinstance(freeze, numbers.Integral):
        value = int(freeze)
        if not -n <= value <= n:
            raise ValueError(f"freeze={value} is out of range -{n}..{n} (freezes layers[:N]); "
                             f"{listing()}")
        return list(range(n))[:value]
    if isinstance(freeze, slice):
        return list(range(n))[freeze]
    if isinstance(freeze, str):
        return [one_item(freeze)]
    if callable(freeze):
        return [index for index, layer in enumerate(layers) if bool(freeze(layer))]
    if isinstance(freeze, Iterable):
        return sorted({one_item(item) for item in freeze})
    raise TypeError(
        f"freeze: expected an int, slice, list of indices/names or a predicate, got "
        f"{type(freeze).__name__} {freeze!r}"
    )


def clone_model(model: keras.Model) -> keras.Model:
    """An independent copy of ``model``: same class, configuration and weights (all of them,
    including non-trainable ones such as BatchNormalization statistics).

    Zoo models are rebuilt with ``type(model).from_config(model.get_config())``; other
    functional or sequential models with ``keras.models.clone_model``. Attributes a loaded
    model carries (``preprocessor``, ``zoo_metadata``) are copied too.

    Args:
        model: a built ``keras.Model``.

    Returns:
        The copy (compiled with its default compilation for zoo models, uncompiled otherwise).
    """

    if isinstance(model, ZooModel):
        copy = type(model).from_config(model.get_config())
    else:
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name in _CARRIED_ATTRIBUTES:
        if getattr(model, name, None) is not None:
            # Plain data, not layers or variables: bypass Keras' attribute tracking (as the hub
            # loader does).
            object.__setattr__(copy, name, getattr(model, name))
    return copy


def model_preprocessor(model: keras.Model) -> Preprocessor | None:
    """The :class:`Preprocessor` a model carries, or ``None``.

    Looked up, in order, as ``model.preprocessor`` (a ``Preprocessor``, its ``to_dict()`` or
    its JSON) and as ``model.zoo_metadata.preprocessor`` (what ``mdwarf_zoo.from_pretrained``
    attaches from the folder's ``mdwarf_zoo.json``; a plain dict with a ``"preprocessing"``
    entry is read too).
    """
    candidates = [getattr(model, "preprocessor", None)]
    metadata = getattr(model, "zoo_metadata", None)
    if isinstance(metadata, dict):
        candidates.append(metadata.get("preprocessing"))
    elif metadata is not None:
        candidates.append(getattr(metadata, "preprocessor", None))
    for candidate in candidates:
        if candidate is None or candidate == {} or candidate == "":
            continue
        if isinstance(candidate, Preprocessor):
            return candidate
        if isinstance(candidate, dict):
            return Preprocessor.from_dict(candidate)
        if isinstance(candidate, str):
            return Preprocessor.from_json(candidate)
        raise TypeError(
            f"model {model.name!r} carries a preprocessor of type {type(candidate).__name__}; "
            "expected a Preprocessor, its dict or its JSON"
        )
    return None


def prepare_spectra(
    spectra: Any, model: keras.Model, *, what: str = "spectra"
) -> tuple[np.ndarray, list[str]]:
    """The model's input array from an array, an HDF5 set, a ``SpectrumSet`` or ``Spectrum``s.

    Args:
        spectra: an (n, pixels) array of preprocessed flux; the path of an HDF5 set written by
            ``mdwarf_zoo.spectra.datasets.write_set``; a ``SpectrumSet``; or a list of
            :class:`~mdwarf_zoo.spectra.grid.Spectrum` (raw spectra, prepared with the model's
            own :class:`Preprocessor`, see :func:`model_preprocessor`).
        model: the model the spectra are for (its input length is checked).
        what: the argument name used in error messages.

    Returns:
        ``(flux, identifiers)``: float32 (n, pixels) and one name per spectrum (the set's
        identifiers, a spectrum's ``OBJECT``/``object`` header value or its source file, or
        ``spectrum_<i>`` for arrays).

    Raises:
        FileNotFoundError: for a set path that does not exist.
        ValueError: for a wrong shape, non-finite values, or ``Spectrum`` objects given to a
            model that carries no Preprocessor.
    """
    # Imported here: the HDF5 set layer pulls in h5py and the PHOENIX reader, which array users
    # of the package never need.

    if isinstance(spectra, (str, os.PathLike)):
        spectra = read_set(Path(spectra))
    if isinstance(spectra, SpectrumSet):
        flux, identifiers = spectra.flux, list(spectra.identifiers)
    elif isinstance(spectra, Spectrum) or (
        isinstance(spectra, (list, tuple)) and spectra and isinstance(spectra[0], Spectrum)
    ):
        items = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
        preprocessor = model_preprocessor(model)
        if preprocessor is None:
            raise ValueError(
                f"{what}: got {len(items)} Spectrum object(s) but model {model.name!r} carries "
                "no Preprocessor (model.preprocessor); preprocess them yourself "
                "(mdwarf_zoo.spectra.Preprocessor(...).apply(spectra)) and pass the array, or "
                "load the model with mdwarf_zoo.from_pretrained"
            )
        flux = preprocessor.apply(items)
        identifiers = [_spectrum_name(s, i) for i, s in enumerate(items)]
    else:
        flux = np.asarray(spectra)
        if flux.dtype == object:
            raise ValueError(f"{what}: expected an (n, pixels) numeric array, got ragged input")
        identifiers = []
    flux = np.asarray(flux, dtype=np.float32)
    if flux.ndim == 1:
        flux = flux[None, :]
    expected = tuple(model.input_shape[1:])
    if flux.ndim != 2 or tuple(flux.shape[1:]) != expected:
        raise ValueError(
            f"{what}: expected an array of shape (n, {', '.join(map(str, expected))}) for "
            f"model {model.name!r}, got {flux.shape}"
        )
    if flux.shape[0] == 0:
        raise ValueError(f"{what}: no spectra (shape {flux.shape})")
    if not np.all(np.isfinite(flux)):
        row = int(np.argwhere(~np.isfinite(flux))[0, 0])
        raise ValueError(f"{what}: spectrum {row} has non-finite flux")
    if not identifiers:
        identifiers = [f"spectrum_{i}" for i in range(flux.shape[0])]
    return flux, identifiers


def _spectrum_name(spectrum: Spectrum, index: int) -> str:
    for key in ("object", "OBJECT"):
        value = spectrum.metadata.get(key)
        if value not in (None, ""):
            return str(value).strip()
    source = spectrum.metadata.get("source")
    return Path(str(source)).name if source else f"spectrum_{index}"


def _model_learning_rate(model: keras.Model) -> float:
    value = getattr(model, "learning_rate", None)
    if value is None and getattr(model, "optimizer", None) is not None:
        value = model.optimizer.learning_rate
    if value is None:
        raise ValueError(
            f"transfer: model {model.name!r} has no learning_rate attribute and no optimizer; "
            "pass learning_rate="
        )
    return float(keras.ops.convert_to_numpy(value))


def _model_loss(model: keras.Model) -> Any:
    loss = getattr(model, "loss", None)
    return "mse" if loss is None else loss


def transfer_layers(model: keras.Model, freeze: FreezeSpec, mode: str) -> list[int]:
    """The layer indices :func:`transfer` keeps fixed for ``freeze`` and ``mode``.

    ``"mb24"`` and ``"anchored"``: the layers ``freeze`` selects. ``"decoder_only"``: those and
    the whole encoder up to and including the bottleneck (``model.bottleneck_index``), so the
    latent space cannot move at all and only the decoder adapts to the observed spectra.

    Raises:
        ValueError: for an unknown mode, or ``"decoder_only"`` on a model without a
            ``bottleneck_index``.
    """
    if mode not in TRANSFER_MODES:
        raise ValueError(f"transfer: mode must be one of {TRANSFER_MODES}, got {mode!r}")
    frozen = set(resolve_freeze(model, freeze))
    if mode == "decoder_only":
        bottleneck = getattr(model, "bottleneck_index", None)
        if bottleneck is None:
            raise ValueError(
                f"transfer: mode='decoder_only' needs an autoencoder with a bottleneck_index "
                f"(a zoo model); {model.name!r} has none"
            )
        frozen |= set(range(int(bottleneck) + 1))
    return sorted(frozen)


def anchor_targets(
    original: keras.Model, anchor_spectra: np.ndarray, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """The original encoder's latents of the anchor spectra, and the per-dimension scale the
    anchor penalty divides by (their standard deviation; 1 for a dimension that never varies).
    """

    latents = encode(original, anchor_spectra, batch_size=batch_size).astype(np.float32)
    scale = latents.std(axis=0)
    scale = np.where(scale > 1e-6 * max(float(scale.max()), 1e-30), scale, 1.0)
    return latents, scale.astype(np.float32)


def anchored_trainer(
    tuned: keras.Model, scale: np.ndarray, *, anchor_weight: float, loss: Any
) -> keras.Model:
    """A two-input model that trains ``tuned`` (in place) with the anchor penalty.

    Inputs ``[observed, anchor]``; outputs ``[tuned(observed), tuned.encoder(anchor) / scale]``
    with targets ``[observed, original latents / scale]``: the reconstruction loss of the
    observed spectra plus ``anchor_weight`` times the mean squared shift of the synthetic
    latents, in units of each dimension's spread under the original encoder,
    ``anchor_weight * mean(((E'(x_syn) - E(x_syn)) / sigma)^2)``. The layers are ``tuned``'s
    own, so fitting the trainer fine-tunes ``tuned``; the model's own penalties (contractive,
    L1) apply to both inputs. Compiled with :class:`~mdwarf_zoo.optimizers.FusedAdam` by the
    caller.
    """
    encoder = getattr(tuned, "encoder", None)
    if encoder is None:
        raise ValueError(
            f"transfer: mode='anchored' needs an autoencoder with an encoder (a zoo model); "
            f"{tuned.name!r} has none"
        )
    shape = tuple(tuned.input_shape[1:])
    observed = keras.Input(shape=shape, name="observed")
    anchor = keras.Input(shape=shape, name="anchor")
    latents = keras.layers.Rescaling(
        (1.0 / np.asarray(scale, dtype=np.float32)).tolist(), name="anchor_latents"
    )(encoder(anchor))
    trainer = keras.Model(
        [observed, anchor], [tuned(observed), latents], name=f"{tuned.name}_anchored"
    )
    trainer.anchored_weight = float(anchor_weight)
    trainer.anchor_loss = loss
    return trainer


class AnchorReplay:
    """The inputs and targets of anchored transfer, batch by batch.

    Every training row (observed spectrum) is paired, in each epoch, with a synthetic anchor:
    epoch ``e`` pairs position ``p`` with item ``e * n + p`` of an endless chain of seeded
    permutations of the anchors, so that over the epochs every anchor is replayed as often as
    every other, and the pairing depends on (seed, epoch, position) alone (a resumed run sees
    the same batches).

    Args:
        flux: (n, pixels) training spectra.
        anchors: (m, pixels) synthetic spectra.
        targets: (m, latent) the original encoder's latents of the anchors divided by the
            anchor scale (:func:`anchor_targets`).
        seed: seed of the pairing.
    """

    def __init__(self, flux: np.ndarray, anchors: np.ndarray, targets: np.ndarray,
                 seed: int) -> None:
        self.flux, self.anchors, self.targets, self.seed = flux, anchors, targets, int(seed)
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.flux)

    def _permutation(self, k: int) -> np.ndarray:
        if k not in self._permutations:
            if len(self._permutations) > 4:
                self._permutations.clear()
            rng = np.random.default_rng([self.seed, 7, int(k)])
            self._permutations[k] = rng.permutation(len(self.anchors))
        return self._permutations[k]

    def anchor_rows(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """The anchor rows paired with training ``positions`` in ``epoch``."""
        chain = int(epoch) * len(self.flux) + np.asarray(positions, dtype=np.int64)
        m = len(self.anchors)
        rows = np.empty(chain.shape, dtype=np.int64)
        for k in np.unique(chain // m):
            here = chain // m == k
            rows[here] = self._permutation(int(k))[chain[here] % m]
        return rows

    def batch(self, epoch: int, positions: np.ndarray) -> tuple[list, list]:
        """``([observed, anchors], [observed, anchor targets])`` of ``positions``."""
        rows = self.anchor_rows(epoch, positions)
        return ([self.flux[positions], self.anchors[rows]],
                [self.flux[positions], self.targets[rows]])

    def all(self) -> tuple[list, list]:
        """Every row with epoch 0's pairing (validation)."""
        return self.batch(0, np.arange(len(self.flux)))


def transfer(
    model: keras.Model,
    spectra: Any,
    *,
    freeze: FreezeSpec,
    epochs: int = 60,
    batch_size: int = 128,
    learning_rate: float | None = None,
    validation_split: float = 0.2,
    seed: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    progress: bool = False,
    mode: str = "mb24",
    anchor_spectra: Any = None,
    anchor_weight: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    strategy: str | None = None,
) -> keras.Model:
    """Fine-tune a copy of an autoencoder on observed spectra (deep transfer learning, MB24).

    The model passed in is never changed: a copy gets ``trainable = False`` on the layers
    ``freeze`` selects (frozen BatchNormalization layers keep their moving statistics), is
    compiled with the model's own loss (its contractive, L1 and KL terms stay) and a new Adam,
    and learns to reconstruct ``spectra`` (no labels needed).

    Args:
        model: an autoencoder (output shape == input shape), e.g. from
            ``mdwarf_zoo.create_model`` or ``mdwarf_zoo.from_pretrained``.
        spectra: the observed spectra: preprocessed (n, pixels) flux, an HDF5 observed set,
            a ``SpectrumSet`` or ``Spectrum`` objects (see :func:`prepare_spectra`).
        freeze: the layers of the flat ``model.layers`` to keep fixed (:func:`resolve_freeze`;
            MB24: ``freeze=5``, the dense autoencoder's ``model.default_freeze``).
        epochs, batch_size: training epochs and batch size (MB24: 60, 128).
        learning_rate: Adam learning rate; default the model's own (MB24: 1e-4).
        validation_split: share of the spectra held out for validation, drawn with ``seed``; 0
            trains on all (MB24: 0.2).
        seed: seeds everything and switches TensorFlow's op determinism on (process-wide).
        callbacks: extra Keras callbacks for ``fit``.
        progress: show a tqdm bar over epochs.
        mode: what is re-trained: ``"mb24"`` (default), ``"anchored"`` or ``"decoder_only"``
            (see the module docstring).
        anchor_spectra: synthetic spectra the anchored mode replays (required there); with
            any mode they measure the drift of the synthetic latents
            (:func:`mdwarf_zoo.diagnostics.latent_drift`, warned about above 0.1 sigma).
        anchor_weight: the anchor penalty's weight (``"anchored"``; default 1.0).
        checkpoint: an ``.npz`` file written after every epoch, to resume from with the same
            result (:func:`mdwarf_zoo.training.loop.fit_resumable`, the loop of every stage).
        strategy: a ``tf.distribute`` strategy name to train under (``None``: the current);
            under ``"multi_worker"`` every worker calls ``transfer`` alike.

    Returns:
        The fine-tuned copy, with ``copy.history`` (a Keras ``History``: ``["loss"]``,
        ``["val_loss"]``) and ``copy.transfer_info`` (the settings, the split's identifiers and,
        with ``anchor_spectra``, ``latent_drift``).

    Raises:
        TypeError: for a ``freeze`` of an unsupported type, or a model that is not a
            ``keras.Model``.
        ValueError: for a ``freeze`` index out of range or an unknown layer name (listing the
            layers), a model that is not an autoencoder, spectra of the wrong shape, non-finite
            flux, nothing left to train, or a bad number.

    Examples:
        >>> import numpy as np
        >>> import mdwarf_zoo
        >>> model = mdwarf_zoo.create_model("dense_ae_tiny")
        >>> observed = np.random.default_rng(0).uniform(0.5, 1.0, (16, 3501))
        >>> tuned = mdwarf_zoo.transfer(model, observed, freeze=model.default_freeze,
        ...                             epochs=2, seed=0)
        >>> len(tuned.history.history["loss"])
        2
    """
    learning_rate = _check_arguments(model, epochs, batch_size, validation_split,
                                     learning_rate, seed)
    frozen = transfer_layers(model, freeze, mode)
    flux, identifiers = prepare_spectra(spectra, model, what="transfer: spectra")
    anchors, anchor_weight = _check_anchors(model, mode, anchor_spectra, anchor_weight)
    train, val = _split(flux.shape[0], validation_split, seed)

    seed_order = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
    if seed is not None:
        determinism(seed_order)
    logger.debug("transfer: %s (%s), frozen layers %s, %d training / %d validation spectra, "
                 "%d epochs, lr %g", model.name, mode, frozen, len(train), len(val), epochs,
                 learning_rate)
    with get_strategy(strategy).scope() if strategy else contextlib.nullcontext():
        tuned = _frozen_copy(model, frozen, freeze)
        trainer, x, y, validation = _trainer(model, tuned, flux, train, val, mode, anchors,
                                             anchor_weight, seed_order, learning_rate)
    records = fit_resumable(
        trainer, x, y, epochs=int(epochs), batch_size=int(batch_size), seed=seed_order,
        checkpoint=None if checkpoint is None else Path(checkpoint), validation=validation,
        description=f"transfer ({model.name})", progress=progress, callbacks=list(callbacks or []),
    )
    tuned = _compiled_alone(model, tuned, trainer, strategy, learning_rate)
    tuned.history = _history(records)
    tuned.transfer_info = _info(model, tuned, mode, frozen, learning_rate, epochs, batch_size,
                                validation_split, seed, identifiers, train, val, anchors,
                                anchor_weight)
    return tuned


def _frozen_copy(model: keras.Model, frozen: list[int], freeze: FreezeSpec) -> keras.Model:
    """A copy of ``model`` whose layers ``frozen`` are not trainable (flags before compiling:
    the TensorFlow backend ignores flags changed afterwards)."""
    tuned = clone_model(model)
    frozen_set = set(frozen)
    for index, layer in enumerate(tuned.layers):
        layer.trainable = index not in frozen_set
    if not tuned.trainable_weights:
        raise ValueError(
            f"transfer: freeze={freeze!r} leaves no trainable weight in model "
            f"{model.name!r}; it has {len(tuned.layers)} layers:\n{describe_layers(tuned)}"
        )
    return tuned


def _compiled_alone(model: keras.Model, tuned: keras.Model, trainer: keras.Model,
                    strategy: str | None, learning_rate: float) -> keras.Model:
    """``tuned`` after its training, with a compiled state of its own (the anchored trainer
    fitted ``tuned``'s layers), and under ``"multi_worker"`` a local copy once every worker has
    finished, so what follows (drift, saving) needs no collective."""
    if strategy == "multi_worker":
        agree(get_strategy("multi_worker"), True)
        tuned = clone_model(tuned)
    if trainer is not tuned or strategy == "multi_worker":
        tuned.compile(optimizer=FusedAdam(float(learning_rate)), loss=_model_loss(model))
    return tuned


def _info(model, tuned, mode, frozen, learning_rate, epochs, batch_size, validation_split,
          seed, identifiers, train, val, anchors, anchor_weight) -> dict[str, Any]:
    """``transfer_info``: the settings, the split, and with anchors their drift."""
    info = {
        "mode": mode, "source_model": model.name, "frozen_layers": list(frozen),
        "frozen_layer_names": [tuned.layers[i].name for i in frozen],
        "learning_rate": float(learning_rate), "epochs": int(epochs),
        "batch_size": int(batch_size), "validation_split": float(validation_split),
        "seed": seed, "n_train": int(len(train)), "n_validation": int(len(val)),
        "train_identifiers": [identifiers[i] for i in train],
        "validation_identifiers": [identifiers[i] for i in val],
    }
    if anchors is not None:
        if mode == "anchored":
            info["anchor_weight"] = float(anchor_weight)
        info["n_anchor"] = int(len(anchors))
        info["latent_drift"] = latent_drift(model, tuned, anchors)
    return info


def _history(records: list[dict[str, float]]) -> keras.callbacks.History:
    """The loop's per-epoch records as a Keras ``History`` (``history.history["loss"]``)."""
    history = keras.callbacks.History()
    history.epoch = list(range(len(records)))
    history.history = {key: [r[key] for r in records] for key in records[0]} if records else {}
    return history


def _check_arguments(model, epochs, batch_size, validation_split, learning_rate, seed) -> float:
    """Refuse a bad argument of :func:`transfer` by name; the learning rate to use."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"transfer: model must be a keras.Model, got {type(model).__name__}")
    if tuple(model.output_shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(
            f"transfer: model {model.name!r} is not an autoencoder (input shape "
            f"{model.input_shape}, output shape {model.output_shape}); transfer() fine-tunes "
            "autoencoders on unlabelled spectra"
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"transfer: {name} must be a positive integer, got {value!r}")
    if not (isinstance(validation_split, numbers.Real) and 0.0 <= validation_split < 1.0):
        raise ValueError(
            f"transfer: validation_split must be a number in [0, 1), got {validation_split!r}"
        )
    if learning_rate is None:
        learning_rate = _model_learning_rate(model)
    if not (isinstance(learning_rate, numbers.Real) and np.isfinite(learning_rate)
            and learning_rate > 0):
        raise ValueError(f"transfer: learning_rate must be a number > 0, got {learning_rate!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or seed < 0):
        raise ValueError(f"transfer: seed must be None or an integer >= 0, got {seed!r}")
    return float(learning_rate)


def _check_anchors(model, mode: str, anchor_spectra, anchor_weight):
    """The anchor spectra as the model's input array (or ``None``) and the anchor weight."""
    anchors = None
    if anchor_spectra is not None:
        anchors, _ = prepare_spectra(anchor_spectra, model, what="transfer: anchor_spectra")
    if mode == "anchored" and anchors is None:
        raise ValueError(
            "transfer: mode='anchored' needs anchor_spectra: synthetic spectra (those the model "
            "was trained on, or a sample of them) whose latents the fine-tuning must keep"
        )
    if anchor_weight is not None and mode != "anchored":
        raise ValueError(f"transfer: anchor_weight is a setting of mode='anchored', not {mode!r}")
    anchor_weight = ANCHOR_WEIGHT if anchor_weight is None else anchor_weight
    if not (isinstance(anchor_weight, numbers.Real) and np.isfinite(anchor_weight)
            and anchor_weight >= 0):
        raise ValueError(f"transfer: anchor_weight must be a number >= 0, got {anchor_weight!r}")
    return anchors, float(anchor_weight)


def _split(n: int, validation_split: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows, drawn at random (seeded), each sorted."""
    n_val = int(round(validation_split * n))
    if validation_split > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        raise ValueError(
            f"transfer: {n} spectra leave none to train on with validation_split="
            f"{validation_split}"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _trainer(model, tuned, flux, train, val, mode, anchors, anchor_weight, seed, learning_rate):
    """The compiled model that fine-tunes ``tuned`` (``tuned`` itself, or for ``"anchored"``
    its two-input trainer) and the loop's training inputs, targets and validation: for
    ``"anchored"`` the anchors replayed beside the training spectra, a new seeded pairing every
    epoch."""
    optimizer = FusedAdam(float(learning_rate))
    if mode != "anchored":
        # Flags first, compile second: the TensorFlow backend ignores flags changed afterwards.
        tuned.compile(optimizer=optimizer, loss=_model_loss(model))
        validation = (flux[val], flux[val]) if len(val) else None
        return tuned, flux[train], flux[train], validation
    targets, scale = anchor_targets(model, anchors)
    trainer = anchored_trainer(tuned, scale, anchor_weight=anchor_weight, loss=_model_loss(model))
    replay = AnchorReplay(flux[train], anchors, targets / scale, seed)
    validation = None
    if len(val):
        validation = AnchorReplay(flux[val], anchors, targets / scale, seed).all()
    trainer.compile(optimizer=optimizer, loss=[_model_loss(model), "mse"],
                    loss_weights=[1.0, anchor_weight])
    return trainer, replay, None, validation
