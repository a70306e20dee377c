"""The standardisations around the latent regressors: of the labels they learn and of the
latents they read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mdwarf_zoo.labels import PARAMETERS
from mdwarf_zoo.pipeline.ensemble import PARAMETER_UNITS

__all__ = ["LabelScaler", "LatentScaler", "check_labels"]


@dataclass
class LabelScaler:
    """Per-parameter standardisation ``(label - mean) / std`` of the training labels.

    Args:
        names: parameter names, one per label column (default ``teff, logg, mh, vsini``).
        mean: per-column mean, physical units.
        std: per-column standard deviation (> 0), physical units.

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline import LabelScaler
        >>> scaler = LabelScaler.fit(np.array([[3000, 5.0], [3400, 4.8]]), ["teff", "logg"])
        >>> scaler.transform(np.array([[3200, 4.9]])).tolist()
        [[0.0, 0.0]]
    """

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if not len(self.names) == self.mean.size == self.std.size:
            raise ValueError(
                f"LabelScaler: {len(self.names)} names, {self.mean.size} means and "
                f"{self.std.size} standard deviations"
            )
        if not (
            np.all(np.isfinite(self.mean))
            and np.all(np.isfinite(self.std))
            and np.all(self.std > 0)
        ):
            raise ValueError(
                f"LabelScaler: means must be finite and standard deviations > 0, got "
                f"mean={self.mean.tolist()} std={self.std.tolist()}"
            )

    @classmethod
    def fit(cls, labels: np.ndarray, names: Sequence[str] = PARAMETERS) -> LabelScaler:
        """Mean and standard deviation of each column of ``labels`` (n, k).

        Raises:
            ValueError: for a wrong shape, non-finite labels or a constant column (naming it).
        """
        labels = check_labels(labels, len(names), "LabelScaler.fit: labels")
        std = labels.std(axis=0)
        constant = [name for name, s in zip(names, std, strict=True) if s == 0]
        if constant:
            raise ValueError(
                f"LabelScaler.fit: label column(s) {constant} are constant; a regressor for a "
                "constant parameter cannot be trained"
            )
        return cls(tuple(names), labels.mean(axis=0), std)

    def _columns(self, column: str | None) -> tuple[np.ndarray, np.ndarray]:
        if column is None:
            return self.mean, self.std
        if column not in self.names:
            raise ValueError(f"LabelScaler: unknown column {column!r}; have {self.names}")
        i = self.names.index(column)
        return self.mean[i], self.std[i]

    def transform(self, labels: np.ndarray, column: str | None = None) -> np.ndarray:
        """Standardise all columns, or the one named ``column`` (then ``labels`` is 1-D)."""
        mean, std = self._columns(column)
        return (np.asarray(labels, dtype=np.float64) - mean) / std

    def inverse_transform(self, scaled: np.ndarray, column: str | None = None) -> np.ndarray:
        """Back to physical units; the inverse of :meth:`transform`."""
        mean, std = self._columns(column)
        return np.asarray(scaled, dtype=np.float64) * std + mean

    def to_dict(self) -> dict:
        """JSON-ready: names, means, standard deviations and units."""
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "units": [str(PARAMETER_UNITS.get(name, "")) for name in self.names],
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> LabelScaler:
        """Rebuild from :meth:`to_dict` output."""
        return cls(tuple(config["names"]), config["mean"], config["std"])


@dataclass
class LatentScaler:
    """Per-dimension standardisation ``(latent - mean) / std`` of latent vectors.

    Fitted on the synthetic latents that train the regressors and stored with each regressor,
    so observed latents are moved by the same amounts. A ReLU bottleneck leaves some dimensions
    constant (dead units) and others spanning wide ranges; a constant dimension gets ``std = 1``
    and so maps to 0.

    Args:
        mean: (latent_dim,) per-dimension mean.
        std: (latent_dim,) per-dimension standard deviation (> 0).

    Examples:
        >>> import numpy as np
        >>> from mdwarf_zoo.pipeline import LatentScaler
        >>> scaler = LatentScaler.fit(np.array([[0.0, 2.0], [0.0, 4.0]]))
        >>> scaler.std.tolist(), scaler.transform(np.array([[0.0, 4.0]])).tolist()
        ([1.0, 1.0], [[0.0, 1.0]])
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if self.mean.size != self.std.size:
            raise ValueError(
                f"LatentScaler: {self.mean.size} means but {self.std.size} standard deviations"
            )
        if not (
            np.all(np.isfinite(self.mean))
            and np.all(np.isfinite(self.std))
            and np.all(self.std > 0)
        ):
            raise ValueError("LatentScaler: means must be finite and standard deviations > 0")

    @classmethod
    def fit(cls, latent_vectors: np.ndarray) -> LatentScaler:
        """Mean and standard deviation of each column of ``latent_vectors`` (n, latent_dim);
        a column whose spread is below 1e-6 of its scale (a dead unit) gets ``std = 1``."""
        x = np.asarray(latent_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"LatentScaler.fit: expected (n, latent_dim), got {x.shape}")
        std = x.std(axis=0)
        dead = std <= 1e-6 * np.maximum(1.0, np.abs(x).max(axis=0))
        return cls(x.mean(axis=0), np.where(dead, 1.0, std))

    def transform(self, latent_vectors: np.ndarray) -> np.ndarray:
        """Standardised latents, float32 (n, latent_dim).

        Raises:
            ValueError: when the latent dimension differs from the fitted one.
        """
        x = np.asarray(latent_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise ValueError(
                f"LatentScaler: fitted on {self.mean.size}-d latents, got shape {x.shape}"
            )
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready: means and standard deviations."""
        return {"kind": "standard", "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> LatentScaler:
        """Rebuild from :meth:`to_dict` output."""
        return cls(config["mean"], config["std"])


def check_labels(labels: Any, n_columns: int, what: str) -> np.ndarray:
    """``labels`` as a C-contiguous float64 (n, n_columns) copy, checked. A copy, because
    numpy's sums (mean, std) over a strided view can differ in the last bit from those over
    contiguous memory, and the scaling must not depend on how the caller sliced its table."""
    labels = np.array(labels, dtype=np.float64, order="C")
    if labels.ndim != 2 or labels.shape[1] != n_columns or labels.shape[0] == 0:
        raise ValueError(f"{what}: expected shape (n, {n_columns}), got {labels.shape}")
    if not np.all(np.isfinite(labels)):
        row = int(np.argwhere(~np.isfinite(labels))[0, 0])
        raise ValueError(f"{what}: row {row} has non-finite labels {labels[row].tolist()}")
    return labels
