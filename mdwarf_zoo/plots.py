"""Figures of the pipeline, saved as PNG (matplotlib's Agg canvas; no display needed).

* :func:`plot_latent_projection`: synthetic vs observed latents before and after transfer,
  projected to 2-D by PCA (fitted on the synthetic latents) or UMAP (when ``umap-learn`` is
  installed), MB24 Fig. 4 style.
* :func:`plot_predicted_vs_true`: predictions against known labels (synthetic test data or the
  simulator), with residuals.
* :func:`plot_literature_comparison`: our values against a literature table, per parameter.

matplotlib is an optional dependency (the ``plots`` extra); it is imported when a figure is
drawn, and the module never changes the user's pyplot backend.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "pca_projection",
    "plot_latent_projection",
    "plot_literature_comparison",
    "plot_predicted_vs_true",
]

logger = logging.getLogger(__name__)

_LABELS = {"teff": "Teff [K]", "logg": "log g [dex]", "mh": "[M/H] [dex]",
           "vsini": "v sin i [km/s]"}


def _figure(n_panels: int, size: float = 4.2):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mdwarf_zoo.plots needs matplotlib: pip install 'mdwarf-zoo[plots]'"
        ) from error
    figure = Figure(figsize=(size * n_panels, size), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    logger.info("wrote %s", path)
    return path


def pca_projection(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Project onto the first two principal components of ``reference``.

    Args:
        reference: (n, d) the set that defines the axes (the synthetic latents).
        *others: more (m, d) sets projected onto the same axes.

    Returns:
        [(n, 2), (m, 2), ...] projections, reference first.

    Raises:
        ValueError: for sets of different dimension or fewer than 2 dimensions.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 2 or reference.shape[1] < 2 or reference.shape[0] < 2:
        raise ValueError(
            f"pca_projection: reference must be (n >= 2, d >= 2), got {reference.shape}"
        )
    mean = reference.mean(axis=0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    axes = vt[:2].T
    out = []
    for array in (reference, *others):
        array = np.asarray(array, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != reference.shape[1]:
            raise ValueError(
                f"pca_projection: a set has shape {array.shape}; expected (m, "
                f"{reference.shape[1]})"
            )
        out.append((array - mean) @ axes)
    return out


def _umap_projection(reference: np.ndarray, *others: np.ndarray, seed: int) -> list[np.ndarray]:
    import umap

    reducer = umap.UMAP(n_components=2, random_state=seed)
    reducer.fit(np.vstack([reference, *others]))
    return [reducer.transform(np.asarray(a)) for a in (reference, *others)]


def _method(method: str) -> str:
    if method not in ("auto", "pca", "umap"):
        raise ValueError(f"method must be 'auto', 'pca' or 'umap', got {method!r}")
    if method == "pca":
        return "pca"
    try:
        import umap  # noqa: F401
    except ImportError:
        if method == "umap":
            raise ImportError("method='umap' needs umap-learn: pip install umap-learn") from None
        return "pca"
    return "umap"


def plot_latent_projection(
    synthetic_before: np.ndarray,
    observed_before: np.ndarray,
    synthetic_after: np.ndarray,
    observed_after: np.ndarray,
    path: str | os.PathLike,
    *,
    method: str = "auto",
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Two panels: synthetic and observed latents before and after transfer, in 2-D.

    "Before": observed spectra through the original encoder; "after": through the fine-tuned
    one (synthetic latents come from the original encoder in both, so the two synthetic sets
    are usually the same array).

    Args:
        synthetic_before, observed_before: (n, d) and (m, d) latents without transfer.
        synthetic_after, observed_after: the same with transfer.
        path: the PNG to write.
        method: ``"pca"`` (axes of the synthetic latents), ``"umap"`` (needs umap-learn), or
            ``"auto"`` (UMAP when installed, else PCA).
        seed: UMAP's random state.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: for a bad method or path, or latents of different dimensions.
        ImportError: for ``method="umap"`` without umap-learn, or without matplotlib.
    """
    chosen = _method(method)
    figure = _figure(2)
    panels = (("before transfer", synthetic_before, observed_before),
              ("after transfer", synthetic_after, observed_after))
    for i, (label, synthetic, observed) in enumerate(panels):
        if chosen == "umap":
            syn2, obs2 = _umap_projection(synthetic, observed, seed=seed)
        else:
            syn2, obs2 = pca_projection(synthetic, observed)
        axis = figure.add_subplot(1, 2, i + 1)
        axis.scatter(syn2[:, 0], syn2[:, 1], s=3, alpha=0.4, color="tab:blue",
                     label=f"synthetic ({len(syn2)})", rasterized=True)
        axis.scatter(obs2[:, 0], obs2[:, 1], s=9, alpha=0.8, color="tab:red",
                     label=f"observed ({len(obs2)})")
        axis.set_title(label)
        axis.set_xlabel(f"{chosen.upper()} 1")
        axis.set_ylabel(f"{chosen.upper()} 2")
        axis.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _errors(errors: object, n: int) -> np.ndarray | None:
    if errors is None:
        return None
    array = np.asarray(errors, dtype=np.float64)
    if array.shape == (n,):
        return array
    if array.shape == (2, n):
        return array
    raise ValueError(f"errors must be (n,) or (2, n) lower/upper, got {array.shape} for n={n}")


