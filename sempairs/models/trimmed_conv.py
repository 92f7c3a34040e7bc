"""Convolutions that skip the kernel taps which, at the input's size, only ever read padding.

On small feature maps a zero-padded convolution's outer taps never touch the image: a 3x3
convolution (padding 1) on a 1x1 map reads data with its centre tap only, a 3x3 stride-2 one on a
2x2 map with its lower-right 2x2 taps. :class:`TrimmedConv2d` computes such a call with the weight
sliced to the taps that read data and the padding reduced to match: the same outputs and the same
gradients (the skipped taps' gradient is exactly zero either way), only the summation order of the
remaining products may differ. It matters for ResNets with the standard stem at 32 px, whose last
stage runs on 1x1 and 2x2 maps: oneDNN's bf16 backward pass computes every tap there, at a tenth
of its forward rate (docs/benchmarks.md, issue 12).

:func:`trim_padding_taps` replaces a network's plain ``nn.Conv2d`` layers by this class, which shares
their parameters: their names and the random initialisation are untouched, so checkpoints load either way.
It pays on the CPU only: ``build_backbone`` trims the ResNets it builds for the CPU, and leaves the plain
``nn.Conv2d`` for other devices (the slow case it avoids is oneDNN's, the CPU library's).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.lru_cache(maxsize=None)
def used_taps(size: int, kernel: int, stride: int, padding: int) -> tuple[int, int] | None:
    """The first and last tap (0-based, along one axis) that reads an input position, for an input of ``size``;
    None when the convolution cannot be computed with fewer taps and the same symmetric padding. Every
    forward pass asks this of every convolution, for a handful of distinct shapes: the answers are kept."""
    outputs = (size + 2 * padding - kernel) // stride + 1
    reads = [tap for tap in range(kernel) if any(0 <= o * stride - padding + tap < size for o in range(outputs))]
    if not reads:
        return None
    first, last = reads[0], reads[-1]
    trimmed_padding = padding - first
    if (size + 2 * trimmed_padding - (last - first + 1)) // stride + 1 != outputs:
        return None
    return first, last


class TrimmedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding, no dilation) computed with only the taps that read data at the input's size.

    On other devices than the CPU it computes every tap, as ``nn.Conv2d`` does (a trimmed network moved there).
    """

    @classmethod
    def like(cls, conv: nn.Conv2d) -> "TrimmedConv2d":
        """A TrimmedConv2d with ``conv``'s settings and its very parameters (shared, not copied; no random numbers drawn)."""
        trimmed = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
        trimmed.weight, trimmed.bias = conv.weight, conv.bias
        trimmed.train(conv.training)
        return trimmed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or self.padding_mode != "zeros" or isinstance(self.padding, str)
                or self.dilation != (1, 1)):
            return super().forward(x)
        spans = [used_taps(x.shape[-2 + axis], self.kernel_size[axis], self.stride[axis], self.padding[axis])
                 for axis in (0, 1)]
        if None in spans or all(span == (0, k - 1) for span, k in zip(spans, self.kernel_size)):
            return super().forward(x)
        (top, bottom), (left, right) = spans
        return F.conv2d(x, self.weight[:, :, top:bottom + 1, left:right + 1], self.bias, self.stride,
                        (self.padding[0] - top, self.padding[1] - left), 1, self.groups)


def trim_padding_taps(net: nn.Module) -> nn.Module:
    """``net`` with each plain ``nn.Conv2d`` replaced by a :class:`TrimmedConv2d` sharing its parameters (in place;
    ``net`` itself is returned trimmed when it is such a convolution)."""
    if type(net) is nn.Conv2d:
        return TrimmedConv2d.like(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                setattr(parent, name, TrimmedConv2d.like(child))
    return net
