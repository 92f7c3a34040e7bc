"""Feature extraction speed on this machine: float32 vs bf16 autocast, contiguous vs channels-last.

For the CPU recipe's backbone (ResNet-18, small stem, width 0.25) and the standard-stem ResNet-18,
at 32 px, forward passes without gradients on 1,000 random images, in one process:

    python -m bench.feature_speed [--images 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from sempairs.models import BackboneConfig, build_backbone
from sempairs.precision import cpu_computes_bf16

BACKBONES = {"small stem, width 0.25": BackboneConfig(small_stem=True, width=0.25),
             "standard stem": BackboneConfig(small_stem=False)}


def rate(net: torch.nn.Module, x: torch.Tensor, bf16: bool, rounds: int) -> float:
    """Median images/s of ``net(x)`` over ``rounds`` timed passes (after one warm-up pass on a slice)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    with torch.no_grad(), autocast:
        net(x[:100])
        for _ in range(rounds):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"native bf16: {cpu_computes_bf16()}")
    x = torch.randn(args.images, 3, 32, 32)
    print(f"{'backbone':24s} {'fp32':>8s} {'fp32 CL':>8s} {'bf16':>8s} {'bf16 CL':>8s}  (images/s; CL: channels-last)")
    for name, cfg in BACKBONES.items():
        net, _ = build_backbone(cfg, 32)
        net.eval()
        rates = []
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net, xs = net.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            rates += [rate(net, xs, False, args.rounds), rate(net, xs, True, args.rounds) if cpu_computes_bf16() else float("nan")]
        print(f"{name:24s} {rates[0]:8.0f} {rates[2]:8.0f} {rates[1]:8.0f} {rates[3]:8.0f}")


if __name__ == "__main__":
    main()
