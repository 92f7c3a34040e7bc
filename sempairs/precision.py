"""Where bf16 pays: the one rule the training loop and feature extraction share."""

from __future__ import annotations

import contextlib

import torch


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, slowly."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def inference_uses_bf16(device: torch.device) -> bool:
    """Whether forward passes without gradients run under bf16 autocast on ``device``: on CUDA, and on CPUs
    that compute bf16 natively.

    Measured on the project's 2-core CPU: 1.8x-3.9x the float32 rate
    (docs/benchmarks.md, ``bench/feature_speed.py``).
    """
    return device.type == "cuda" or (device.type == "cpu" and cpu_computes_bf16())


def inference_autocast(device: torch.device):
    """bf16 autocast where :func:`inference_uses_bf16`, else a context that changes nothing."""
    if inference_uses_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
