"""Trimmed convolutions against the definition: the full zero-padded convolution, values and gradients."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sempairs.models import BackboneConfig, build_backbone
from sempairs.models.trimmed_conv import TrimmedConv2d, trim_padding_taps, used_taps


def _reads_data(size: int, kernel: int, stride: int, padding: int, tap: int) -> bool:
    """Written out: does ``tap`` multiply an input position (not padding) for some output position?"""
    padded = [False] * padding + [True] * size + [False] * padding
    return any(padded[o + tap] for o in range(0, len(padded) - kernel + 1, stride))


@pytest.mark.parametrize("size,kernel,stride,padding", [
    (s, k, st, p) for s in (1, 2, 3, 4, 5, 8) for k in (1, 2, 3, 5, 7) for st in (1, 2) for p in range(0, 4)
    if s + 2 * p >= k])
def test_used_taps_are_the_taps_that_read_data(size, kernel, stride, padding):
    reading = [t for t in range(kernel) if _reads_data(size, kernel, stride, padding, t)]
    span = used_taps(size, kernel, stride, padding)
    if not reading:  # every output reads padding only: nothing to trim to
        assert span is None
    elif span is not None:
        assert span == (reading[0], reading[-1])
    else:  # only when a narrower kernel with symmetric padding would change the output size
        first, last = reading[0], reading[-1]
        outputs = (size + 2 * padding - kernel) // stride + 1
        assert (size + 2 * (padding - first) - (last - first + 1)) // stride + 1 != outputs


CASES = [(size, kernel, stride, padding, groups)
         for size, (kernel, padding), stride, groups in itertools.product(
             (1, 2, 3, 5), ((3, 1), (7, 3), (1, 0), (5, 2)), (1, 2), (1, 2))]


@pytest.mark.parametrize("size,kernel,stride,padding,groups", CASES)
def test_trimmed_convolution_matches_the_full_one(size, kernel, stride, padding, groups):
    torch.manual_seed(size * 100 + kernel * 10 + stride + padding + groups)
    full = nn.Conv2d(4, 6, kernel, stride=stride, padding=padding, groups=groups, bias=True).double()
    trimmed = trim_padding_taps(copy.deepcopy(full))
    assert type(trimmed) is TrimmedConv2d
    x = torch.randn(3, 4, size, size + 1, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = F.conv2d(xa, full.weight, full.bias, stride, padding, 1, groups)  # the definition
    yb = trimmed(xb)
    assert yb.shape == ya.shape
    torch.testing.assert_close(yb, ya)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad)
    torch.testing.assert_close(trimmed.weight.grad, full.weight.grad)
    torch.testing.assert_close(trimmed.bias.grad, full.bias.grad)


def test_a_3x3_convolution_on_a_1x1_map_runs_with_its_centre_tap_only(monkeypatch):
    conv = trim_padding_taps(nn.Conv2d(8, 8, 3, padding=1, bias=False))
    kernels = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda x, w, *a: kernels.append(tuple(w.shape[-2:])) or real(x, w, *a))
    conv(torch.randn(2, 8, 1, 1))
    conv(torch.randn(2, 8, 4, 4))  # every tap reads data: the plain path
    assert kernels == [(1, 1), (3, 3)]
    grad = torch.autograd.grad(conv(torch.randn(2, 8, 1, 1)).sum(), conv.weight)[0]
    assert grad[:, :, 1, 1].abs().sum() > 0 and grad.sum() == grad[:, :, 1, 1].sum()


def test_resnet18_standard_stem_at_32px_is_unchanged_by_trimming():
    """The whole network built for the CPU (trimmed) and for another device (plain): same initialisation, same
    parameter names, and in float64 the same features and gradients."""
    torch.manual_seed(0)
    trimmed, _ = build_backbone(BackboneConfig(name="resnet18", small_stem=False))
    torch.manual_seed(0)
    plain, _ = build_backbone(BackboneConfig(name="resnet18", small_stem=False), device="cuda")  # built on the CPU
    assert any(isinstance(m, TrimmedConv2d) for m in trimmed.modules())
    assert not any(isinstance(m, TrimmedConv2d) for m in plain.modules())
    assert list(plain.state_dict()) == list(trimmed.state_dict())
    for (name, a), b in zip(plain.state_dict().items(), trimmed.state_dict().values()):
        assert torch.equal(a, b), name  # no random numbers drawn by trimming
    trimmed, plain = trimmed.double().train(), plain.double().train()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    ya, yb = plain(x), trimmed(x)
    torch.testing.assert_close(yb, ya)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), trimmed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    plain.load_state_dict(trimmed.state_dict())  # checkpoints move between the two


def test_trimming_shares_the_parameters_and_leaves_other_modules_alone():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1)))
    weights = [net[0].weight, net[1][1].weight]
    trim_padding_taps(net.eval())
    assert [type(m) for m in net.modules()] == [nn.Sequential, TrimmedConv2d, nn.Sequential, nn.BatchNorm2d, TrimmedConv2d]
    assert net[0].weight is weights[0] and net[1][1].weight is weights[1] and not net[0].training


def test_a_trimmed_convolution_on_another_device_computes_every_tap(monkeypatch):
    """Moved off the CPU, a trimmed network runs as the plain one (seen through the device check, on meta tensors)."""
    conv = trim_padding_taps(nn.Conv2d(8, 8, 3, padding=1, bias=False)).to("meta")
    kernels = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda x, w, *a: kernels.append(tuple(w.shape[-2:])) or real(x, w, *a))
    conv(torch.randn(2, 8, 1, 1, device="meta"))
    assert kernels == [(3, 3)]
