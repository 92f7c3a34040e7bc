"""PairBatches: the views are the pairs' members, wherever the images are held."""

from __future__ import annotations

import numpy as np
import torch

from sempairs.augment import AugmentConfig, eval_transform
from sempairs.pairs import PairSet
from sempairs.train.batches import PairBatches

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