def _one_to_one(
    axis, x: np.ndarray, y: np.ndarray, parameter: str, title: str, x_name: str, y_name: str
) -> None:
    """The 1:1 line over the range of ``x`` and ``y``, the panel's title, and axis labels
    ``x_name`` and ``y_name`` before the parameter's label."""
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    axis.plot([low, high], [low, high], color="k", lw=0.8)
    axis.set_title(title, fontsize="medium")
    label = _LABELS.get(parameter, parameter)
    axis.set_xlabel(f"{x_name} {label}")
    axis.set_ylabel(f"{y_name} {label}")


def plot_predicted_vs_true(
    true: Mapping[str, np.ndarray],
    predicted: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    errors: Mapping[str, np.ndarray] | None = None,
    title: str | None = None,
) -> Path:
    """Predicted against true values, one panel per parameter, with bias and rms.

    Args:
        true: parameter -> (n,) known values (``teff``, ``logg``, ``mh``, ``vsini``).
        predicted: parameter -> (n,) predictions.
        path: the PNG to write.
        errors: parameter -> (n,) symmetric or (2, n) lower/upper errors.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: for parameters or lengths that do not match, or a bad path.
    """
    parameters = [p for p in true if p in predicted]
    if not parameters:
        raise ValueError(
            f"plot_predicted_vs_true: no parameter in both true {list(true)} and predicted "
            f"{list(predicted)}"
        )
    figure = _figure(len(parameters))
    for i, parameter in enumerate(parameters):
        x = np.asarray(true[parameter], dtype=np.float64)
        y = np.asarray(predicted[parameter], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"plot_predicted_vs_true: {parameter}: true {x.shape} and predicted {y.shape} "
                "must be the same 1-D length"
            )
        err = _errors((errors or {}).get(parameter), x.size)
        axis = figure.add_subplot(1, len(parameters), i + 1)
        axis.errorbar(x, y, yerr=err, fmt="o", ms=3, alpha=0.7, elinewidth=0.6)
        difference = y - x
        panel_title = f"bias {difference.mean():+.3g}, rms {np.sqrt(np.mean(difference**2)):.3g}"
        _one_to_one(axis, x, y, parameter, panel_title, "true", "predicted")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_literature_comparison(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
    path: str | os.PathLike,
    *,
    literature_name: str = "literature",
    title: str | None = None,
) -> Path:
    """Literature values against ours, one panel per parameter.

    Args:
        pairs: from :func:`mdwarf_zoo.diagnostics.match_literature`: parameter ->
            ``(ours, theirs, identifiers)``.
        path: the PNG to write.
        literature_name: axis label of the literature values.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: for an empty ``pairs`` or a bad path.
    """
    parameters = [p for p, (ours, _, _) in pairs.items() if len(ours)]
    if not parameters:
        raise ValueError("plot_literature_comparison: no matched stars to plot")
    figure = _figure(len(parameters))
    for i, parameter in enumerate(parameters):
        ours, theirs, _ = pairs[parameter]
        ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
        axis = figure.add_subplot(1, len(parameters), i + 1)
        axis.scatter(ours, theirs, s=8, alpha=0.7)
        difference = theirs - ours
        panel_title = (
            f"N {ours.size}, mean diff {difference.mean():+.3g}, "
            f"rms {np.sqrt(np.mean(difference**2)):.3g}"
        )
        _one_to_one(axis, ours, theirs, parameter, panel_title, "this work", literature_name)
    if title:
        figure.suptitle(title)
    return _save(figure, path)
