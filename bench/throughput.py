"""SimCLR training throughput: reference CPU pipeline vs bare GPU step vs sempairs end to end.

One run on the GPU machine times, for each setting (ResNet-18 @ 32 px batch 512, ResNet-50 @ 64 px
batch 256; small-image and standard stems):

  (a) the reference pipeline: lightly's SimCLRTransform (torchvision's equivalent when lightly is
      not installed: the table says which) on PIL images in DataLoader workers (16 and 4), batches
      copied to the GPU, then the same training step;
  (b) the bare training step on GPU-resident, already-augmented batches (no data work at all);
  (c) sempairs end to end: uint8 images on the GPU, pairs gathered by index, batched GPU
      augmentation, the same training step.

All three use the same model, optimiser (LARS), bf16 autocast and channels_last through Lightning
Fabric. img/s counts images (pairs); each gives two views. It also projects the wall time of the
published workload (29,359 pairs, 200 epochs, batch 256) from the measured ResNet-50 rates.

    python -m bench.throughput --data cifar10 [--steps 50] [--workers 16 4] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from lightning.fabric import Fabric
from PIL import Image

from sempairs.config import load_config
from sempairs.data.registry import load_dataset
from sempairs.pairs import augmented_pairs
from sempairs.precision import cpu_computes_bf16
from sempairs.train.batches import PairBatches
from sempairs.train.loop import optimizer_step, setup_model

SETTINGS = [  # (backbone, small stem, size, batch)
    ("resnet18", True, 32, 512),
    ("resnet50", True, 64, 256),
    ("resnet50", False, 64, 256),
]
PUBLISHED_PAIRS, PUBLISHED_EPOCHS = 29_359, 200


def reference_transform(size: int, mean, std):
    """lightly's SimCLR transform when installed, else the same pipeline from torchvision."""
    try:
        from lightly.transforms import SimCLRTransform

        return "lightly", SimCLRTransform(input_size=size, gaussian_blur=0.0, normalize={"mean": mean, "std": std})
    except ImportError:
        import torchvision.transforms as T

        view = T.Compose([
            T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.ToTensor(), T.Normalize(mean, std),
        ])
        return "torchvision", lambda img: [view(img), view(img)]


class PILPairs(torch.utils.data.Dataset):
    """Images as PIL for a per-image CPU pipeline, two views each."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]))


def cycle(loader):
    """Batches of ``loader`` forever (a new epoch when one ends)."""
    while True:
        yield from loader


def to_device(views: torch.Tensor, device: str) -> torch.Tensor:
    return views.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(step_fn, steps: int, batch: int, warmup: int = 5, device: str = "cuda") -> float:
    """Images/s of ``steps`` calls of ``step_fn`` (``batch`` images each) after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step_fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step_fn()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def measure(setting, data_name: str, steps: int, workers: list[int], quick: bool, device: str = "cuda",
            warmup: int = 5, limit_per_class: int | None = None, overrides: tuple[str, ...] = ()) -> dict:
    """Images/s of each pipeline (bare step, sempairs end to end, the reference pipeline with each of ``workers``)
    for ``setting`` on ``device`` under bf16 autocast (float32 on a CPU without native bf16), on the training
    split of ``data_name`` (``limit_per_class`` images per class, None: all); ``overrides``: further config keys."""
    arch, small, size, batch = setting
    precision = "bf16-mixed" if device == "cuda" or cpu_computes_bf16() else "32-true"
    cfg = load_config(None, [f"backbone.name={arch}", f"backbone.small_stem={small}", f"data.size={size}",
                             f"train.batch_size={batch}", f"train.precision={precision}", *overrides])
    fabric = Fabric(accelerator=device, devices=1, precision=precision)
    store = load_dataset(data_name, split="train", size=size, limit_per_class=limit_per_class)
    _, model, optimizer = setup_model(fabric, cfg)
    step = lambda v1, v2: optimizer_step(fabric, model, optimizer, v1, v2)  # noqa: E731
    rates = {}

    # (b) bare step: fixed device-resident augmented batches
    views = [torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last) for _ in range(2)]
    rates["bare step (GPU-resident batches)"] = timed(lambda: step(*views), steps, batch, warmup, device)

    # (c) sempairs end to end
    batches = PairBatches(store.images, augmented_pairs(len(store)), cfg.augment, fabric.device, channels_last=True)
    gen = torch.Generator(device=device).manual_seed(0)
    order = torch.randperm(len(store), device=device)
    cursor = iter(range(10**9))
    def sempairs_step():  # noqa: E306
        i = next(cursor) % (len(store) // batch)
        step(*batches.views(order[i * batch:(i + 1) * batch], gen))
    rates["sempairs (GPU data + GPU augmentation)"] = timed(sempairs_step, steps, batch, warmup, device)

    # (a) reference CPU pipeline
    name, transform = reference_transform(size, cfg.augment.mean, cfg.augment.std)
    for n in ([] if quick else workers):
        loader = torch.utils.data.DataLoader(PILPairs(store.images, transform), batch_size=batch, shuffle=True,
                                             num_workers=n, pin_memory=device == "cuda", drop_last=True,
                                             persistent_workers=True, prefetch_factor=4)
        stream = cycle(loader)
        rates[f"{name} transforms, {n} DataLoader workers"] = timed(
            lambda: step(*(to_device(v, device) for v in next(stream))), steps, batch, warmup, device)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 4])
    parser.add_argument("--quick", action="store_true", help="skip the CPU reference pipeline")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/throughput.py measures GPU training: run it on a machine with a CUDA GPU")
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  {time.strftime('%Y-%m-%d')}")
    for setting in SETTINGS:
        arch, small, size, batch = setting
        rates = measure(setting, args.data, args.steps, args.workers, args.quick)
        bare = rates["bare step (GPU-resident batches)"]
        ref = next((v for k, v in rates.items() if "16 DataLoader" in k), None)
        print(f"\n{arch} {'small' if small else 'standard'} stem, {size} px, batch {batch}")
        print(f"{'pipeline':48s} {'img/s':>9s} {'x bare':>7s} {'x ref16':>8s}")
        for k, v in rates.items():
            print(f"{k:48s} {v:9.0f} {v / bare:7.2f} {(v / ref if ref else float('nan')):8.2f}")
        if arch == "resnet50":
            ours = rates["sempairs (GPU data + GPU augmentation)"]
            minutes = PUBLISHED_PAIRS * PUBLISHED_EPOCHS / ours / 60
            print(f"projected published workload ({PUBLISHED_PAIRS} pairs x {PUBLISHED_EPOCHS} epochs): {minutes:.1f} min")


if __name__ == "__main__":
    main()
