"""What training with several processes adds: global BatchNorm statistics, one stop decision for
all processes, and no process left waiting when another fails.

BatchNorm: ``sync_batchnorm`` makes every BatchNorm layer compute its statistics over the global
batch (solo-learn's default for several GPUs; MoCo v2 needs it or ShuffleBN). On GPUs that is
``torch.nn.SyncBatchNorm``. torch has no CPU version (``batch_norm_stats`` has no CPU kernel, and
both SyncBatchNorm and DistributedDataParallel refuse CPU modules), so on the CPU the layers
become :class:`CPUSyncBatchNorm`, which computes the same statistics from differentiable
all-gathers of each process's count, mean and variance (gloo): multi-process CPU runs, and the
tests that compare them with one process, get the same global statistics a GPU run gets.

Failures: a process that raises while the others wait in a collective would leave them waiting
until the process-group timeout. Processes launched by Lightning's own launcher are watched by it
(a child that fails ends them all, within the watcher's 5 s); :func:`end_launched_processes` is
what the main process does when it fails, itself or in a collective a failed child left.
"""

from __future__ import annotations

import subprocess
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from lightning.fabric import Fabric
from torch.nn.modules.batchnorm import _BatchNorm


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm with the statistics of the global batch in training, for CPU processes (any input of 2+ dims).

    The statistics are computed in float32 (float64 for float64 input), as torch's kernels do.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        import torch.distributed.nn.functional as dist_fn

        self._check_input_dim(input)
        x = input.to(torch.float64 if input.dtype == torch.float64 else torch.float32)
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims)
        local = torch.cat([mean.new_full((1,), x.numel() / x.shape[1]), mean, x.var(dims, correction=0)])
        stats = torch.stack(dist_fn.all_gather(local))  # (processes, 1 + 2C), with gradients
        counts, means, variances = stats[:, :1], stats[:, 1 : 1 + len(mean)], stats[:, 1 + len(mean) :]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_var = (counts * (variances + (means - g_mean) ** 2)).sum(0) / total  # biased, as BatchNorm normalises
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():  # the running variance is unbiased, as BatchNorm keeps it
                self.running_mean.lerp_(g_mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_((g_var * total / (total - 1)).to(self.running_var.dtype), factor)
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = (x - g_mean.view(shape)) * torch.rsqrt(g_var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        out = out if self.bias is None else out + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with global-batch BatchNorm: torch's SyncBatchNorm, or :class:`CPUSyncBatchNorm` on the CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            layer.__class__ = CPUSyncBatchNorm  # the same parameters and buffers, the global forward
    return module


def agree(fabric: Fabric, *values: float) -> list[float]:
    """The mean over all processes of each value (a NaN anywhere makes that mean NaN): one decision for all."""
    mean = fabric.all_reduce(torch.tensor(values, dtype=torch.float64, device=fabric.device), reduce_op="mean")
    return mean.tolist()


def end_launched_processes(fabric: Fabric, grace_s: float = 3.0) -> int | None:
    """Kill the processes this process launched (Lightning's launcher on one node), so none waits for it forever.

    Returns the exit status of one that ended with an error by itself within ``grace_s``: this
    process's error is then a consequence of it (gloo's "Connection closed by peer" in the
    collective that waited for it), and that process has already reported its own. Those still
    running after ``grace_s`` wait for this process and are killed. They are then forgotten, so
    that the launcher's watcher does not take their end for a failure of theirs and kill this
    process before it has reported its own error.
    """
    procs = getattr(fabric.strategy.launcher, "procs", [])
    deadline = time.monotonic() + grace_s
    failed = None
    for proc in procs:
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        else:
            failed = failed or code or None
    procs.clear()
    return failed
