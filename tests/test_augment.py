"""Batched augmentation: each op against its torchvision definition, sampling, switches, config."""

from __future__ import annotations

import itertools
import math

import pydantic
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from sempairs.augment import PRESETS, AugmentConfig, BatchAugment, eval_transform, preset
from sempairs.augment.pipeline import (
    JITTER_OPS,
    color_jitter,
    gaussian_blur,
    resized_crop,
    sample_crop_boxes,
    sample_jitter,
)

# Everything off: a pipeline from this config (plus one switch) shows that switch's op alone.
OFF = dict(crop=False, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch: int = 8, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1] from uint8 values, half of them from a 4-level palette (ties, grays)."""
    g = gen(seed)
    fine = torch.randint(0, 256, (batch, 3, height, width), generator=g)
    coarse = torch.randint(0, 4, (batch, 3, height, width), generator=g) * 85
    return torch.where(torch.arange(batch).view(-1, 1, 1, 1) % 2 == 0, fine, coarse).float() / 255


# ----------------------------------------------------------------------------- crop + flip


@pytest.mark.parametrize("height,width", [(32, 32), (24, 40)])
def test_crop_boxes_inside_image_with_scale_and_ratio_in_range(height, width):
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    top, left, h, w = (v.double() for v in sample_crop_boxes(20000, height, width, scale, ratio, gen()))
    assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # w and h are rounded, so the drawn area and aspect lie within half a pixel of the box.
    area = height * width
    assert ((w + 0.5) * (h + 0.5) >= scale[0] * area).all() and ((w - 0.5) * (h - 0.5) <= scale[1] * area).all()
    assert ((w + 0.5) / (h - 0.5) >= ratio[0]).all() and ((w - 0.5) / (h + 0.5) <= ratio[1]).all()
    # Same distribution as torchvision's sampler.
    tv = T.RandomResizedCrop(height, scale=scale, ratio=ratio)
    torch.manual_seed(0)
    params = [tv.make_params([torch.zeros(3, height, width)]) for _ in range(4000)]
    ref = torch.tensor([[p["height"], p["width"]] for p in params])
    ours = torch.stack([h, w], dim=1)
    assert torch.allclose(ours.mean(0), ref.double().mean(0), rtol=0.04)
    assert torch.allclose(ours.std(0), ref.double().std(0), rtol=0.06)
    # Positions are uniform over the free range.
    assert abs(float((top / (height - h + 1)).mean()) - 0.5 * float(((height - h) / (height - h + 1)).mean())) < 0.02


def test_crop_fallback_is_torchvision_centre_crop():
    height, width, scale, ratio = 100, 10, (0.9, 1.0), (3 / 4, 4 / 3)  # no candidate can fit
    boxes = torch.stack(sample_crop_boxes(16, height, width, scale, ratio, gen()), dim=1)
    ref = T.RandomResizedCrop(8, scale=scale, ratio=ratio).make_params([torch.zeros(3, height, width)])
    assert (boxes == torch.tensor([ref["top"], ref["left"], ref["height"], ref["width"]])).all()


@pytest.mark.parametrize(
    "box,size",
    [
        ((5, 7, 10, 13), 32),  # upscale, anisotropic
        ((0, 0, 40, 36), 40),  # identity size on the whole image
        ((3, 2, 16, 16), 16),  # identity size, inner box
        ((8, 4, 30, 29), 16),  # downscale
        ((39, 35, 1, 1), 4),  # single pixel at the far corner
    ],
)
def test_resized_crop_matches_torchvision(box, size):
    """Equal to torchvision with antialias=False at every scale (the fused resample does not antialias),
    up to float rounding of the sample coordinates (grid_sample works in [-1, 1])."""
    x = images(4, 40, 36)
    boxes = tuple(torch.full((4,), v) for v in box)
    out = resized_crop(x, boxes, size)
    ref = TF.resized_crop(x, *box, [size, size], interpolation=T.InterpolationMode.BILINEAR, antialias=False)
    assert out.shape == (4, 3, size, size)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


def test_resized_crop_per_sample_boxes_and_flip():
    x = images(6)
    boxes = sample_crop_boxes(6, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), gen())
    flip = torch.tensor([True, False, True, False, True, True])
    out = resized_crop(x, boxes, 24, flip)
    for i, (t, l, h, w) in enumerate(zip(*(v.tolist() for v in boxes))):
        ref = TF.resized_crop(x[i], t, l, h, w, [24, 24], antialias=False)
        ref = torch.flip(ref, dims=[-1]) if flip[i] else ref
        assert torch.allclose(out[i], ref, atol=1e-5, rtol=0)
    assert torch.equal(resized_crop(x, boxes, 24, torch.ones(6, dtype=torch.bool)), resized_crop(x, boxes, 24).flip(-1))


def test_flip_without_crop_is_torch_flip():
    x = images(64)
    out = BatchAugment(AugmentConfig(**{**OFF, "flip_p": 0.5}))(x, gen())
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, x))
    assert 16 < int(flipped.sum()) < 48


# ----------------------------------------------------------------------------- colour jitter

TV_JITTER = {
    "brightness": TF.adjust_brightness,
    "contrast": TF.adjust_contrast,
    "saturation": TF.adjust_saturation,
    "hue": TF.adjust_hue,
}


@pytest.mark.parametrize("op", JITTER_OPS)
def test_each_jitter_op_matches_torchvision(op):
    x = images(8, 16, 16)
    factor = torch.linspace(-0.5, 0.5, 8) if op == "hue" else torch.linspace(0.0, 2.0, 8)
    order = torch.full((8, 1), JITTER_OPS.index(op))
    out = color_jitter(x, {op: factor}, order)
    ref = torch.stack([TV_JITTER[op](img, float(f)) for img, f in zip(x, factor)])
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


def test_jitter_applies_each_samples_own_order_like_torchvision():
    batch = 48  # every one of the 24 orders, twice
    x = images(batch, 8, 8)
    order = torch.tensor(list(itertools.permutations(range(4))) * 2)
    factors, _ = sample_jitter(batch, 0.4, 0.4, 0.4, 0.1, gen())
    out = color_jitter(x, factors, order)
    for i in range(batch):
        ref = x[i]
        for op in order[i].tolist():
            name = JITTER_OPS[op]
            ref = TV_JITTER[name](ref, float(factors[name][i]))
        assert torch.allclose(out[i], ref, atol=1e-5, rtol=0), i


def test_jitter_factors_in_range_and_order_random_per_sample():
    batch = 24000
    factors, order = sample_jitter(batch, 0.4, 0.3, 1.5, 0.1, gen())
    ranges = dict(brightness=(0.6, 1.4), contrast=(0.7, 1.3), saturation=(0.0, 2.5), hue=(-0.1, 0.1))
    for name, (low, high) in ranges.items():
        f = factors[name]
        assert f.min() >= low and f.max() <= high
        assert f.min() < low + 0.01 and f.max() > high - 0.01
    assert (order.sort(dim=1).values == torch.arange(4)).all()  # each row a permutation
    position_freq = torch.stack([(order == op).float().mean(0) for op in range(4)])
    assert torch.allclose(position_freq, torch.full((4, 4), 0.25), atol=0.015)
    code = (order * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(torch.unique(code, return_inverse=True)[1])
    assert len(counts) == 24 and counts.min() > 0.8 * batch / 24 and counts.max() < 1.2 * batch / 24


def test_blend_factor_one_is_exact_identity():
    """Samples not doing a blend op in a round get factor 1, which must leave them untouched."""
    x = images(8)
    ones = torch.ones(8)
    for op in range(3):
        assert torch.equal(color_jitter(x, {JITTER_OPS[op]: ones}, torch.full((8, 1), op)), x)


def test_jitter_leaves_out_ops_of_zero_strength():
    factors, order = sample_jitter(100, 0.4, 0.0, 0.4, 0.0, gen())
    assert set(factors) == {"brightness", "saturation"}
    assert order.shape == (100, 2) and set(order.unique().tolist()) == {0, 2}


# ----------------------------------------------------------------------------- grayscale, blur, solarize


def test_grayscale_is_torchvision_luma_per_sample():
    x = images(200)
    out = BatchAugment(AugmentConfig(**{**OFF, "grayscale_p": 0.5}))(x, gen())
    gray = TF.rgb_to_grayscale(x, num_output_channels=3)
    is_gray = torch.tensor([torch.allclose(o, gr, atol=1e-6) for o, gr in zip(out, gray)])
    assert all(g or torch.equal(o, i) for g, o, i in zip(is_gray, out, x))
    assert 70 < int(is_gray.sum()) < 130


@pytest.mark.parametrize("kernel", [3, 5, 9])
def test_gaussian_blur_matches_torchvision(kernel):
    x = images(6, 16, 16)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 3.0])
    out = gaussian_blur(x, sigma, kernel)
    ref = torch.stack([TF.gaussian_blur(img, [kernel, kernel], [float(s), float(s)]) for img, s in zip(x, sigma)])
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


def test_blur_in_pipeline_uses_default_kernel_and_sigma_range():
    x = images(4, 96, 96)
    out = BatchAugment(AugmentConfig(**{**OFF, "size": 96, "blur_p": 1.0, "blur_sigma": (0.7, 0.7)}))(x, gen())
    assert torch.allclose(out, TF.gaussian_blur(x, [9, 9], [0.7, 0.7]), atol=1e-5, rtol=0)
    assert AugmentConfig(size=32).blur_kernel_size == 3 and AugmentConfig(size=224).blur_kernel_size == 23


def test_solarize_definition():
    x = images(100)
    out = BatchAugment(AugmentConfig(**{**OFF, "solarize_p": 0.5, "solarize_threshold": 0.4}))(x, gen())
    solar = torch.where(x >= 0.4, 1 - x, x)
    assert torch.equal(solar, TF.solarize(x, 0.4))
    is_solar = torch.tensor([torch.equal(o, s) for o, s in zip(out, solar)])
    assert all(s or torch.equal(o, i) for s, o, i in zip(is_solar, out, x))
    assert 30 < int(is_solar.sum()) < 70


# ----------------------------------------------------------------------------- pipeline


def test_output_shape_dtype_range_and_uint8_float_agree():
    x = (images(16, 40, 40) * 255).round().to(torch.uint8)
    cfg = preset("byol", size=24, solarize_p=0.5, blur_p=0.5, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = BatchAugment(cfg)(x, gen(3))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    x_float = x.float() / 255
    assert torch.equal(out, BatchAugment(cfg)(x_float, gen(3)))
    assert torch.equal(x_float, x.float() / 255)  # input left untouched


def test_same_seed_same_view_different_seed_different_view():
    x = (images(16) * 255).to(torch.uint8)
    aug = BatchAugment(preset("byol"))
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.allclose(aug(x, gen(7)), aug(x, gen(8)))


def test_crop_only_is_one_resized_crop_of_the_sampled_boxes():
    x = images(8, 40, 40)
    cfg = preset("crop_only", size=32)
    boxes = sample_crop_boxes(8, 40, 40, cfg.crop_scale, cfg.crop_ratio, gen(5))
    expected = TF.normalize(resized_crop(x, boxes, 32), list(cfg.mean), list(cfg.std))
    assert torch.allclose(BatchAugment(cfg)(x, gen(5)), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [32, 24, 48])
def test_everything_off_is_normalised_resize(size):
    x = (images(4) * 255).to(torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    cfg = AugmentConfig(**{**OFF, "size": size, "mean": mean, "std": std})
    out = BatchAugment(cfg)(x, gen())
    expected = TF.normalize(TF.resize(x.float() / 255, [size, size], antialias=True), list(mean), list(std))
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)
    assert torch.equal(out, eval_transform(x, size, mean, std))
    if size == 32:
        assert torch.equal(out, TF.normalize(x.float() / 255, list(mean), list(std)))


def test_global_rng_when_no_generator():
    torch.manual_seed(0)
    out = BatchAugment()((images(4) * 255).to(torch.uint8))
    assert out.shape == (4, 3, 32, 32) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- config


def test_presets():
    for name in PRESETS:
        assert isinstance(preset(name), AugmentConfig)
    assert preset("simclr") == AugmentConfig()
    v1, v2 = preset("byol"), preset("byol").second_view()
    assert (v1.blur_p, v2.blur_p, v1.solarize_p, v2.solarize_p) == (1.0, 0.1, 0.0, 0.2)
    assert (v1.brightness, v1.contrast, v1.saturation, v1.hue) == (0.4, 0.4, 0.2, 0.1)
    crop_only = preset("crop_only")
    assert crop_only.crop and crop_only.flip_p == crop_only.jitter_p == crop_only.grayscale_p == 0
    assert preset("no_grayscale").grayscale_p == 0 and preset("no_grayscale").jitter_p == 0.8
    assert preset("simclr", size=96).size == 96
    multi = preset("dino_multicrop")  # DINO's main_dino.py: 8 local crops, scales (0.4, 1) / (0.05, 0.4)
    assert (multi.local_crops, multi.crop_scale, multi.local_scale) == (8, (0.4, 1.0), (0.05, 0.4))
    assert (multi.brightness, multi.contrast, multi.saturation, multi.hue) == (0.4, 0.4, 0.2, 0.1)
    with pytest.raises(ValueError, match="valid: byol, crop_only, dino_multicrop, no_color, no_grayscale, simclr"):
        preset("simclr_v3")


@pytest.mark.parametrize("size,local", [(16, 8), (32, 16), (64, 32), (96, 48), (224, 96)])
def test_default_local_size_is_dinos_ratio_rounded_up_to_8(size, local):
    assert AugmentConfig(size=size).local_crop_size == local
    assert local % 8 == 0 and local >= size * 96 / 224


def test_local_view_is_the_same_pipeline_at_the_local_size_and_scale():
    cfg = preset("byol", size=64, blur_kernel=9, local_crops=4, local_scale=(0.1, 0.3)).second_view()
    local = cfg.local_view()
    assert (local.size, local.crop_scale, local.local_crops) == (32, (0.1, 0.3), 0)
    assert local.blur_kernel_size == 3  # the default for 32 px, not the global views' kernel
    same = {"size", "crop_scale", "blur_kernel", "local_crops", "local_size"}
    assert {k: v for k, v in local.model_dump().items() if k not in same} == \
        {k: v for k, v in cfg.model_dump().items() if k not in same}
    assert AugmentConfig(size=32, local_size=24).local_view().size == 24


@pytest.mark.parametrize(
    "field,value",
    [
        ("flip_p", 1.5),
        ("jitter_p", -0.1),
        ("size", 0),
        ("crop_scale", (0.9, 0.1)),
        ("crop_scale", (0.5, 1.5)),
        ("crop_ratio", (0.0, 1.0)),
        ("blur_sigma", (2.0, 0.1)),
        ("hue", 0.7),
        ("blur_kernel", 4),
        ("blur_kernel", 65),
        ("std", (0.2, 0.0, 0.2)),
        ("colour", 0.4),
        ("local_crops", -1),
        ("local_size", 0),
        ("local_scale", (0.4, 0.05)),
        ("local_scale", (0.05, 1.2)),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(pydantic.ValidationError, match=field):
        AugmentConfig(**{field: value})


def test_config_round_trips_through_json():
    cfg = preset("byol", size=64).second_view()
    assert AugmentConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert math.isclose(cfg.crop_ratio[0], 0.75)
