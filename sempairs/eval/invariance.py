"""Invariance probes: how much a backbone's embedding moves under controlled perturbations.

For each probe and strength ``s`` in [0, 1], every image is resized to the evaluation size (as
for feature extraction), perturbed, and the score is the mean cosine similarity between the
backbone embedding of the image and that of its perturbed version (computed in float64, so an
unchanged image scores exactly 1.0). Strength 0 leaves every image unchanged. Random choices
come from a generator seeded by ``seed`` afresh for each probe and strength, so every strength
of a probe perturbs the same places. Pixel values are in [0, 1]; results are clamped to it.

* ``occlusion``: random erasing. One rectangle of area ``s * H * W`` (aspect ratio log-uniform
  in [1/3, 3], clipped to the image, so at large ``s`` the area can be a little smaller), at a
  uniformly random position, is filled with uniform noise.
* ``background``: the outer frame of width ``round(H * (1 - sqrt(1 - s)) / 2)`` (the frame
  covers a fraction ``s`` of the area; ``s = 1`` replaces everything) is replaced by the same
  frame of another image of the batch (the next one; a batch of one keeps its own). Object masks
  are not available for CIFAR, so the central region stands in for the object and the frame for
  the background.
* ``background_noise``: the same frame filled with uniform noise instead.
* ``pattern``: an additive high-frequency texture, ``x + s * P`` with ``P`` a +-0.5 checkerboard
  of 2x2-pixel cells (period 4 px) on all channels, then clamped.
* ``brightness``: illumination intensity, ``x * (1 - s)`` (``s = 1`` is black).
* ``gamma``: illumination curve, ``x ** (1 + 2 s)`` (gamma 1 to 3: darker mid-tones, same black
  and white).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from sempairs.augment import eval_transform
from sempairs.errors import InputError
from sempairs.trained.features import extract_features

Probe = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device)


def occlude(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Erase one random rectangle of about ``strength`` of the area with uniform noise."""
    b, _, h, w = x.shape
    area = strength * h * w
    ratio = torch.exp(math.log(1 / 3) + math.log(9) * _uniform(b, generator, "cpu"))
    eh = (area * ratio).sqrt().round().clamp(max=h).long()
    ew = (area / ratio).sqrt().round().clamp(max=w).long()
    top = ((h - eh + 1) * _uniform(b, generator, "cpu")).long()
    left = ((w - ew + 1) * _uniform(b, generator, "cpu")).long()
    rows, cols = torch.arange(h), torch.arange(w)
    inside_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    inside_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None].to(x.device)
    return torch.where(mask, _uniform(x.shape, generator, x.device), x)


def _frame(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Mask (1, 1, H, W) of the outer frame covering a fraction ``strength`` of the area."""
    h, w = x.shape[-2:]
    keep = math.sqrt(max(0.0, 1.0 - strength))
    bh, bw = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    mask = torch.ones(1, 1, h, w, dtype=torch.bool, device=x.device)
    mask[..., bh : h - bh, bw : w - bw] = False
    return mask


def swap_background(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Replace the outer frame (``strength`` of the area) with the next image's frame."""
    return torch.where(_frame(x, strength), x.roll(1, dims=0), x)


def noise_background(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Replace the outer frame (``strength`` of the area) with uniform noise."""
    return torch.where(_frame(x, strength), _uniform(x.shape, generator, x.device), x)


def add_pattern(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Add ``strength`` times a +-0.5 checkerboard of 2x2-pixel cells, clamped to [0, 1]."""
    h, w = x.shape[-2:]
    rows, cols = torch.arange(h, device=x.device) // 2, torch.arange(w, device=x.device) // 2
    pattern = 0.5 - ((rows[:, None] + cols[None, :]) % 2).to(x.dtype)
    return (x + strength * pattern).clamp(0, 1)


def scale_brightness(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Darken: multiply by ``1 - strength``."""
    return x * (1.0 - strength)


def adjust_gamma(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Gamma curve ``x ** (1 + 2 * strength)``."""
    return x.pow(1.0 + 2.0 * strength)


PROBES: dict[str, Probe] = {
    "occlusion": occlude,
    "background": swap_background,
    "background_noise": noise_background,
    "pattern": add_pattern,
    "brightness": scale_brightness,
    "gamma": adjust_gamma,
}


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity in float64; exactly 1.0 for identical rows."""
    a, b = a.double(), b.double()
    return (a * b).sum(1) / ((a * a).sum(1) * (b * b).sum(1)).sqrt()


@torch.no_grad()
def invariance(backbone: nn.Module, images: torch.Tensor, size: int, mean, std,
               probes: Sequence[str] = tuple(PROBES), strengths: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
               seed: int = 0, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Mean cosine similarity of embeddings of uint8 ``images`` (N, 3, H, W) and their perturbed versions.

    Returns ``{probe: {strength: similarity}}`` (strengths as strings, for JSON).
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise InputError(f"unknown probe {unknown[0]!r}; the probes are: {', '.join(PROBES)}")
    bad = [s for s in strengths if not 0 <= s <= 1]
    if bad:
        raise InputError(f"strengths must be in [0, 1], got {bad[0]}")
    device = next(backbone.parameters()).device
    results: dict[str, dict[str, float]] = {name: {} for name in probes}
    zero, one = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    for start in range(0, len(images), batch_size):
        x = eval_transform(images[start : start + batch_size].to(device), size, zero, one)
        clean = extract_features(backbone, x, size, mean, std, batch_size)
        for name in probes:
            for strength in strengths:
                gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
                moved = extract_features(backbone, PROBES[name](x, strength, gen), size, mean, std, batch_size)
                key = f"{strength:g}"
                results[name][key] = results[name].get(key, 0.0) + cosine(clean, moved).sum().item()
    return {name: {key: total / len(images) for key, total in per.items()} for name, per in results.items()}
