"""Batched SimCLR/BYOL-style augmentation with per-sample random parameters.

Every op runs on the whole batch at once (CPU or CUDA tensors); per-sample randomness is drawn
from one ``torch.Generator`` living on the images' device, so a view is reproducible from the
generator's seed. The ops follow torchvision's ``transforms.v2`` definitions; see each function.

Multi-crop (DINO, Caron et al. 2021): ``local_crops`` > 0 adds that many small *local* views per
pair to the two global ones, made by the same pipeline at ``local_size`` with crop areas from
``local_scale`` (see :meth:`AugmentConfig.local_view`). DINO's defaults (facebookresearch/dino,
``main_dino.py``): 2 global crops of 224 px with scale (0.4, 1), 8 local crops of 96 px with scale
(0.05, 0.4); without local crops it recommends a wider global range (0.14, 1). solo-learn's CIFAR
DINO recipe (``scripts/pretrain/cifar/dino.yaml`` with ``augmentations/asymmetric.yaml``) uses two
32 px crops of scale (0.08, 1) and no local crops, so there is no published small-image local size:
``local_size`` defaults to DINO's ratio 96/224 of ``size`` rounded up to a multiple of 8 (16 px at
32, 32 px at 64, 96 px at 224), which ViT patch sizes 4 and 8 divide.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from sempairs.strict import Strict

# Luma weights of torchvision's ``rgb_to_grayscale`` (ITU-R 601-2; torchvision uses 0.2989 for red).
LUMA = (0.2989, 0.587, 0.114)
# Op ids used by ``sample_jitter``/``color_jitter``: an op's id is its position here.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(len(JITTER_OPS))


def _prob(default: float):
    return Field(default=default, ge=0.0, le=1.0)


def default_blur_kernel(size: int) -> int:
    """Odd Gaussian-blur kernel of about 10 % of the image side (as SimCLR), at least 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


# Settings both global views share (the batch is one size, one normalisation, one multi-crop setting).
VIEW2_FIXED = frozenset({"size", "mean", "std", "local_crops", "local_size", "local_scale", "view2"})


def default_local_size(size: int) -> int:
    """Side of DINO's local crops for global crops of ``size``: 96/224 of it, rounded up to a multiple of 8."""
    return min(size, math.ceil(size * 96 / 224 / 8) * 8)


