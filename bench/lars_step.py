"""The LARS optimiser step, side by side in one run: sempairs' (fused on the CPU) against timm's.

For SimCLR's whole model (backbone and projector, the project's parameter groups: weights adapted
with weight decay 1e-5, biases and norms plain; momentum 0.9, trust coefficient 0.02, clipping),
channels-last as the training loop sets it, with ResNet-18's standard network and with the
quickstart's (small-image stem, width 0.25, stem 64 and 16), it times ``optimizer.step()`` on fixed
random gradients for

  sempairs      ``sempairs.train.lars.Lars`` (per parameter two dot-product norms, then PyTorch's
                fused SGD kernel);
  timm foreach  timm's ``Lars(foreach=True)``, what sempairs used before;
  timm loop     timm's per-parameter form (``foreach=False``, timm's default on the CPU),

interleaved over ``--rounds`` rounds of ``--steps`` steps (medians reported, with the ratio of each
timm form to sempairs'). The three start from the same weights and gradients, and their weights
are compared after the run (they stay within float rounding of each other). Then the whole training
step with each (forward, backward and step on ready 32 px tensors, batch ``--batch``, at
``train.precision=auto`` as the training loop sets it up), in the same interleaved rounds.

    python -m bench.lars_step [--rounds 7] [--steps 20] [--batch 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import timm
import torch
from lightning.fabric import Fabric
from timm.optim import Lars as TimmLars

from sempairs.config import load_config
from sempairs.train.lars import Lars
from sempairs.train.loop import optimizer_step, resolve_precision, setup_model
from sempairs.train.optim import param_groups
from sempairs.trained.loading import build_method

NETWORKS = {
    "ResNet-18, standard stem": ["backbone.small_stem=false"],
    **{f"quickstart (small stem {w}, width 0.25)": ["backbone.small_stem=true", "backbone.width=0.25",
                                                    f"backbone.stem_width={w}"] for w in (64, 16)},
}
OPTIMISERS = {"sempairs": (Lars, {}), "timm foreach": (TimmLars, {"foreach": True}),
              "timm loop": (TimmLars, {"foreach": False})}


def config(network: list[str], batch: int = 128):
    return load_config(None, ["backbone.name=resnet18", "data.size=32", "method.name=simclr", "optim.name=lars",
                              "optim.lr=0.4", "optim.weight_decay=1e-5", "train.accelerator=cpu",
                              f"train.batch_size={batch}", *network])


def setups(network: list[str]) -> dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]:
    """One model (same weights and gradients) and optimiser per optimiser form."""
    cfg = config(network)
    gen = torch.Generator().manual_seed(0)
    grads, out = None, {}
    for name, (cls, kwargs) in OPTIMISERS.items():
        torch.manual_seed(0)
        model = build_method(cfg).to(memory_format=torch.channels_last)  # as the training loop sets it
        # in the weight's layout, as backward() leaves it (a gradient in another layout is copied first)
        grads = grads or [torch.empty_like(p).normal_(std=1e-3, generator=gen) for p in model.parameters()]
        for p, grad in zip(model.parameters(), grads):
            p.grad = grad.clone()
        out[name] = (model, cls(param_groups(model, cfg.optim), lr=0.3, momentum=0.9, **kwargs))
    return out


def training_steps(network: list[str], batch: int) -> dict[str, Callable[[], None]]:
    """Per optimiser form, one training step of a model set up as the training loop sets it up."""
    cfg = config(network, batch)
    fabric = Fabric(accelerator="cpu", devices=1, precision=resolve_precision(cfg))
    views = [torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last) for _ in range(2)]
    steps = {}
    for name, (cls, kwargs) in OPTIMISERS.items():
        torch.manual_seed(0)
        method, model, _ = setup_model(fabric, cfg)
        optimizer = fabric.setup_optimizers(cls(param_groups(method, cfg.optim), lr=0.3, momentum=0.9, **kwargs))
        steps[name] = functools.partial(optimizer_step, fabric, model, optimizer, *views)
    return steps


def time_steps(step: Callable[[], None], steps: int) -> float:
    """Milliseconds per call of ``step``, over ``steps`` calls."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, n: int) -> dict[str, list[float]]:
    """Milliseconds per call of each step, one block of ``n`` calls per step and round, after two warm-up calls."""
    for step in steps.values():
        time_steps(step, 2)  # warm up; creates the momentum buffers
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(time_steps(step, n))
    return times


def report(title: str, times: dict[str, list[float]]) -> dict[str, float]:
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(title)
    for name, ms in medians.items():
        print(f"  {name:<13} {ms:8.2f} ms/step   {ms / medians['sempairs']:.2f}x sempairs' time "
              f"(rounds {min(times[name]):.2f}-{max(times[name]):.2f})")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per timed block")
    parser.add_argument("--batch", type=int, default=128, help="pairs per training step (0: skip the training step)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, timm {timm.__version__}, {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{args.rounds} rounds")
    results = {}
    for network, overrides in NETWORKS.items():
        runs = setups(overrides)
        n_params = sum(p.numel() for p in runs["sempairs"][0].parameters())
        times = interleaved({name: optimizer.step for name, (_, optimizer) in runs.items()}, args.rounds, args.steps)
        weights = {name: torch.cat([p.detach().flatten() for p in model.parameters()]) for name, (model, _) in runs.items()}
        gap = max((weights[name] - weights["sempairs"]).abs().max().item() for name in weights)
        print(f"\n{network}: {n_params / 1e6:.2f} M parameters")
        medians = report(f" optimiser step ({args.steps} per block; largest weight difference after "
                         f"{2 + args.rounds * args.steps} steps: {gap:.1e})", times)
        results[network] = {"parameters": n_params, "step_ms": medians, "step_rounds": times, "weight_gap": gap}
        if args.batch:
            train_times = interleaved(training_steps(overrides, args.batch), args.rounds, 2)
            train = report(f" training step (batch {args.batch} pairs, forward + backward + step, 2 per block)",
                           train_times)
            results[network].update(train_ms=train, train_rounds=train_times)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
