"""Micro-benchmark: BatchAugment on a (512,3,32,32) uint8 batch vs torchvision v2 per image (img/s).

Run from the repository root: ``python -m bench.augment_speed``. On a busy machine CPU timings are
far steadier with ``OMP_NUM_THREADS=1`` (intra-op threads wait on each other when cores are shared).
"""

from __future__ import annotations

import statistics
import time

import torch
import torchvision.transforms.v2 as T

from sempairs.augment import BatchAugment, preset

BATCH, SIZE, REPEATS = 512, 32, 20


def images_per_second(fn, device: torch.device, repeats: int = REPEATS) -> float:
    """Median throughput of ``fn`` (one batch per call) after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    x = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, device=device)
    generator = torch.Generator(device).manual_seed(0)
    for name in ("simclr", "byol_view1", "byol_view2"):
        aug = BatchAugment(preset(name, size=SIZE))
        rate = images_per_second(lambda: aug(x, generator), device)
        print(f"BatchAugment {name:<11} {device.type}: {rate:>10.0f} img/s")

    cfg = preset("simclr", size=SIZE)
    per_image = T.Compose([
        T.RandomResizedCrop(SIZE, scale=cfg.crop_scale, ratio=cfg.crop_ratio),
        T.RandomHorizontalFlip(cfg.flip_p),
        T.RandomApply([T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], p=cfg.jitter_p),
        T.RandomGrayscale(cfg.grayscale_p),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(cfg.mean, cfg.std),
    ])
    x_cpu = x.cpu()
    rate = images_per_second(lambda: torch.stack([per_image(img) for img in x_cpu]), torch.device("cpu"), repeats=3)
    print(f"torchvision v2 simclr per image cpu: {rate:>10.0f} img/s")


if __name__ == "__main__":
    main()
