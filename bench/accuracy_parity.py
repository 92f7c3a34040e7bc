"""Accuracy parity (issue 4): does the GPU data pipeline train as well as the per-image reference pipeline?

Trains the same SimCLR run twice from the same config and seed, then scores both with the run's
kNN protocol:

  (a) sempairs: ``train(cfg)`` (uint8 images on the device, batched GPU augmentation);
  (b) reference: the same model, optimiser, learning-rate schedule and training step, fed by
      ``bench.throughput``'s reference pipeline (lightly's SimCLRTransform, or torchvision's
      equivalent, on PIL images in DataLoader workers, reshuffled every epoch).

The issue asks for kNN top-1 within 1 point at SimCLR ResNet-18, AP on CIFAR-10, 100 epochs.
Resumable only per arm: (a) resumes from its checkpoint, (b) restarts (it writes its result once
it finishes). Run from the repository root on the GPU machine::

    python -m bench.accuracy_parity configs/simclr_cifar10.yaml --workers 16 [key=value ...]

Results: ``<out_dir>/<name>/parity/{sempairs,reference}.json`` (the sempairs run in
``.../parity/sempairs/``) and a printed comparison.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from lightning.fabric import Fabric

from bench.throughput import PILPairs, reference_transform
from sempairs.config import load_config
from sempairs.eval.protocol import knn_evaluate
from sempairs.train import train
from sempairs.trained.checkpoint import LAST
from sempairs.train.data import load_run_data
from sempairs.train.loop import optimizer_step, resolve_precision, setup_model
from sempairs.train.optim import lr_at, set_lr


def train_reference(cfg, workers: int) -> dict:
    """Train ``cfg``'s method on augmented pairs through the per-image reference pipeline; kNN at the end."""
    fabric = Fabric(accelerator=cfg.train.accelerator, devices=1, precision=resolve_precision(cfg))
    fabric.seed_everything(cfg.train.seed, verbose=False)
    data = load_run_data(cfg)
    name, transform = reference_transform(cfg.data.size, cfg.augment.mean, cfg.augment.std)
    batch = cfg.train.batch_size
    loader = torch.utils.data.DataLoader(
        PILPairs(data.train.images[data.pairs.anchor], transform), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=fabric.device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg.train.seed))
    method, model, optimizer = setup_model(fabric, cfg)
    peak_lr = optimizer.param_groups[0]["lr"]
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.train.epochs
    warmup = round(cfg.optim.warmup_epochs * steps_per_epoch)
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    started, step = time.perf_counter(), 0
    for epoch in range(cfg.train.epochs):
        model.train()
        for view1, view2 in loader:
            set_lr(optimizer, lr_at(step, total, warmup, peak_lr, cfg.optim.min_lr * batch / 256))
            views = [v.to(fabric.device, non_blocking=True).contiguous(memory_format=memory) for v in (view1, view2)]
            out = optimizer_step(fabric, model, optimizer, *views)
            method.after_step(step, total)
            step += 1
        print(f"reference epoch {epoch + 1}/{cfg.train.epochs}: loss {out.loss.item():.4f}", flush=True)
    seconds = time.perf_counter() - started
    knn = knn_evaluate(method.backbone, data.train, data.test, cfg.data.size, cfg.augment.mean, cfg.augment.std,
                       k=cfg.knn.k, temperature=cfg.knn.temperature, batch_size=cfg.features.batch_size,
                       channels_last=cfg.train.channels_last)
    return {**knn, "pipeline": f"{name} transforms, {workers} DataLoader workers", "seconds": seconds,
            "images_per_s": total * batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="run config (augmented pairs), e.g. configs/simclr_cifar10.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--workers", type=int, default=16, help="DataLoader workers of the reference pipeline")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.config, [*args.overrides, "pairs.source=augmented", "knn.every=0"])
    out = cfg.run_dir / "parity"
    out.mkdir(parents=True, exist_ok=True)

    ours = out / "sempairs.json"
    if not ours.exists():
        arm = cfg.model_copy(update={"out_dir": str(out), "name": "sempairs"})
        result = train(arm, resume=(arm.run_dir / LAST).exists())
        seconds = sum(h["seconds"] for h in result.history)
        ours.write_text(json.dumps({**result.knn, "pipeline": "sempairs (GPU data + GPU augmentation)", "seconds": seconds,
                                    "images_per_s": sum(h["images_per_s"] * h["seconds"] for h in result.history) / seconds}))
    reference = out / "reference.json"
    if not reference.exists():
        reference.write_text(json.dumps(train_reference(cfg, args.workers)))

    rows = [json.loads(p.read_text()) for p in (ours, reference)]
    print(f"{cfg.train.epochs} epochs, {cfg.backbone.name}, {cfg.data.size} px, batch {cfg.train.batch_size}, "
          f"kNN k={cfg.knn.k} on {rows[0]['test_images']} test images")
    for row in rows:
        print(f"  {row['pipeline']:<55} kNN top-1 {row['knn_top1']:6.2f}%  {row['images_per_s']:8.0f} img/s")
    print(f"  difference (sempairs - reference): {rows[0]['knn_top1'] - rows[1]['knn_top1']:+.2f} points")


if __name__ == "__main__":
    main()
