"""CPU training speed, side by side in one run: precision x compile, bare step vs end to end.

For one model (default: SimCLR, ResNet-18 with the standard stem, 32 px, batch 128, the quickstart's
SGD), and for the quickstart's network (small-image stem, width 0.25) with both stem widths of
``configs/exp_cpu_recipe_stem.yaml`` (64 and 16 channels, at ``train.precision=auto``), it measures
in the same process, interleaved over ``--rounds`` rounds (the median is reported):

  matmul      2048 x 2048 matrix products in float32 and bf16: the machine's achievable FLOP/s;
  bare step   forward + backward + optimiser step on ready, already-augmented tensors;
  end to end  what the training loop does per step: gather the pairs' uint8 images, augment them
              with the batched augmentation, then the same step (``PairBatches`` + ``optimizer_step``);
  loop        ``sempairs.train.train`` itself for ``--rounds`` short epochs after a first one (the median
              epoch's rate; the first includes compiling and warm-up),

for float32 and bf16 autocast, eager and compiled (bf16 is skipped where the CPU has no native
bf16: emulated, it is hundreds of times slower), plus the setting ``train.precision=auto`` picks on
this machine (eager: ``train.compile`` is off unless asked for). "today" is float32 eager with plain convolutions (no
``models.trimmed_conv``), the training step as it was when issue 12 was filed. Rates count views (each image of a pair is one view through the network); the
loop's ``history.csv`` column ``images_per_s`` counts pairs (half as many).

    python -m bench.cpu_speed [--batch 128] [--steps 12] [--rounds 3] [--data cifar10] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence

import torch
from lightning.fabric import Fabric
from torch.utils.flop_counter import FlopCounterMode

import sempairs.models.backbones as backbones
from bench.throughput import synchronize
from sempairs.config import load_config
from sempairs.pairs import augmented_pairs
from sempairs.train import train
from sempairs.train.batches import PairBatches
from sempairs.train.data import load_split
from sempairs.precision import cpu_computes_bf16
from sempairs.train.loop import optimizer_step, resolve_precision, setup_model

PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
TODAY = "today: fp32 eager, plain conv"


@contextlib.contextmanager
def plain_convolutions():
    """Backbones built inside keep plain ``nn.Conv2d`` layers (every tap computed), as before ``trimmed_conv``."""
    trim = backbones.trim_padding_taps
    backbones.trim_padding_taps = lambda net: net
    try:
        yield
    finally:
        backbones.trim_padding_taps = trim


def matmul_gflops(dtype: torch.dtype, n: int = 2048, seconds: float = 1.0, device: str = "cpu") -> float:
    """Achieved GFLOP/s of ``n x n`` matrix products in ``dtype`` on ``device`` (at least one product, about
    ``seconds`` long)."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    a @ b
    synchronize(device)
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:
        for _ in range(10 if device == "cuda" else 1):  # a GPU call only queues the product
            a @ b
            done += 1
        synchronize(device)
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


QUICKSTART = {f"quickstart stem {w}": ["backbone.small_stem=true", "backbone.width=0.25", f"backbone.stem_width={w}"]
              for w in (64, 16)}


def overrides(batch: int, precision: str, compiled: bool, network: Sequence[str] = ()) -> list[str]:
    """The bench's settings; ``network``: backbone overrides replacing the standard-stem ResNet-18."""
    return ["backbone.name=resnet18", "backbone.small_stem=false", "data.size=32", f"train.batch_size={batch}",
            "optim.name=sgd", "optim.lr=0.6", "optim.weight_decay=5e-4",  # the quickstart's optimiser
            f"train.precision={precision}", f"train.compile={str(compiled).lower()}", "train.accelerator=cpu", *network]


