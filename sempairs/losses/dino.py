"""DINO: cross-entropy of student to centred, sharpened teacher, and the centre's update."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import no_autocast, check_temperature


def dino_loss(
    student_out: list[Tensor],
    teacher_out: list[Tensor],
    center: Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> Tensor:
    r"""DINO self-distillation cross-entropy.

    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
    ICCV 2021.

    ``student_out`` holds one ``(B, K)`` tensor of logits per crop (global crops
    first, then local crops); ``teacher_out`` one per global crop, so teacher
    view ``i`` and student view ``i`` are the same crop. With
    :math:`P_t^{(i)} = \mathrm{softmax}((t_i - c) / \tau_t)` (detached) and
    :math:`\log P_s^{(j)} = \mathrm{log\_softmax}(s_j / \tau_s)`

    .. math::  L = \frac{1}{|\mathcal{P}|} \sum_{(i, j) \in \mathcal{P}} \frac1B \sum_b
               -\sum_k P_t^{(i)}[b, k] \log P_s^{(j)}[b, k],\qquad
               \mathcal{P} = \{(i, j) : i < n_t,\ j < n_s,\ i \ne j\}

    Computed in float32 (float64 for float64 inputs) with autocast disabled.
    """
    if len(teacher_out) == 0 or len(student_out) == 0:
        raise ValueError("dino_loss needs at least one teacher and one student view")
    if len(teacher_out) > len(student_out):
        raise ValueError("teacher views must be the first global crops of the student views")
    check_temperature(student_temp)
    check_temperature(teacher_temp)
    ref = student_out[0]
    with no_autocast(ref):
        dt = torch.float64 if ref.dtype == torch.float64 else torch.float32
        c = center.detach().to(device=ref.device, dtype=dt)
        t_probs = [F.softmax((t.detach().to(dt) - c) / teacher_temp, dim=-1) for t in teacher_out]
        s_logp = [F.log_softmax(s.to(dt) / student_temp, dim=-1) for s in student_out]
        total = ref.new_zeros((), dtype=dt)
        n_terms = 0
        for i, p in enumerate(t_probs):
            for j, lp in enumerate(s_logp):
                if i == j:
                    continue
                total = total + (-(p * lp).sum(dim=-1)).mean()
                n_terms += 1
        if n_terms == 0:
            raise ValueError("dino_loss has no (teacher, student) view pairs with i != j")
        return total / n_terms


@torch.no_grad()
def dino_center_update(center: Tensor, teacher_out: list[Tensor], momentum: float = 0.9) -> Tensor:
    r"""DINO centre EMA (Caron et al. 2021).

    .. math::  c \leftarrow m\, c + (1 - m) \frac{1}{|T|} \sum_{t \in T} t

    where the mean is over every row of every teacher view (``torch.cat(teacher_out)``).
    Under an initialised ``torch.distributed`` process group the row sum and
    row count are all-reduced first, so the mean is over the global batch.
    Returns a new tensor with ``center``'s shape, dtype and device; ``center``
    is not modified.
    """
    t = torch.cat([x.detach() for x in teacher_out], dim=0)
    dt = torch.float64 if center.dtype == torch.float64 else torch.float32
    batch_sum = t.to(dt).sum(dim=0)
    count = torch.tensor(float(t.shape[0]), dtype=dt, device=t.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(batch_sum)
        torch.distributed.all_reduce(count)
    batch_mean = (batch_sum / count).to(device=center.device)
    new = center.to(dt) * momentum + batch_mean.reshape(center.shape) * (1.0 - momentum)
    return new.to(center.dtype)
