"""Checks that need several processes, run in one launch: ``python tests/multiprocess_checks.py OUT ZIP``.

Lightning's launcher starts the second process (it runs this script again); each process writes
what it saw under OUT, and tests/test_distributed.py compares that with single-process runs made
in the test process itself. In order:

1. every method, built and stepped by ``sempairs.train.loop`` (``setup_model``, ``optimizer_step``)
   for a few steps on fixed views, each process taking its share of the global batch; the
   parameters and buffers of each process are saved (``<method>.rank<r>.pt``);
2. a 2-epoch run through ``train`` that records the pair indices each process trains on
   (``orders.rank<r>.pt``);
3. a run whose loss becomes NaN on process 1 only: what each process raised (``nan.rank<r>.txt``);
4. a run whose embedding collapses on process 1 only: what each process raised, and after how many
   steps (``collapse.rank<r>.txt``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.fabric import Fabric

from sempairs.config import load_config
from sempairs.train import TrainingStopped, train
from sempairs.train import loop
from sempairs.train.batches import PairBatches
from sempairs.train.optim import Schedule

METHODS = ["simclr", "moco", "byol", "simsiam", "vicreg", "barlow_twins", "dino", "nnclr"]
SMALL_HEADS = {  # small heads keep the checks fast; the computation is the same
    "simclr": ["method.proj_hidden_dim=64", "method.proj_dim=32"],
    "moco": ["method.proj_hidden_dim=64", "method.proj_dim=32", "method.queue_size=64", "method.final_momentum=0.999"],
    "byol": ["method.proj_hidden_dim=64", "method.proj_dim=32", "method.pred_hidden_dim=64"],
    "simsiam": ["method.proj_hidden_dim=64", "method.proj_dim=32", "method.pred_hidden_dim=16"],
    "vicreg": ["method.proj_hidden_dim=64", "method.proj_dim=32"],
    "barlow_twins": ["method.proj_hidden_dim=64", "method.proj_dim=32"],
    "dino": ["method.proj_hidden_dim=64", "method.bottleneck_dim=32", "method.out_dim=64",
             "method.warmup_teacher_temp_fraction=0.5", "method.teacher_temp=0.07", "method.freeze_last_layer_epochs=0"],
    "nnclr": ["method.proj_hidden_dim=64", "method.proj_dim=32", "method.pred_hidden_dim=64", "method.queue_size=64"],
}
BATCH, STEPS, SIZE = 16, 3, 16  # global batch, optimiser steps, image side (float64: float32 rounding grows
# through the stacked BatchNorms of a SimCLR batch enough to hide a real difference)


def step_config(method: str, devices: int):
    """The run config of the stepping check for ``method`` on ``devices`` CPU processes."""
    return load_config(None, [
        f"method.name={method}", *SMALL_HEADS[method], f"data.size={SIZE}", "backbone.small_stem=false",
        "backbone.width=0.25",  # a quarter of the channels: the same computation, 1/16 of the saved states
        f"train.batch_size={BATCH}", "train.accelerator=cpu", f"train.devices={devices}", "train.precision=64-true",
        "train.channels_last=false", "optim.warmup_epochs=0.5", "optim.clip_grad=1.0",
        "train.strategy=ddp" if devices > 1 else "train.strategy=auto",
    ])


def fixed_views(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of the global batch of ``step`` (the same in every process)."""
    gen = torch.Generator().manual_seed(1000 + step)
    return tuple(torch.randn(BATCH, 3, SIZE, SIZE, generator=gen) for _ in range(2))


def run_steps(method_name: str, devices: int) -> dict[str, torch.Tensor]:
    """State of ``method_name`` after STEPS optimiser steps, each process on rows rank::world of the batch."""
    cfg = step_config(method_name, devices)
    fabric = Fabric(accelerator="cpu", devices=devices, strategy=cfg.train.strategy, precision=cfg.train.precision)
    fabric.launch()
    fabric.seed_everything(0, verbose=False)
    method, model, optimizer = loop.setup_model(fabric, cfg)
    schedule = Schedule(cfg.optim, BATCH, steps_per_epoch=STEPS, epochs=1)
    model.train()
    for step in range(STEPS):
        views = [v[fabric.global_rank :: fabric.world_size] for v in fixed_views(step)]
        schedule.apply(optimizer, step)
        loop.optimizer_step(fabric, model, optimizer, *views, clip_grad=cfg.optim.clip_grad)
        method.after_step(step, schedule.total)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def tiny_run(zip_path: str, out: Path, name: str, *extra: str):
    """A 2-process run of 2 epochs of 2 steps (40 pairs, batch 20) with a backbone quick to set up and step."""
    return load_config(None, [
        f"data.dataset={zip_path}", "data.size=16", "data.test_split=null", f"out_dir={out}", f"name={name}",
        "pairs.source=labels", "pairs.per_class=4", "backbone.name=vit_tiny", "train.batch_size=20", "train.epochs=2",
        "train.log_every=1", "optim.warmup_epochs=0", "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp",
        *extra,
    ])


def main(out: Path, zip_path: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in METHODS:
        state = run_steps(name, devices=2)
        rank = torch.distributed.get_rank()
        torch.save(state, out / f"{name}.rank{rank}.pt")

    seen = []
    original_epoch = PairBatches.epoch

    def recording_epoch(self, order, generator):
        seen.append(order.cpu().clone())
        return original_epoch(self, order, generator)

    PairBatches.epoch = recording_epoch
    train(tiny_run(zip_path, out, "orders"), progress=False)
    PairBatches.epoch = original_epoch
    torch.save(seen, out / f"orders.rank{rank}.pt")

    original_step = loop.optimizer_step
    calls = []

    def nan_on_rank_one(*args, **kwargs):
        result = original_step(*args, **kwargs)
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            result.loss = torch.tensor(float("nan"))
        return result

    loop.optimizer_step = nan_on_rank_one
    try:
        train(tiny_run(zip_path, out, "nan"), progress=False)
        outcome = "finished"
    except TrainingStopped as exc:
        outcome = f"TrainingStopped rank={exc.rank}: {exc}"
    (out / f"nan.rank{rank}.txt").write_text(outcome)
    loop.optimizer_step = original_step

    # the spread of every step is 1 (healthy) in both processes, except that of process 1 in the first step of
    # epoch 2, which is 0: with collapse_std 0.75 process 0 alone would go on, process 1 alone would stop, and the
    # agreed spread (the mean, 0.5) stops both at that step
    original_spread = loop.embedding_spread
    spreads = []

    def collapsed_on_rank_one(z):
        original_spread(z)
        spreads.append(1)
        return 0.0 if rank == 1 and len(spreads) == 3 else 1.0

    loop.embedding_spread = collapsed_on_rank_one
    try:
        train(tiny_run(zip_path, out, "collapse", "train.collapse_std=0.75"), progress=False)
        outcome = "finished"
    except TrainingStopped as exc:
        outcome = f"TrainingStopped rank={exc.rank} step={len(spreads)}: {exc}"
    loop.embedding_spread = original_spread
    (out / f"collapse.rank{rank}.txt").write_text(outcome)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