class Setting:
    """One precision x compile setting: its model, optimiser, ready tensors and end-to-end batches."""

    def __init__(self, name: str, cfg, store, plain: bool = False):
        self.name, self.cfg = name, cfg
        self.fabric = Fabric(accelerator="cpu", devices=1, precision=resolve_precision(cfg))
        torch.manual_seed(0)
        with plain_convolutions() if plain else contextlib.nullcontext():
            _, self.model, self.optimizer = setup_model(self.fabric, cfg)
        b = cfg.train.batch_size
        self.ready = [torch.randn(b, 3, 32, 32).contiguous(memory_format=torch.channels_last) for _ in range(2)]
        self.batches = PairBatches(store.images, augmented_pairs(len(store)), cfg.augment, self.fabric.device,
                                   channels_last=cfg.train.channels_last)
        self.order = torch.randperm(len(store)).view(-1, b)[: len(store) // b] if len(store) >= b else None
        self.gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(2):  # compiles a compiled model; warms the allocator
            self.bare()
        self.warmup_s = time.perf_counter() - start
        self.rates: dict[str, list[float]] = {"bare": [], "end to end": []}
        self._next = 0

    def bare(self) -> None:
        optimizer_step(self.fabric, self.model, self.optimizer, *self.ready)

    def end_to_end(self) -> None:
        idx = self.order[self._next % len(self.order)]
        self._next += 1
        optimizer_step(self.fabric, self.model, self.optimizer, *self.batches.views(idx, self.gen))

    def measure(self, steps: int) -> None:
        for kind, fn in (("bare", self.bare), ("end to end", self.end_to_end)):
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            self.rates[kind].append(2 * self.cfg.train.batch_size * steps / (time.perf_counter() - start))

    def median(self, kind: str) -> float:
        return statistics.median(self.rates[kind])


def train_flops_per_view(cfg, plain: bool = False) -> float:
    """FLOPs of one training step (forward + backward) per view, counted by torch's FLOP counter: with plain
    convolutions every kernel tap, with trimmed ones (the default) only the taps that read data."""
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    quiet = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": False})})
    with plain_convolutions() if plain else contextlib.nullcontext():
        _, model, optimizer = setup_model(fabric, quiet)
    b = cfg.train.batch_size
    views = [torch.randn(b, 3, 32, 32) for _ in range(2)]
    with FlopCounterMode(display=False) as counter:
        out = model(*views)
        out.loss.backward()
    return counter.get_total_flops() / (2 * b)


def loop_rates(cfg, store_pairs: int, out: str, name: str, rounds: int) -> list[float]:
    """Views/s of each epoch of ``train`` after the first (which includes compiling and warm-up): ``rounds``
    epochs, the loop's rounds."""
    run = cfg.model_copy(update={
        "name": name, "out_dir": out,
        "data": cfg.data.model_copy(update={"limit_per_class": store_pairs // 10, "test_split": None}),
        "train": cfg.train.model_copy(update={"epochs": 1 + rounds, "checkpoint_every": 100}),
    })
    result = train(run, progress=False)
    return [2 * epoch["images_per_s"] for epoch in result.history[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-pairs", type=int, default=2560, help="pairs per epoch of the loop rows (0: skip them)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()

    native_bf16 = cpu_computes_bf16()
    # emulated bf16 takes about a minute per 2048^2 product: a smaller one measures the same rate
    gflops = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16, 2048 if native_bf16 else 512)}
    auto = load_config(None, overrides(args.batch, "auto", False))
    auto_name = f"auto ({resolve_precision(auto)}, eager)"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}; native bf16: {native_bf16}")
    print(f"matmul: fp32 {gflops['fp32']:.0f} GFLOP/s (2048^2), bf16 {gflops['bf16']:.1f} GFLOP/s "
          f"({2048 if native_bf16 else 512}^2)")

    store = load_split(auto.data, "train", 256)
    flops, plain_flops = train_flops_per_view(auto), train_flops_per_view(auto, plain=True)
    print(f"ResNet-18 standard stem, 32 px, SimCLR, batch {args.batch} pairs: {flops / 1e9:.3f} GFLOP per view (fwd+bwd; "
          f"{plain_flops / 1e9:.3f} with plain convolutions, whose taps on padding are computed too)")

    wanted = [(TODAY, "fp32", False)] + [(f"{p} {'compiled' if c else 'eager'}", p, c) for p in PRECISIONS
                                         for c in (False, True) if p == "fp32" or native_bf16]
    wanted = [(name, overrides(args.batch, PRECISIONS[p], c), name == TODAY) for name, p, c in wanted]
    quick = {f"{net}, {auto_name}": overrides(args.batch, "auto", False, extra) for net, extra in QUICKSTART.items()}
    wanted += [(name, over, False) for name, over in quick.items()]
    settings = []
    for name, over, plain in wanted:
        setting = Setting(name, load_config(None, over), store, plain=plain)
        setting.flops = train_flops_per_view(setting.cfg, plain=plain)  # the FLOPs this setting computes
        settings.append(setting)
        print(f"  built {name} ({setting.warmup_s:.0f} s to the first steps; {setting.flops / 1e9:.3f} GFLOP per view)",
              flush=True)
    for r in range(args.rounds):
        for setting in settings:
            setting.measure(args.steps)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)

    today = next(s for s in settings if s.name == TODAY).median("end to end")
    print(f"\n{'setting':44s} {'bare views/s':>12s} {'e2e views/s':>12s} {'e2e/bare':>9s} {'e2e/today':>10s} {'% of matmul':>12s}")
    rows = []
    for s in settings:
        bare, e2e = s.median("bare"), s.median("end to end")
        peak = gflops["bf16" if resolve_precision(s.cfg).startswith("bf16") else "fp32"]
        executed = s.flops
        row = {"setting": s.name, "bare": bare, "end_to_end": e2e, "e2e_over_bare": e2e / bare, "e2e_over_today": e2e / today,
               "flop_share": e2e * executed / 1e9 / peak, "warmup_s": s.warmup_s, "rounds": s.rates}
        rows.append(row)
        print(f"{s.name:44s} {bare:12.0f} {e2e:12.0f} {e2e / bare:9.2f} {e2e / today:10.2f} {100 * row['flop_share']:11.0f}%")
    if not native_bf16:
        print(f"bf16 skipped: this CPU has no native bf16 (bf16 matmul {gflops['bf16']:.1f} GFLOP/s vs fp32 {gflops['fp32']:.0f})")

    loop_rounds = {}
    by_setting = {row["setting"]: row for row in rows}
    if args.loop_pairs:
        with tempfile.TemporaryDirectory() as out:
            with plain_convolutions():
                loop_rounds[TODAY] = loop_rates(load_config(None, overrides(args.batch, "32-true", False)),
                                                args.loop_pairs, out, "today", args.rounds)
            loop_rounds[auto_name] = loop_rates(auto, args.loop_pairs, out, "auto", args.rounds)
            for i, (name, over) in enumerate(quick.items()):
                loop_rounds[name] = loop_rates(load_config(None, over), args.loop_pairs, out, f"quickstart-{i}", args.rounds)
    loops = {name: statistics.median(rates) for name, rates in loop_rounds.items()}
    if loops:
        print(f"train() loop: median of {args.rounds} epochs after the first (range in brackets)")
        for name, rate in loops.items():
            row = by_setting.get(name)
            print(f"train() loop, {name:44s} {rate:8.0f} views/s ({min(loop_rounds[name]):.0f}-{max(loop_rounds[name]):.0f})"
                  f"  {rate / loops[TODAY]:5.2f}x today"
                  + (f", {rate / row['bare']:4.2f}x its bare step, {rate / row['end_to_end']:4.2f}x its end to end" if row else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(), "native_bf16": native_bf16,
                       "matmul_gflops": gflops, "train_gflop_per_view": flops / 1e9,
                       "plain_train_gflop_per_view": plain_flops / 1e9, "batch": args.batch,
                       "settings": rows, "loop": loops, "loop_rounds": loop_rounds, "auto": auto_name}, f, indent=1)


if __name__ == "__main__":
    main()
