"""The SePP-ID semantic sampler: embed a dataset with a pretrained encoder, mine nearest neighbours as pairs.

The encoder is loaded by :func:`sempairs.trained.loading.load_backbone`: a sempairs checkpoint
(the run's backbone, resolution and normalisation) or a plain weights file of a torchvision
ResNet or a timm model, whose architecture is named. Pairs
are (anchor, neighbour) with the cosine similarity as score and ``source="mined"``; they may
cross classes (their precision is measured by :mod:`sempairs.pairs.report`). Train on them with
``pairs.add_files=[mined.csv]`` beside the augmented pairs.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sempairs.data.store import ImageStore
from sempairs.errors import InputError
from sempairs.trained.loading import LoadedBackbone
from sempairs.trained.features import cached_features
from sempairs.pairs.pairset import PairSet
from sempairs.pairs.search import Backend, knn_search, resolve_backend

MINED = "mined"


def embed(store: ImageStore, encoder: LoadedBackbone | nn.Module, size: int | None, mean, std, device=None,
          batch_size: int = 256) -> torch.Tensor:
    """L2-normalised float32 features (N, D) of every image of ``store`` on ``device`` (None: CUDA if available).

    ``size`` is the encoder's input resolution (None: the images' own). The features of a
    :class:`LoadedBackbone` go through the evaluation feature cache (:func:`cached_features`), so
    mining and evaluating one checkpoint on one split compute them once.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    (encoder.module if isinstance(encoder, LoadedBackbone) else encoder).to(device)
    feats = cached_features(encoder, store, size or store.size, mean, std, batch_size=batch_size,
                            channels_last=device.type == "cuda")
    return F.normalize(feats, dim=1)


def choose_anchors(num_images: int, anchors=None, seed: int = 0) -> np.ndarray:
    """Sorted anchor indices: all images (None), ``anchors`` drawn at random (an int, seeded), or the given indices."""
    if anchors is None:
        return np.arange(num_images, dtype=np.int64)
    if isinstance(anchors, (int, np.integer)):
        if not 0 < anchors <= num_images:
            raise InputError(f"anchors={anchors}: choose between 1 and the {num_images} images")
        return np.sort(np.random.default_rng(seed).choice(num_images, size=int(anchors), replace=False)).astype(np.int64)
    idx = np.unique(np.asarray(anchors, dtype=np.int64))
    if len(idx) == 0 or idx[0] < 0 or idx[-1] >= num_images:
        raise InputError(f"anchor indices must be a non-empty list within 0..{num_images - 1}")
    return idx


def check_similarity(name: str, value: float | None) -> None:
    """Refuse a cosine-similarity bound (``threshold``, ``duplicate_threshold``) that is not a number in -1..1."""
    if value is not None and not (math.isfinite(value) and -1 <= value <= 1):
        raise InputError(f"{name}={value}: a cosine similarity is a number from -1 to 1. Fix: give one in that range")


def image_groups(images: np.ndarray) -> np.ndarray:
    """Per image, the index of the first image with the same pixels (byte-identical images share one group)."""
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest(), i)
                     for i, img in enumerate(images)], dtype=np.int64)


def _neighbours(emb: torch.Tensor, queries: np.ndarray, k: int, depth: int, duplicate_threshold, backend, groups):
    """Each query's k nearest non-duplicate neighbours: (row, neighbour, score) arrays, and its near-duplicates.

    Near-duplicates are neighbours at cosine >= ``duplicate_threshold`` and, with ``groups``, the
    byte-identical images (whose float cosine may fall just short of 1).
    """
    q = emb if len(queries) == len(emb) else emb[torch.from_numpy(queries).to(emb.device)]  # queries are sorted and unique
    scores, idx = knn_search(q, emb, depth, True, backend, query_index=queries)
    scores, idx = scores.cpu().numpy(), idx.cpu().numpy()
    dup = np.zeros(scores.shape, bool)
    if duplicate_threshold is not None:
        dup = scores >= duplicate_threshold
        if groups is not None:
            dup |= groups[idx] == groups[queries][:, None]
    keep = ~dup & (np.cumsum(~dup, axis=1) <= k)
    rows, cols = np.nonzero(keep)
    drows, dcols = np.nonzero(dup)
    return rows, idx[rows, cols], scores[rows, cols], (queries[drows], idx[drows, dcols])


