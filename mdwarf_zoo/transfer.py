"""Deep transfer learning: fine-tune a copy of an autoencoder on (unlabelled) observed spectra.

This is stage 2 of Mas-Buitrago et al. 2024 (A&A 687, A205), MB24: the autoencoder trained on
synthetic spectra is re-trained on observed spectra with its first layers frozen, so the
low-level features learnt from the synthetic grid are kept and the deeper layers adapt to the
observed domain. MB24 freezes ``layers[:5]`` of the flat dense autoencoder (the input and the
first four encoder layers) and re-trains with the same loss, Adam 1e-4, 60 epochs, batch 128 and
an 80/20 train/validation split.

Freezing in Keras 3 (TensorFlow backend) only takes effect if the ``trainable`` flags are set
*before* ``compile()``: a flag changed after compiling is ignored by the compiled train step.
:func:`transfer` therefore works on a fresh copy, sets the flags, and only then compiles.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from mdwarf_zoo.optimizers import FusedAdam
from mdwarf_zoo.spectra.grid import Spectrum
from mdwarf_zoo.spectra.preprocess import Preprocessor

__all__ = ["clone_model", "model_preprocessor", "prepare_spectra", "resolve_freeze", "transfer"]

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
        >>> from mdwarf_zoo.transfer import resolve_freeze
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
    from mdwarf_zoo.models import ZooModel

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
    from mdwarf_zoo.spectra.datasets import SpectrumSet, read_set

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


class _EpochBar(keras.callbacks.Callback):
    """A tqdm bar over epochs, with the current losses."""

    def __init__(self, epochs: int):
        super().__init__()
        self.bar = tqdm(total=epochs, desc="transfer", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in (logs or {}).items()})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


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
) -> keras.Model:
    """Fine-tune a copy of an autoencoder on observed spectra (deep transfer learning, MB24).

    The model passed in is never changed: a copy is built from its configuration and weights,
    the layers selected by ``freeze`` get ``trainable = False`` (frozen BatchNormalization
    layers then run in inference mode, keeping their moving statistics), every other layer
    ``trainable = True``, and only then is the copy compiled with the model's own loss (MSE; the
    contractive, L1 and KL terms are model losses and stay) and a new Adam optimizer. It is
    trained to reconstruct ``spectra`` (no labels needed).

    Args:
        model: an autoencoder (output shape == input shape), e.g. from
            ``mdwarf_zoo.create_model`` or ``mdwarf_zoo.from_pretrained``.
        spectra: the observed spectra: an (n, pixels) array of preprocessed flux, the path of an
            HDF5 observed set, a ``SpectrumSet``, or a list of ``Spectrum`` objects (prepared
            with the model's own Preprocessor, which a model loaded from the hub carries).
        freeze: the layers of the flat ``model.layers`` to keep fixed: an int N freezes
            ``layers[:N]`` (MB24: ``freeze=5`` = the input and the first four encoder layers of
            the dense autoencoder, ``model.default_freeze``), a slice, a list of indices
            (negative allowed) and/or layer names, or a predicate ``f(layer) -> bool``.
        epochs: training epochs (MB24: 60).
        batch_size: batch size (MB24: 128).
        learning_rate: Adam learning rate; default the model's own ``learning_rate`` (the one it
            was trained with; MB24: 1e-4).
        validation_split: fraction of the spectra held out for validation, drawn at random
            (seeded by ``seed``); 0 trains on all (MB24: 0.2).
        seed: makes the run reproducible: ``keras.utils.set_random_seed(seed)`` and TensorFlow
            op determinism (a process-wide setting) are switched on before the copy is built.
        callbacks: extra Keras callbacks for ``fit``.
        progress: show a tqdm bar over epochs.

    Returns:
        The fine-tuned copy. ``copy.history`` is the Keras ``History`` of the fine-tuning
        (``copy.history.history["loss"]``, ``["val_loss"]``), and ``copy.transfer_info`` a dict
        with the frozen layer indices and names, learning rate, epochs, batch size, seed, the
        numbers of training/validation spectra and their identifiers.

    Raises:
        TypeError: for a ``freeze`` of an unsupported type, or a model that is not a
            ``keras.Model``.
        ValueError: for a ``freeze`` index out of range or an unknown layer name (the message
            lists the model's layers with their indices), a model that is not an autoencoder,
            spectra of the wrong shape, non-finite flux, nothing left to train, or a bad
            ``epochs``, ``batch_size``, ``learning_rate`` or ``validation_split``.

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

    frozen = resolve_freeze(model, freeze)
    flux, identifiers = prepare_spectra(spectra, model, what="transfer: spectra")

    n = flux.shape[0]
    n_val = int(round(validation_split * n))
    if validation_split > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        raise ValueError(
            f"transfer: {n} spectra leave none to train on with validation_split="
            f"{validation_split}"
        )
    order = np.random.default_rng(seed).permutation(n)
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])

    if seed is not None:
        import tensorflow as tf

        keras.utils.set_random_seed(int(seed))
        tf.config.experimental.enable_op_determinism()

    tuned = clone_model(model)
    frozen_set = set(frozen)
    for index, layer in enumerate(tuned.layers):
        layer.trainable = index not in frozen_set
    if not tuned.trainable_weights:
        raise ValueError(
            f"transfer: freeze={freeze!r} leaves no trainable weight in model {model.name!r}; "
            f"it has {len(tuned.layers)} layers:\n{describe_layers(tuned)}"
        )
    # Flags first, compile second: the TensorFlow backend ignores flags changed afterwards.
    tuned.compile(
        optimizer=FusedAdam(float(learning_rate)), loss=_model_loss(model)
    )
    logger.info(
        "transfer: %s, frozen layers %s, %d training / %d validation spectra, %d epochs, "
        "lr %g", model.name, [tuned.layers[i].name for i in frozen], len(train), len(val),
        epochs, learning_rate,
    )
    all_callbacks = list(callbacks or [])
    if progress:
        all_callbacks.append(_EpochBar(int(epochs)))
    history = tuned.fit(
        flux[train],
        flux[train],
        validation_data=(flux[val], flux[val]) if len(val) else None,
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=True,
        callbacks=all_callbacks,
        verbose=0,
    )
    tuned.history = history
    tuned.transfer_info = {
        "source_model": model.name,
        "frozen_layers": list(frozen),
        "frozen_layer_names": [tuned.layers[i].name for i in frozen],
        "learning_rate": float(learning_rate),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "validation_split": float(validation_split),
        "seed": seed,
        "n_train": int(len(train)),
        "n_validation": int(len(val)),
        "train_identifiers": [identifiers[i] for i in train],
        "validation_identifiers": [identifiers[i] for i in val],
    }
    return tuned
