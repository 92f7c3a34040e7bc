"""PairBatches: the views are the pairs' members, wherever the images are held."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sempairs.augment import AugmentConfig, eval_transform
from sempairs.pairs import PairSet
from sempairs.train.batches import PairBatches, read_members

PLAIN = AugmentConfig(size=8, crop=False, flip_p=0, jitter_p=0, grayscale_p=0)


def toy(n=12, size=8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pairs = PairSet.build(anchor=[0, 3, 5, 7], positive=[1, 2, 9, 7], source="labels")
    return images, pairs


def test_views_are_the_anchor_and_positive_images():
    images, pairs = toy()
    batches = PairBatches(images, pairs, PLAIN, torch.device("cpu"))
    idx = torch.tensor([2, 0, 3])
    v1, v2 = batches.views(idx, torch.Generator().manual_seed(0))
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch.testing.assert_close(v1, eval_transform(nchw[[5, 0, 7]], 8, PLAIN.mean, PLAIN.std))
    torch.testing.assert_close(v2, eval_transform(nchw[[9, 1, 7]], 8, PLAIN.mean, PLAIN.std))


def test_host_and_device_placement_give_the_same_views():
    images, pairs = toy()
    cfg = AugmentConfig(size=8)
    idx = torch.tensor([1, 3, 0, 2])
    resident = PairBatches(images, pairs, cfg, torch.device("cpu"), on_device=True, channels_last=True)
    host = PairBatches(images, pairs, cfg, torch.device("cpu"), on_device=False)
    a = resident.views(idx, torch.Generator().manual_seed(4))
    b = host.views(idx, torch.Generator().manual_seed(4))
    assert a[0].is_contiguous(memory_format=torch.channels_last)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_asymmetric_views_augment_the_positive_with_the_second_view():
    """BYOL-style ``view2``: the positive member alone gets the overridden ops (here: always solarised)."""
    images, pairs = toy()
    cfg = AugmentConfig(**{**PLAIN.model_dump(), "view2": {"solarize_p": 1.0, "solarize_threshold": 0.0}})
    v1, v2 = PairBatches(images, pairs, cfg, torch.device("cpu")).views(torch.tensor([1, 2]), torch.Generator().manual_seed(0))
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch.testing.assert_close(v1, eval_transform(nchw[[3, 5]], 8, PLAIN.mean, PLAIN.std))
    torch.testing.assert_close(v2, eval_transform(255 - nchw[[2, 9]], 8, PLAIN.mean, PLAIN.std))  # threshold 0: all inverted


def test_view2_is_checked_like_the_rest_of_the_config():
    from sempairs.config import ConfigError, load_config

    second = AugmentConfig(view2={"blur_p": 0.1, "solarize_p": 0.2}).second_view()
    assert (second.blur_p, second.solarize_p, second.view2) == (0.1, 0.2, None)
    assert second.model_dump(exclude={"blur_p", "solarize_p", "view2"}) == AugmentConfig().model_dump(
        exclude={"blur_p", "solarize_p", "view2"})
    assert PLAIN.second_view() is PLAIN
    with pytest.raises(ConfigError, match="augment.*blurr_p"):
        load_config(None, ["augment.view2={blurr_p: 0.1}"])
    with pytest.raises(ConfigError, match="view2 cannot change size"):
        load_config(None, ["augment.view2={size: 16}"])


# ----------------------------------------------------------------------------- multi-crop

# Crops only, values unchanged (mean 0, std 1): a view's pixels are interpolated source pixels.
CROP_ONLY = dict(size=32, flip_p=0, jitter_p=0, grayscale_p=0, mean=(0, 0, 0), std=(1, 1, 1))


def coordinate_images(n: int, size: int = 32) -> np.ndarray:
    """uint8 images whose channels are 8 x the row, 8 x the column and 20 x the image's index."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    out[..., 0], out[..., 1] = rows * 8, cols * 8
    out[..., 2] = (np.arange(n) * 20)[:, None, None]
    return out


