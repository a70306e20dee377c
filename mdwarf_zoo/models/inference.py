"""Calling zoo models on arrays: the latents of spectra, and batched direct calls."""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["call_in_batches", "encode"]


def encode(autoencoder: keras.Model, flux: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Latent vectors of ``flux`` through ``autoencoder.encoder`` (the mean for a VAE).

    Args:
        autoencoder: a zoo autoencoder (with an ``encoder``), or an encoder model itself.
        flux: (n, pixels) preprocessed spectra.
        batch_size: prediction batch size.

    Returns:
        float32 (n, latent_dim).
    """
    encoder = getattr(autoencoder, "encoder", autoencoder)
    flux = np.asarray(flux, dtype=np.float32)
    return call_in_batches(encoder, flux, batch_size)


def call_in_batches(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model(x)`` in batches, as float32 numpy. A direct call, not ``Model.predict``: for the
    few hundred spectra of an ensemble, ``predict``'s per-call set-up (data adapter, tracing a
    predict function per model) cost more than the arithmetic (26 x 80 x 4 MB24 ensemble:
    ~90 s -> see benchmarks/RESULTS.md)."""
    if len(x) == 0:
        return np.asarray(model(x[:1], training=False), dtype=np.float32)[:0]
    parts = [
        np.asarray(model(x[first : first + batch_size], training=False), dtype=np.float32)
        for first in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts)
