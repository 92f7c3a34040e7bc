"""SimCLR's label-aware variants (mask_same_class, supcon) against a loss written out anchor by anchor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from sempairs.methods import METHODS
from sempairs.models import BackboneConfig, build_backbone


def _simclr(**variant):
    torch.manual_seed(0)
    backbone, dim = build_backbone(BackboneConfig(name="resnet18", small_stem=True, width=0.125), 16)
    cls = METHODS["simclr"]
    return cls(backbone, dim, cls.config_class(proj_hidden_dim=32, proj_dim=8, **variant)).double()


def _reference(z: torch.Tensor, labels: torch.Tensor, t: float, variant: str) -> float:
    """The per-anchor NT-Xent / SupCon loss, averaged, with explicit loops (views: cat(view1, view2))."""
    z = F.normalize(z, dim=1)
    n2 = len(z)
    partner = [(a + n2 // 2) % n2 for a in range(n2)]
    total = 0.0
    for a in range(n2):
        others = [b for b in range(n2) if b != a]
        if variant == "mask_same_class":
            others = [b for b in others if labels[b] != labels[a] or b == partner[a]]
        logits = {b: float(z[a] @ z[b]) / t for b in others}
        log_den = math.log(sum(math.exp(v) for v in logits.values()))
        positives = [partner[a]] if variant != "supcon" else [b for b in others if labels[b] == labels[a]]
        total += sum(log_den - logits[p] for p in positives) / len(positives)
    return total / n2


@pytest.mark.parametrize("variant", ["plain", "mask_same_class", "supcon"])
def test_variant_matches_the_written_out_loss(variant):
    method = _simclr(**({variant: True} if variant != "plain" else {}))
    gen = torch.Generator().manual_seed(1)
    v1, v2 = (torch.rand(6, 3, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    pair_labels = torch.tensor([0, 1, 0, 2, 1, 0])
    labels = torch.cat([pair_labels, pair_labels])
    out = method(v1, v2, labels=labels if variant != "plain" else None)
    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat([v1, v2])))  # same batch, same BatchNorm statistics
    expected = _reference(z, labels, method.cfg.temperature, variant)
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)


def test_the_variants_differ_from_the_plain_loss_and_need_labels():
    gen = torch.Generator().manual_seed(1)
    v1, v2 = (torch.rand(6, 3, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    labels = torch.tensor([0, 1, 0, 2, 1, 0] * 2)
    plain = _simclr()(v1, v2).loss.item()
    for variant in ("mask_same_class", "supcon"):
        method = _simclr(**{variant: True})
        assert method.uses_labels and method(v1, v2, labels=labels).loss.item() != pytest.approx(plain)
        with pytest.raises(ValueError, match="needs the views' class labels"):
            method(v1, v2)


def test_at_most_one_variant():
    with pytest.raises(ValidationError, match="at most one"):
        METHODS["simclr"].config_class(mask_same_class=True, supcon=True)
