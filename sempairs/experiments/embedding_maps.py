"""2-D maps of feature vectors for the reports: t-SNE through openTSNE, or UMAP through umap-learn.

``tsne``: openTSNE's ``TSNE`` (Poličar et al., 2024) with its defaults (PCA initialisation,
perplexity 30, 250 early-exaggeration iterations then 500, learning rate N / exaggeration,
Barnes-Hut gradients below 10,000 points). ``umap``: umap-learn's ``UMAP`` with its
defaults (15 neighbours, min_dist 0.1), installed by the ``umap`` extra. Both run single-threaded
under a fixed seed, so a map is the same at every call (docs/benchmarks.md compares their time
and trustworthiness with the exact t-SNE they replace).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from sempairs.errors import InputError, MissingPackage

MAP_METHODS = ("tsne", "umap")
PERPLEXITY, NEIGHBOURS, SEED = 30.0, 15, 0
METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}
METHOD_SETTINGS = {"tsne": f"openTSNE, perplexity {PERPLEXITY:g}, seed {SEED}",
                   "umap": f"umap-learn, {NEIGHBOURS} neighbours, seed {SEED}"}


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from openTSNE import TSNE

    perplexity = min(PERPLEXITY, (len(x) - 1) / 3)  # openTSNE needs 3 perplexity neighbours per point
    return np.asarray(TSNE(perplexity=perplexity, n_jobs=1, random_state=seed, verbose=False).fit(x))


def require_method(method: str) -> str:
    """``method`` if it is a map method whose package is installed (UMAP: umap-learn), else a one-line error."""
    if method not in MAP_METHODS:
        raise InputError(f"unknown map method {method!r}; use {' or '.join(MAP_METHODS)}")
    if method == "umap" and importlib.util.find_spec("umap") is None:
        raise MissingPackage("UMAP maps need umap-learn: pip install 'sempairs[umap]' (or umap-learn), "
                             "or use the t-SNE map (embedding_method: tsne)")
    return method


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap

    neighbours = min(NEIGHBOURS, len(x) - 1)
    return umap.UMAP(n_neighbors=neighbours, random_state=seed, n_jobs=1).fit_transform(x)


def embed_2d(features: torch.Tensor | np.ndarray, method: str = "tsne", seed: int = SEED) -> np.ndarray:
    """float64 coordinates (N, 2) of ``features`` (N, D) by ``method`` (``tsne`` or ``umap``), fixed by ``seed``."""
    require_method(method)
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if x.ndim != 2 or len(x) < 4:
        raise InputError(f"a 2-D map needs at least 4 feature vectors (N, D), got shape {x.shape}")
    coords = (_tsne if method == "tsne" else _umap)(x.astype(np.float64 if method == "tsne" else np.float32), seed)
    return coords.astype(np.float64)
