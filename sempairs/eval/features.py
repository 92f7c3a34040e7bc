"""Backbone features of a whole image store, batched on the model's device."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from sempairs.augment import eval_transform


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
    """float32 features (N, D) of uint8 images (N, 3, H, W), in eval mode, bf16 autocast on CUDA.

    Images may live on any device; each batch is moved to the backbone's device.
    """
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
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
