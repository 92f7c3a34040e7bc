"""Backbone features of a whole image store, batched on the model's device, optionally cached on disk."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sempairs.atomic import atomic_open
from sempairs.augment import eval_transform
from sempairs.data import cache
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsWarning
from sempairs.precision import inference_autocast, inference_uses_bf16
from sempairs.trained.loading import LoadedBackbone


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    size: int,
    mean,
    std,
    batch_size: int = 1024,
    channels_last: bool = False,
) -> torch.Tensor:
    """float32 features (N, D) of uint8 images (N, 3, H, W), in eval mode, under :func:`inference_autocast`.

    Images may live on any device; each batch is moved to the backbone's device. Under bf16 the
    batches go channels-last (``channels_last`` forces it in float32 too).
    """
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    autocast = inference_autocast(device)
    channels_last = channels_last or inference_uses_bf16(device)
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = eval_transform(images[start : start + batch_size].to(device, non_blocking=True), size, mean, std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                out.append(backbone(x).float())
    finally:
        backbone.train(was_training)
    return torch.cat(out)


def features_key(backbone: LoadedBackbone, store: ImageStore, size: int, mean, std) -> str:
    """Hex key of ``store``'s features under ``backbone``: its file (path, size, mtime), the data, the view."""
    source = Path(store.source)
    parts = {
        "weights": cache.fingerprint(backbone.path),
        "arch": backbone.arch,
        "source": cache.fingerprint(source) if source.exists() else store.source,
        "split": store.split,
        "images": list(store.images.shape),
        "ids": hashlib.sha256("\n".join(store.ids).encode()).hexdigest(),
        "size": size,
        "mean": list(mean),
        "std": list(std),
        "bf16": inference_uses_bf16(next(backbone.module.parameters()).device),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(
    backbone: LoadedBackbone | nn.Module,
    store: ImageStore,
    size: int | None = None,
    mean=None,
    std=None,
    cache_dir: str | Path | None = None,
    batch_size: int = 1024,
    channels_last: bool = False,
) -> torch.Tensor:
    """Features (N, D) of every image of ``store``, on the backbone's device, read from / written to a cache.

    A :class:`LoadedBackbone` is cached by its weights file (path, size, mtime), the store's source,
    split and images, and the view (``size``/``mean``/``std``, default the backbone's), as
    ``<cache_dir>/<checkpoint stem>-<split>-<key>.npy``; ``cache_dir`` defaults to ``features/``
    beside the checkpoint. A bare ``nn.Module`` has no file to key on: its features are computed
    every time.
    """
    if isinstance(backbone, nn.Module):
        if size is None or mean is None or std is None:
            raise ValueError("a bare nn.Module needs size, mean and std; a LoadedBackbone (load_backbone) brings its own")
        return extract_features(backbone, store.tensor(), size, mean, std, batch_size, channels_last)
    size, mean, std = size or backbone.size, mean or backbone.mean, std or backbone.std
    device = next(backbone.module.parameters()).device
    folder = Path(cache_dir) if cache_dir is not None else backbone.path.parent / "features"
    file = folder / f"{backbone.path.stem}-{store.split}-{features_key(backbone, store, size, mean, std)}.npy"
    if file.exists():
        return torch.from_numpy(np.load(file)).to(device)
    feats = extract_features(backbone.module, store.tensor(), size, mean, std, batch_size, channels_last)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(file, "wb") as f:
            np.save(f, feats.cpu().numpy())
    except OSError as exc:
        warnings.warn(f"could not cache features in {folder} ({exc}). Fix: pass a writable cache_dir", SempairsWarning,
                      stacklevel=2)
    return feats