class AugmentConfig(Strict):
    """One view's augmentation; SimCLR defaults for 32 px images. p=0 / crop=False switch an op off.

    ``local_crops`` > 0 (multi-crop, methods that support it: DINO) adds that many local views per
    pair, ``ceil(n/2)`` of the anchor and ``floor(n/2)`` of the positive, at ``local_size`` (None:
    :func:`default_local_size`) with crop areas from ``local_scale``.

    ``view2`` makes the two global views asymmetric, as BYOL and DINO do: overrides of the op
    settings for the second view (the pair's positive member), e.g. ``{blur_p: 0.1, solarize_p:
    0.2}``; None: both views alike (SimCLR). See :meth:`second_view`.
    """


    size: int = Field(default=32, gt=0)
    crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = _prob(0.5)
    jitter_p: float = _prob(0.8)
    brightness: float = Field(default=0.4, ge=0.0)
    contrast: float = Field(default=0.4, ge=0.0)
    saturation: float = Field(default=0.4, ge=0.0)
    hue: float = Field(default=0.1, ge=0.0, le=0.5)
    grayscale_p: float = _prob(0.2)
    blur_p: float = _prob(0.0)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = Field(default=None, gt=0)
    solarize_p: float = _prob(0.0)
    solarize_threshold: float = _prob(0.5)
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
    local_crops: int = Field(default=0, ge=0)
    local_size: int | None = Field(default=None, gt=0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    view2: dict[str, Any] | None = None

    @field_validator("crop_scale", "crop_ratio", "blur_sigma", "local_scale")
    @classmethod
    def _ordered_positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"must be a range 0 < low <= high, got {value}")
        return value

    @field_validator("crop_scale", "local_scale")
    @classmethod
    def _fraction(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] > 1:
            raise ValueError(f"area fractions must be <= 1, got {value}")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _check_blur_kernel(self) -> "AugmentConfig":
        k = self.blur_kernel_size
        if k % 2 == 0 or k // 2 >= self.size:
            raise ValueError(f"blur_kernel must be odd with blur_kernel // 2 < size={self.size}, got {k}")
        return self

    @model_validator(mode="after")
    def _check_view2(self) -> "AugmentConfig":
        if self.view2:
            shared = sorted(set(self.view2) & VIEW2_FIXED)
            if shared:
                raise ValueError(f"view2 cannot change {', '.join(shared)}: both global views share "
                                 f"{', '.join(sorted(VIEW2_FIXED))}")
            self.second_view()  # an unknown key or a bad value fails here, naming it
        return self

    @property
    def blur_kernel_size(self) -> int:
        """``blur_kernel``, or the default for ``size`` when it is None."""
        return self.blur_kernel if self.blur_kernel is not None else default_blur_kernel(self.size)

    @property
    def local_crop_size(self) -> int:
        """``local_size``, or the default for ``size`` when it is None."""
        return self.local_size if self.local_size is not None else default_local_size(self.size)

    def second_view(self) -> "AugmentConfig":
        """The config of the second global view: this one with the ``view2`` overrides (itself when None)."""
        if not self.view2:
            return self
        return AugmentConfig(**{**self.model_dump(), **self.view2, "view2": None})

    def local_view(self) -> "AugmentConfig":
        """The config of a local view: this pipeline at ``local_crop_size`` with crop areas from ``local_scale``.

        The blur kernel is the default for the local size (an explicit ``blur_kernel`` is meant for
        the global views).
        """
        update = dict(size=self.local_crop_size, crop_scale=self.local_scale, blur_kernel=None, local_crops=0, local_size=None,
                      view2=None)
        return AugmentConfig(**{**self.model_dump(), **update})


_BYOL = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, flip_p=0.5, jitter_p=0.8, grayscale_p=0.2)
PRESETS: dict[str, dict] = {
    "simclr": {},
    # BYOL (Grill et al. 2020, table 6): view 1 always blurred, never solarised; view 2 blurred
    # with p=0.1, solarised with p=0.2.
    "byol": {**_BYOL, "blur_p": 1.0, "solarize_p": 0.0, "view2": {"blur_p": 0.1, "solarize_p": 0.2}},
    "crop_only": dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0),
    "no_grayscale": dict(grayscale_p=0.0),
    "no_color": dict(jitter_p=0.0, grayscale_p=0.0),  # crops, flips (and blur where set), no colour change
    # DINO's multi-crop (main_dino.py): 2 global crops of scale (0.4, 1), 8 local of (0.05, 0.4),
    # its colour jitter (saturation 0.2); no blur, as solo-learn's 32 px recipes.
    "dino_multicrop": {**_BYOL, "crop_scale": (0.4, 1.0), "local_crops": 8, "local_scale": (0.05, 0.4)},
}