def _directed(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Keys of the directed relation "b is a neighbour of a"."""
    return a * n + b


def _unordered(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Keys of unordered pairs {a, b}."""
    return _directed(np.minimum(a, b), np.maximum(a, b), n)


def mine_pairs(
    embeddings,
    k: int = 1,
    threshold: float | None = None,
    mutual: bool = False,
    anchors=None,
    duplicate_threshold: float | None = 0.99,
    backend: Backend = "auto",
    *,
    seed: int = 0,
    lookahead: int = 8,
    images: np.ndarray | None = None,
    meta: dict | None = None,
) -> PairSet:
    """Semantic pairs from nearest neighbours: each anchor with its ``k`` most cosine-similar images.

    kNN(i) is the ``k`` nearest images of i other than itself and its near-duplicates (cosine
    >= ``duplicate_threshold``, and any image byte-identical to i among ``images``, the uint8
    images the embeddings were made from; None: no near-duplicates), searched ``k + lookahead`` deep so that up to
    ``lookahead`` near-duplicates can be skipped. A pair (i, j) is kept when its cosine is at
    least ``threshold`` (None: any) and, with ``mutual``, when also i is in kNN(j). (i, j) and
    (j, i) count once (anchor: the first anchor met, in index order). ``anchors``: None (every
    image), a number drawn with ``seed``, or a list of indices. ``meta["counts"]`` holds, in
    pipeline order: anchors, candidates (k per anchor), below_threshold, not_mutual, reversed_duplicates,
    pairs, anchors_with_pair, near_duplicate_pairs (distinct, skipped), anchors_with_near_duplicate
    and anchors_short (fewer than k candidates: more than ``lookahead`` near-duplicates).
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    check_similarity("threshold", threshold)
    check_similarity("duplicate_threshold", duplicate_threshold)
    emb = torch.as_tensor(embeddings).float()
    n = len(emb)
    groups = None if images is None else image_groups(images)
    anchor_idx = choose_anchors(n, anchors, seed)
    depth = k + (lookahead if duplicate_threshold is not None else 0)
    rows, pos, score, (dup_a, dup_b) = _neighbours(emb, anchor_idx, k, depth, duplicate_threshold, backend, groups)
    anc = anchor_idx[rows]
    counts = {"anchors": len(anchor_idx), "candidates": len(anc)}

    keep = np.ones(len(anc), bool) if threshold is None else score >= threshold
    counts["below_threshold"] = int((~keep).sum())
    if mutual:
        knn_keys = _directed(anc, pos, n)
        others = np.setdiff1d(pos[keep], anchor_idx)
        if len(others):
            o_rows, o_pos, _, _ = _neighbours(emb, others, k, depth, duplicate_threshold, backend, groups)
            knn_keys = np.union1d(knn_keys, _directed(others[o_rows], o_pos, n))
        reciprocal = np.isin(_directed(pos, anc, n), knn_keys)
        counts["not_mutual"] = int((keep & ~reciprocal).sum())
        keep &= reciprocal
    else:
        counts["not_mutual"] = 0
    anc, pos, score = anc[keep], pos[keep], score[keep]
    _, first = np.unique(_unordered(anc, pos, n), return_index=True)
    first.sort()
    counts["reversed_duplicates"] = len(anc) - len(first)
    anc, pos, score = anc[first], pos[first], score[first]
    counts["pairs"] = len(anc)
    counts["anchors_with_pair"] = int(np.isin(anchor_idx, np.concatenate([anc, pos])).sum())
    counts["near_duplicate_pairs"] = len(np.unique(_unordered(dup_a, dup_b, n)))
    counts["anchors_with_near_duplicate"] = len(np.unique(dup_a))
    counts["anchors_short"] = int((np.bincount(rows, minlength=len(anchor_idx)) < min(k, n - 1)).sum())

    rule = f"{'mutual ' if mutual else ''}top-{k} cosine neighbours"
    if threshold is not None:
        rule += f", cosine >= {threshold}"
    if duplicate_threshold is not None:
        rule += f", near-duplicates (cosine >= {duplicate_threshold}{' or identical pixels' if images is not None else ''}) skipped"
    info = {
        "builder": MINED, "rule": rule, "k": k, "threshold": threshold, "mutual": mutual,
        "duplicate_threshold": duplicate_threshold, "lookahead": lookahead, "seed": seed,
        "backend": resolve_backend(backend), "images": n, "counts": counts,
    }
    if anchors is not None:
        info["anchor_indices"] = anchor_idx.tolist()
    return PairSet.build(anc, pos, score=score, source=MINED, meta={**info, **(meta or {})})
