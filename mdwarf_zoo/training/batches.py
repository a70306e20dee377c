"""The one batch order of the package, and the seeded splits.

Epoch ``e`` of a model trained with seed ``s`` visits its ``n`` training rows in the order
:func:`epoch_order` ``(n, s, e)``, ``numpy.random.default_rng([s, e]).permutation(n)``: a
function of ``(s, e)`` alone, on every strategy, so a resumed or distributed run takes the same
batches as a plain one.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_positive_int", "check_seed", "epoch_order", "split_indices", "steps_per_epoch"]


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be an integer >= 0, got {value!r}")
    return int(value)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random ``(train, validation)`` split of ``n`` rows, each sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n))) if fraction > 0 else 0
    if n - n_val < 1:
        raise ValueError(f"{n} spectra leave none to train on with validation split {fraction}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples: a permutation of
    ``range(num_examples)`` that depends on ``(seed, epoch)`` only
    (``numpy.random.default_rng([seed, epoch]).permutation(num_examples)``).

    Args:
        num_examples: number of examples.
        seed: the shuffling seed (an integer >= 0).
        epoch: the epoch index (0-based, an integer >= 0).

    Returns:
        An ``int64`` array holding each index once.

    Examples:
        >>> from mdwarf_zoo.training.loop import epoch_order
        >>> sorted(epoch_order(4, seed=0, epoch=1).tolist())
        [0, 1, 2, 3]
    """
    num_examples = check_positive_int("num_examples", num_examples)
    seed = check_seed(seed)
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    return np.random.default_rng([seed, int(epoch)]).permutation(num_examples)


def steps_per_epoch(num_examples: int, global_batch_size: int, drop_remainder: bool = False) -> int:
    """Optimisation steps in one epoch of ``num_examples`` at ``global_batch_size``.

    Raises:
        ValueError: for a non-positive size, or when ``drop_remainder`` leaves no batch.
    """
    num_examples = check_positive_int("num_examples", num_examples)
    global_batch_size = check_positive_int("global_batch_size", global_batch_size)
    steps = num_examples // global_batch_size
    if not drop_remainder and num_examples % global_batch_size:
        steps += 1
    if steps == 0:
        raise ValueError(
            f"drop_remainder=True with {num_examples} examples and global_batch_size "
            f"{global_batch_size} leaves no batch; lower global_batch_size"
        )
    return steps