def crop_sides(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimated (h, w) of the box each view was cropped from: the span of its source coordinates + 1.

    Bilinear resampling reproduces a linear ramp exactly, so the span is that of the sample
    positions, h - 1 .. h - 0.5 for boxes smaller than the view and h - h/size for larger ones:
    the estimate is within half a pixel of the box side.
    """
    coords = views.double() * 255 / 8
    span = coords.amax(dim=(-2, -1)) - coords.amin(dim=(-2, -1))
    return span[:, 0] + 1, span[:, 1] + 1


def member_ids(view: torch.Tensor) -> torch.Tensor:
    return (view[:, 2].mean(dim=(-2, -1)) * 255 / 20).round().long()


def tv_mean_area(size: int, scale, ratio, draws: int = 4000) -> float:
    """Mean box area fraction of torchvision's RandomResizedCrop sampler (the reference)."""
    import torchvision.transforms.v2 as T

    tv = T.RandomResizedCrop(size, scale=scale, ratio=ratio)
    torch.manual_seed(0)
    params = [tv.make_params([torch.zeros(3, size, size)]) for _ in range(draws)]
    return float(np.mean([p["height"] * p["width"] for p in params])) / size**2


def test_local_views_are_small_crops_of_both_members_at_the_local_size():
    rng = np.random.default_rng(1)
    anchor = rng.integers(0, 12, 800)
    positive = (anchor + rng.integers(1, 12, 800)) % 12  # always another image
    pairs = PairSet.build(anchor=anchor, positive=positive, source="labels")
    cfg = AugmentConfig(**CROP_ONLY, crop_scale=(0.4, 1.0), local_crops=3, local_scale=(0.05, 0.4))
    batches = PairBatches(coordinate_images(12), pairs, cfg, torch.device("cpu"))
    views = batches.views(torch.arange(800), torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(800, 3, 32, 32)] * 2 + [(800, 3, 16, 16)] * 3
    # global views: anchor, positive; local views: ceil(3/2) = 2 of the anchor, then 1 of the positive
    for view, members in zip(views, [anchor, positive, anchor, anchor, positive]):
        assert torch.equal(member_ids(view), torch.from_numpy(members))
    area = 32 * 32
    for group, scale in ((views[:2], cfg.crop_scale), (views[2:], cfg.local_scale)):
        h, w = (torch.cat(side) for side in zip(*map(crop_sides, group)))
        # each box within the scale range, up to half a pixel of estimate and half of rounding per side
        assert ((h + 1) * (w + 1) >= scale[0] * area).all() and ((h - 1) * (w - 1) <= scale[1] * area).all()
        # and the area distribution is torchvision's for that scale
        assert float((h * w).mean()) / area == pytest.approx(tv_mean_area(32, scale, cfg.crop_ratio), rel=0.05)
    assert len(batches.views(torch.arange(4), torch.Generator().manual_seed(0))) == 5
    without = PairBatches(coordinate_images(12), pairs, AugmentConfig(**CROP_ONLY), torch.device("cpu"))
    assert len(without.views(torch.arange(4), torch.Generator().manual_seed(0))) == 2


# ----------------------------------------------------------------------------- memory-mapped stores


def mapped(tmp_path, images: np.ndarray) -> np.memmap:
    np.save(tmp_path / "images.npy", images)
    return np.load(tmp_path / "images.npy", mmap_mode="r")


def test_read_members_reads_each_distinct_image_once_in_file_order():
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)

    class Recorder:
        def __init__(self):
            self.keys = []

        def __getitem__(self, key):
            self.keys.append(np.asarray(key).tolist())
            return images[key]

    rec = Recorder()
    anchors, positives = np.array([7, 2, 7, 5]), np.array([2, 9, 0, 5])
    a, p = read_members(rec, anchors, positives)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert torch.equal(a, nchw[anchors]) and torch.equal(p, nchw[positives]) and a.is_contiguous()
    assert rec.keys == [[0, 2, 5, 7, 9]]


@pytest.mark.parametrize("workers", [0, 2])
def test_memory_mapped_store_gives_the_views_of_the_in_ram_store(tmp_path, workers):
    images, pairs = toy()
    cfg = AugmentConfig(size=8, local_crops=3, local_size=4)
    order = torch.tensor([[1, 3, 0], [2, 2, 1], [3, 0, 2]])
    ram = PairBatches(images, pairs, cfg, torch.device("cpu"), channels_last=True)
    mm = PairBatches(mapped(tmp_path, images), pairs, cfg, torch.device("cpu"), channels_last=True, loader_workers=workers)
    assert (ram.placement, mm.placement) == ("device", "mmap")
    expected = list(ram.epoch(order, torch.Generator().manual_seed(3)))
    got = list(mm.epoch(order, torch.Generator().manual_seed(3)))
    assert len(got) == 3 and all(len(views) == 5 for views in got)
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert y.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    # views() of one batch reads in the main process and agrees too
    for x, y in zip(ram.views(order[1], torch.Generator().manual_seed(5)), mm.views(order[1], torch.Generator().manual_seed(5))):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_memory_mapped_store_errors_name_the_fix(tmp_path):
    images, pairs = toy()
    whole = mapped(tmp_path, images)
    with pytest.raises(ValueError, match="view of .*images.npy.*np.load"):
        PairBatches(whole[2:], pairs, PLAIN, torch.device("cpu"))
    with pytest.raises(ValueError, match="train.data_on_device=true.*data.memory=ram"):
        PairBatches(whole, pairs, PLAIN, torch.device("cpu"), on_device=True)