def preset(name: str, **overrides) -> AugmentConfig:
    """The AugmentConfig of preset ``name`` (see PRESETS) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; valid: {', '.join(sorted(PRESETS))}")
    return AugmentConfig(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------- helpers


def _uniform(shape, low: float, high: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(shape, generator=generator, device=device).mul_(high - low).add_(low)


def _coin(batch: int, p: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(batch, generator=generator, device=device) < p


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample select: ``a[i]`` where ``mask[i]`` else ``b[i]``."""
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _to_float(images: Tensor) -> Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _resize(x: Tensor, size: int) -> Tensor:
    """Bilinear antialiased resize to (size, size); identity if already that size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _normalize(x: Tensor, mean, std) -> Tensor:
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub(mean).div_(std)


def _luma(x: Tensor) -> Tensor:
    """Grayscale (B,1,H,W) of RGB (B,3,H,W), as torchvision's ``rgb_to_grayscale``."""
    r, g, b = x.unbind(dim=1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


# ----------------------------------------------------------------------------- crop + flip


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device=None,
    attempts: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample boxes (top, left, h, w) as torchvision's ``RandomResizedCrop`` draws them.

    ``attempts`` candidates (area fraction ~ U(scale), log aspect ~ U(log ratio)) are drawn per
    sample at once and the first that fits is kept; samples with none fall back to the centre crop
    with the aspect clamped to ``ratio``. ``device`` defaults to the generator's.
    """
    if device is None:
        device = generator.device if generator is not None else "cpu"
    area = _uniform((batch, attempts), scale[0], scale[1], generator, device).mul_(height * width)
    aspect = _uniform((batch, attempts), math.log(ratio[0]), math.log(ratio[1]), generator, device).exp_()
    w = (area * aspect).sqrt_().round_().long()
    h = (area / aspect).sqrt_().round_().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting candidate
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    offset = torch.rand((2, batch), generator=generator, device=device)
    top = (offset[0] * (height - h + 1)).long()
    left = (offset[1] * (width - w + 1)).long()

    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fb_w, fb_h = int(round(height * max(ratio))), height
    else:
        fb_w, fb_h = width, height
    ok = fits.any(dim=1)
    fallback = torch.tensor([(height - fb_h) // 2, (width - fb_w) // 2, fb_h, fb_w], device=device)
    return tuple(torch.where(ok, v, fb) for v, fb in zip((top, left, h, w), fallback))


def resized_crop(images: Tensor, boxes: tuple[Tensor, ...], size: int, flip: Tensor | None = None) -> Tensor:
    """Crop each image to its box (top, left, h, w), resize to (size, size), mirror where ``flip``.

    One ``grid_sample`` for the batch. Sample positions are those of bilinear ``interpolate``
    (align_corners=False) on the cropped image, clamped to the box, so the result equals
    torchvision's ``resized_crop(..., antialias=False)``; downscaling is not antialiased.
    """
    top, left, h, w = (v.to(images.device) for v in boxes)
    height, width = images.shape[-2:]
    centres = torch.arange(size, device=images.device, dtype=images.dtype).add_(0.5) / size

    def axis(start: Tensor, extent: Tensor, full: int) -> Tensor:
        start, extent = start.to(images.dtype)[:, None], extent.to(images.dtype)[:, None]
        pos = torch.clamp(start + centres * extent - 0.5, min=start, max=start + extent - 1)
        return (2 * pos + 1) / full - 1  # pixel index -> grid_sample coordinate

    xs, ys = axis(left, w, width), axis(top, h, height)
    if flip is not None:
        xs = torch.where(flip[:, None], xs.flip(-1), xs)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------- colour


def sample_jitter(
    batch: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    generator: torch.Generator | None = None,
    device=None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-sample ColorJitter parameters: factors per active op and a random op order per sample.

    Factors are U[max(0, 1-s), 1+s] for brightness/contrast/saturation and U[-h, h] for hue, as
    torchvision's ``ColorJitter``; ops of strength 0 are left out. ``order`` is (B, n_active), each
    row a random permutation of the active op ids (positions in JITTER_OPS).
    """
    if device is None:
        device = generator.device if generator is not None else "cpu"
    strengths = dict(zip(JITTER_OPS, (brightness, contrast, saturation, hue)))
    factors = {}
    for name, s in strengths.items():
        if s > 0:
            low, high = (-s, s) if name == "hue" else (max(0.0, 1 - s), 1 + s)
            factors[name] = _uniform(batch, low, high, generator, device)
    ids = torch.tensor([JITTER_OPS.index(name) for name in factors], dtype=torch.long, device=device)
    order = ids[torch.rand((batch, len(ids)), generator=generator, device=device).argsort(dim=1)]
    return factors, order


def _blend(x: Tensor, target: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``_blend``, clamp(factor * x + (1 - factor) * target), with per-sample factor.

    ``lerp`` is one pass and returns ``x`` exactly where factor == 1.
    """
    return torch.lerp(target, x, factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by per-sample ``shift`` (B,) in [-0.5, 0.5], as torchvision's ``adjust_hue``.

    RGB -> HSV with torchvision's formulas; HSV -> RGB with the closed form of the same piecewise
    map, channel = v - v*s*clamp(min(k, 4-k), 0, 1) with k = (n + 6*hue) mod 6, n = 5, 3, 1.
    """
    r, g, _ = x.unbind(dim=1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)  # (faster than aminmax on CPU)
    eqc = maxc == minc  # gray pixels: hue and saturation 0, avoiding 0/0 as torchvision does
    chroma = maxc - minc
    sat = chroma / torch.where(eqc, 1.0, maxc)
    rc, gc, bc = (maxc.unsqueeze(1) - x).div_(torch.where(eqc, 1.0, chroma).unsqueeze(1)).unbind(dim=1)
    hue6 = torch.where(maxc == r, bc - gc, torch.where(maxc == g, rc + 2.0 - bc, gc + 4.0 - rc))  # 6*hue
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (hue6.unsqueeze(1) + (shift.view(-1, 1, 1, 1) * 6 + n)).remainder_(6)
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return ramp.mul_(sat.unsqueeze(1)).neg_().add_(1).mul_(maxc.unsqueeze(1))  # v * (1 - s * ramp)


def _hue_centred_schedule(order: Tensor) -> tuple[Tensor, Tensor]:
    """Split each row of ``order`` around its hue op: blends before it, right-aligned, and after it.

    Returns (pre, post), each (B, k-1), padded with the hue id (which ``color_jitter``'s blend step
    treats as identity), so hue runs once for the whole batch between the two blend sequences.
    """
    k = order.shape[1]
    slots = torch.arange(k - 1, device=order.device)
    at = (order == _HUE).int().argmax(dim=1, keepdim=True)  # position of hue in each row

    def take(idx: Tensor) -> Tensor:
        return torch.where((idx >= 0) & (idx < k), order.gather(1, idx.clamp(0, k - 1)), _HUE)

    return take(slots - (k - 1 - at)), take(at + 1 + slots)


def color_jitter(x: Tensor, factors: dict[str, Tensor], order: Tensor) -> Tensor:
    """Apply ColorJitter per sample in float [0, 1], each sample in its own op order.

    ``factors`` and ``order`` as from ``sample_jitter``. Brightness/contrast/saturation steps are
    one fused blend for the batch (with zeros, the mean of the grayscale, the grayscale; factor 1 =
    exact identity for samples doing something else). Hue, the expensive op, runs once: each
    sample's blends are scheduled before/after it (see ``_hue_centred_schedule``). Definitions and
    clamping as torchvision's functional ops.
    """
    blends = [i for i, name in enumerate(JITTER_OPS[:_HUE]) if name in factors]
    blend_factor = torch.ones(x.shape[0], len(JITTER_OPS), dtype=x.dtype, device=x.device)  # hue column: 1
    for i in blends:
        blend_factor[:, i] = factors[JITTER_OPS[i]]
    needs_gray = _CONTRAST in blends or _SATURATION in blends

    def blend_step(x: Tensor, op: Tensor) -> Tensor:
        target = x.new_zeros(())  # brightness blends with black
        if needs_gray:
            gray = _luma(x)
            pick = F.one_hot(op, len(JITTER_OPS)).to(x.dtype)[:, :, None, None]  # (B, 4, 1, 1)
            # exactly the grayscale for saturation, its mean for contrast, 0 otherwise
            mean = gray.mean(dim=(-2, -1), keepdim=True)
            target = torch.addcmul(mean * pick[:, _CONTRAST, None], gray, pick[:, _SATURATION, None])
        return _blend(x, target, blend_factor.gather(1, op[:, None]))

    pre, post = _hue_centred_schedule(order) if "hue" in factors else (order, order[:, :0])
    for op in pre.unbind(dim=1):
        x = blend_step(x, op)
    if "hue" in factors:
        x = adjust_hue(x, factors["hue"])
    for op in post.unbind(dim=1):
        x = blend_step(x, op)
    return x


# ----------------------------------------------------------------------------- blur, solarize


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Gaussian blur with per-sample ``sigma`` (B,), torchvision's kernel and reflect padding.

    Separable: one grouped conv (B*C groups) per axis.
    """
    batch, channels, height, width = x.shape
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    grid = torch.linspace(-lim, lim, kernel_size, dtype=x.dtype, device=x.device)
    kernel = torch.softmax(-(grid / sigma.to(x.dtype)[:, None]).pow(2), dim=1)  # (B, k)
    kernel = kernel.repeat_interleave(channels, dim=0).view(batch * channels, 1, 1, kernel_size)
    pad = kernel_size // 2
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect").view(1, batch * channels, height + 2 * pad, -1)
    out = F.conv2d(out, kernel, groups=batch * channels)
    out = F.conv2d(out, kernel.transpose(-1, -2), groups=batch * channels)
    return out.view(batch, channels, height, width)


def solarize(x: Tensor, threshold: float) -> Tensor:
    """Invert (1 - x) the values >= threshold."""
    return torch.where(x >= threshold, 1 - x, x)


# ----------------------------------------------------------------------------- pipelines


class BatchAugment:
    """One random view of a batch: crop -> flip -> jitter -> grayscale -> blur -> solarize -> normalise."""

    def __init__(self, config: AugmentConfig | None = None):
        self.config = config or AugmentConfig()

    def __repr__(self) -> str:
        return f"BatchAugment({self.config!r})"

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment (B,3,H,W) uint8 or float-in-[0,1] images to normalised float32 (B,3,size,size).

        All randomness comes from ``generator`` (on the images' device; None = global RNG).
        """
        cfg, g = self.config, generator
        x = _to_float(images)
        batch, device = x.shape[0], x.device
        flip = _coin(batch, cfg.flip_p, g, device) if cfg.flip_p > 0 else None
        if cfg.crop:
            boxes = sample_crop_boxes(batch, *x.shape[-2:], cfg.crop_scale, cfg.crop_ratio, g, device)
            x = resized_crop(x, boxes, cfg.size, flip)
        else:
            x = _resize(x, cfg.size)
            if flip is not None:
                x = _where(flip, x.flip(-1), x)
        if cfg.jitter_p > 0:
            factors, order = sample_jitter(batch, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, g, device)
            if factors:
                x = _where(_coin(batch, cfg.jitter_p, g, device), color_jitter(x, factors, order), x)
        if cfg.grayscale_p > 0:
            x = _where(_coin(batch, cfg.grayscale_p, g, device), _luma(x).expand_as(x), x)
        if cfg.blur_p > 0:
            sigma = _uniform(batch, *cfg.blur_sigma, g, device)
            x = _where(_coin(batch, cfg.blur_p, g, device), gaussian_blur(x, sigma, cfg.blur_kernel_size), x)
        if cfg.solarize_p > 0:
            x = _where(_coin(batch, cfg.solarize_p, g, device), solarize(x, cfg.solarize_threshold), x)
        return _normalize(x, cfg.mean, cfg.std)


def eval_transform(images: Tensor, size: int, mean, std) -> Tensor:
    """Deterministic view for feature extraction: bilinear antialiased resize (if needed), normalise."""
    return _normalize(_resize(_to_float(images), size), mean, std)
