"""The architecture registry: named variants of every model family.

A variant is a function that returns a built, compiled ``keras.Model``; the
``@register_model`` decorator records it under its function name (timm-style).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture variant.

    Attributes:
        name: the registry name, e.g. ``"dense_ae_1024"``.
        builder: callable returning the built model; keyword arguments override defaults.
        kind: ``"autoencoder"`` or ``"regressor"``.
        description: one line for ``mdwarf-zoo models``.
    """

    name: str
    builder: Callable[..., keras.Model]
    kind: str
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
#: The kinds of architecture (a zoo model's ``kind``).
KINDS = ("autoencoder", "regressor")


def register_model(kind: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Register a variant function under its own name.

    Args:
        kind: ``"autoencoder"`` or ``"regressor"``.

    Returns:
        A decorator that records the function and returns it unchanged.

    Raises:
        ValueError: for an unknown kind or a name registered twice.
    """
    if kind not in KINDS:
        raise ValueError(f"register_model: kind must be one of {KINDS}, got {kind!r}")

    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"register_model: {name!r} is already registered")
        description = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[name] = ModelEntry(name, builder, kind, description)
        return builder

    return decorator


def list_models(pattern: str | None = None, *, kind: str | None = None) -> list[str]:
    """Names of the registered architectures, sorted.

    Args:
        pattern: an ``fnmatch`` pattern such as ``"dense_ae*"``; ``None`` lists all.
        kind: keep only ``"autoencoder"`` or ``"regressor"`` variants.

    Returns:
        The matching names.

    Examples:
        >>> import mdwarf_zoo
        >>> mdwarf_zoo.list_models("dense_ae_1*")
        ['dense_ae_1024', 'dense_ae_1280', 'dense_ae_1536', 'dense_ae_1792']
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"list_models: kind must be one of {KINDS} or None, got {kind!r}")
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if kind is not None:
        names = [name for name in names if _REGISTRY[name].kind == kind]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises a ``ValueError`` with close names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}"
        ) from None


#: Training precisions ``create_model`` accepts (Keras dtype policies).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def create_model(name: str, *, precision: str | None = None, **overrides: Any) -> keras.Model:
    """Build a registered architecture.

    Args:
        name: a name from :func:`list_models`.
        precision: the Keras dtype policy the layers are built with; ``None`` (default) keeps
            the global policy (``keras.config.dtype_policy()``, float32 unless set). ``"float32"``;
            ``"mixed_bfloat16"`` computes in bfloat16 and keeps float32 weights and a float32
            loss (the penalties too): on CPUs with AMX or AVX512-BF16 it trains
            ``dense_ae_1024`` ~1.3x faster than float32
            (``benchmarks/bench_training_throughput.py``); ``"mixed_float16"`` for GPUs. The
            weights stay float32, so a model saved after mixed-precision training loads, and
            predicts, in float32.
        **overrides: constructor arguments replacing the variant's defaults
            (e.g. ``input_length=4001``, ``seed=0``).

    Returns:
        A built ``keras.Model``, compiled with its own loss.

    Raises:
        ValueError: for an unknown name (the message lists close names), an unknown precision
            or a bad argument.

    Examples:
        >>> import mdwarf_zoo
        >>> model = mdwarf_zoo.create_model("dense_ae_1024")
        >>> model.count_params()
        9874125
    """
    entry = get_entry(name)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(
            f"create_model({name!r}): precision={precision!r} is not one of "
            f"{', '.join(PRECISIONS)}"
        )
    if precision is None:
        return entry.builder(**overrides)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return entry.builder(**overrides)
    finally:
        keras.config.set_dtype_policy(previous)
