"""Figures: PNG files written, PCA projection correct, arguments checked."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from mdwarf_zoo.plots import (  # noqa: E402
    pca_projection,
    plot_latent_projection,
    plot_literature_comparison,
    plot_predicted_vs_true,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_pca_projection_finds_the_main_axes():
    rng = np.random.default_rng(0)
    # Variance 100 along (1, 1, 0)/sqrt(2), 1 along z, 0.01 along (1, -1, 0)/sqrt(2).
    base = rng.normal(0, 1, (500, 3)) * [10.0, 0.1, 1.0]
    rotation = np.array([[1, 1, 0], [1, -1, 0], [0, 0, np.sqrt(2)]]) / np.sqrt(2)
    reference = base @ rotation
    projected, other = pca_projection(reference, reference[:5] + 1.0)
    assert projected.shape == (500, 2) and other.shape == (5, 2)
    assert np.var(projected[:, 0]) == pytest.approx(np.var(base[:, 0]), rel=0.01)
    assert np.var(projected[:, 1]) == pytest.approx(np.var(base[:, 2]), rel=0.05)
    with pytest.raises(ValueError, match="expected"):
        pca_projection(reference, np.zeros((3, 4)))


def test_latent_projection_png(tmp_path):
    rng = np.random.default_rng(1)
    synthetic = rng.normal(0, 1, (200, 8))
    before, after = rng.normal(2, 1, (30, 8)), rng.normal(0.1, 1, (30, 8))
    path = plot_latent_projection(synthetic, before, synthetic, after,
                                  tmp_path / "latents.png", method="pca", title="toy")
    assert is_png(path)
    auto = plot_latent_projection(synthetic, before, synthetic, after, tmp_path / "auto.png")
    assert is_png(auto)
    with pytest.raises(ValueError, match="method must be"):
        plot_latent_projection(synthetic, before, synthetic, after, tmp_path / "x.png",
                               method="tsne")
    with pytest.raises(ValueError, match="must end in .png"):
        plot_latent_projection(synthetic, before, synthetic, after, tmp_path / "x.pdf",
                               method="pca")


def test_predicted_vs_true_and_literature_png(tmp_path):
    rng = np.random.default_rng(2)
    true = {"teff": rng.uniform(2400, 4000, 40), "logg": rng.uniform(4.7, 5.3, 40)}
    predicted = {p: v + rng.normal(0, 0.01 * v.std(), 40) for p, v in true.items()}
    errors = {"teff": np.full((2, 40), 30.0), "logg": np.full(40, 0.04)}
    path = plot_predicted_vs_true(true, predicted, tmp_path / "sub" / "pvt.png", errors=errors)
    assert is_png(path)
    with pytest.raises(ValueError, match="no parameter in both"):
        plot_predicted_vs_true({"teff": [1.0]}, {"mh": [1.0]}, tmp_path / "y.png")
    with pytest.raises(ValueError, match="errors must be"):
        plot_predicted_vs_true(true, predicted, tmp_path / "z.png",
                               errors={"teff": np.ones(3)})
    pairs = {"teff": (true["teff"], predicted["teff"], [f"J{i}" for i in range(40)])}
    assert is_png(plot_literature_comparison(pairs, tmp_path / "lit.png",
                                             literature_name="Marfil+21"))
    with pytest.raises(ValueError, match="no matched stars"):
        plot_literature_comparison({"teff": (np.array([]), np.array([]), [])},
                                   tmp_path / "empty.png")
