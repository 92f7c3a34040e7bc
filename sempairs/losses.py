"""Self-supervised losses as plain functions of tensors.

Every function here depends on torch only (plus the standard library), takes
and returns tensors, and holds no state, so it can be used without the rest of
sempairs (in the spirit of lightly's loss modules).

Conventions
-----------
* Embeddings are ``(N, D)`` tensors; where a loss is defined on the unit sphere
  the inputs are L2-normalised *inside* the function.
* Losses that exponentiate similarities (contrastive losses, DINO) or compute
  second moments (VICReg, Barlow Twins) run in at least float32 with autocast
  disabled, so calling them under ``torch.autocast(dtype=torch.bfloat16)``
  gives a float32 result. float64 inputs stay float64.
* Stop-gradients prescribed by the papers are applied inside the functions
  (``z`` in SimSiam/BYOL, ``k`` and the queue in MoCo, the teacher in DINO, the
  support set in NNCLR).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "nt_xent",
    "info_nce",
    "negative_cosine",
    "byol_loss",
    "vicreg_terms",
    "vicreg_loss",
    "barlow_twins_loss",
    "dino_loss",
    "dino_center_update",
    "nearest_neighbour",
    "nnclr_loss",
    "ema_update",
    "cosine_momentum",
]


# --------------------------------------------------------------------------- helpers


def _wide(x: Tensor) -> Tensor:
    """Cast half-precision (and integer) tensors up to float32; keep float32/float64."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _no_autocast(x: Tensor):
    """A context that disables autocast on ``x``'s device type."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must be 2-D tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# --------------------------------------------------------------------------- SimCLR / SupCon


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    positives: Tensor | None = None,
    *,
    columns: tuple[Tensor, Tensor] | None = None,
    offset: int = 0,
    exclude: Tensor | None = None,
) -> Tensor:
    r"""NT-Xent (normalised temperature-scaled cross-entropy), SimCLR.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020.

    ``z1`` and ``z2`` are ``(N, D)`` projections of two views of the same ``N``
    pairs. They are stacked into ``2N`` views ``u_0..u_{2N-1}`` (view ``a`` and
    ``a + N`` come from pair ``a mod N``), L2-normalised, and with
    ``s_ab = u_a . u_b`` each anchor ``a`` scores

    .. math::  \ell(a, b) = -\log \frac{\exp(s_{ab}/t)}{\sum_{k \ne a} \exp(s_{ak}/t)}

    Without ``positives`` the loss is the mean over the ``2N`` anchors of
    ``ell(a, partner(a))``: one positive (the other view of the same pair) and
    ``2N - 2`` negatives.

    ``positives`` is an optional ``(N, N)`` boolean matrix over *pair* indices:
    ``positives[i, j]`` says the views of pair ``j`` are also positives for the
    anchors of pair ``i`` (e.g. two pairs drawn from the same semantic group,
    SePP-ID's extra positives). The positive set of anchor ``a`` is then
    ``P(a) = {b != a : positives[pair(a), pair(b)]}`` and the per-anchor loss is
    the SupCon "L_out" form (Khosla et al., "Supervised Contrastive Learning",
    NeurIPS 2020)

    .. math::  L_a = \frac{1}{|P(a)|} \sum_{p \in P(a)} \ell(a, p)

    averaged over the ``2N`` anchors. The diagonal of ``positives`` is always
    treated as True (a pair's two views are always positives of each other), so
    ``positives=None`` and ``positives=eye(N)`` give exactly the same loss. The
    matrix is used as given (it is not symmetrised).

    Local rows against global columns (lightly's distributed form): with
    ``columns=(Z1, Z2)``, the ``(M, D)`` projections of a whole batch of which
    ``z1``, ``z2`` are the pairs ``offset .. offset + N - 1`` (one process's share
    of a batch gathered across processes), the anchors are the ``2N`` local views
    and the views scored against are all ``2M`` views of ``columns``; the loss is
    the mean over the local anchors (``positives``, if given, is then ``(N, M)``:
    local pairs by batch pairs). The full ``2M x 2M`` matrix is never built, and
    the mean of this loss over the processes' shares is the loss of the whole
    batch.

    ``exclude`` is an optional ``(2N, 2M)`` boolean matrix over *views* (rows:
    the anchors ``cat(z1, z2)``, columns: ``cat(columns)``): ``exclude[a, b]``
    removes view ``b`` from the denominator of anchor ``a`` (e.g. the views of
    images of the anchor's class when labels are known: same-class negatives
    masked, without adding them as positives). An anchor's own positives are
    never removed.

    The similarity is computed in float32 (float64 if the inputs are float64)
    with autocast disabled, and the denominator with ``logsumexp``.
    """
    _check_pair(z1, z2, "z1 and z2")
    _check_temperature(temperature)
    n = z1.shape[0]
    if columns is None:
        columns, offset = (z1, z2), 0
    _check_pair(columns[0], columns[1], "columns")
    m = columns[0].shape[0]
    if columns[0].shape[1] != z1.shape[1] or not 0 <= offset <= m - n:
        raise ValueError(f"z1 {tuple(z1.shape)} at offset {offset} must be rows of the columns {tuple(columns[0].shape)}")
    with _no_autocast(z1):
        dt = torch.float64 if z1.dtype == torch.float64 else torch.float32
        anchors = F.normalize(torch.cat([z1, z2], dim=0).to(dt), dim=1)
        views = F.normalize(torch.cat(columns, dim=0).to(dt), dim=1)
        rows = torch.arange(2 * n, device=anchors.device)
        own = rows % n + offset + (rows >= n) * m  # the column of each anchor itself
        self_mask = torch.zeros(2 * n, 2 * m, dtype=torch.bool, device=anchors.device)
        self_mask[rows, own] = True
        sim = (anchors @ views.T / temperature).masked_fill(self_mask, float("-inf"))
        if exclude is not None:
            if positives is not None:
                raise ValueError("give positives (SupCon) or exclude (masked negatives), not both")
            if exclude.shape != (2 * n, 2 * m):
                raise ValueError(f"exclude must have shape ({2 * n}, {2 * m}), got {tuple(exclude.shape)}")
            drop = exclude.to(device=anchors.device, dtype=torch.bool).clone()
            drop[rows, (own + m) % (2 * m)] = False  # the partner view stays
            sim = sim.masked_fill(drop, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        if positives is None:
            return -log_prob[rows, (own + m) % (2 * m)].mean()
        if positives.shape != (n, m):
            raise ValueError(f"positives must have shape ({n}, {m}), got {tuple(positives.shape)}")
        pos = positives.to(device=anchors.device) != 0
        pos = pos | self_mask[:n, :m]  # a pair's own views are always positives
        pos = pos.repeat(2, 2) & ~self_mask
        per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1)
        return per_anchor.mean()


# --------------------------------------------------------------------------- MoCo


def info_nce(q: Tensor, k: Tensor, queue: Tensor | None, temperature: float = 0.2) -> Tensor:
    r"""InfoNCE as used by MoCo v2.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual
    Representation Learning", CVPR 2020; Chen, Fan, Girshick, He, "Improved
    Baselines with Momentum Contrastive Learning", arXiv 2003.04297 (2020).

    ``q`` (queries) and ``k`` (keys) are ``(N, D)`` and are L2-normalised here;
    ``k`` is treated as a constant (detached). With a ``queue`` of ``K``
    negative keys (``(K, D)``, normalised here too and detached) the logits of
    query ``i`` are ``[q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / t`` and

    .. math::  L = \frac{1}{N} \sum_i -\log \frac{\exp(q_i k_i / t)}
               {\exp(q_i k_i / t) + \sum_j \exp(q_i \cdot queue_j / t)}

    i.e. cross-entropy with target 0. With ``queue=None`` the negatives of
    query ``i`` are the other keys of the batch ``k_j, j != i`` (logits
    ``q k^T / t``, target ``i``).
    """
    _check_pair(q, k, "q and k")
    _check_temperature(temperature)
    with _no_autocast(q):
        dt = torch.float64 if q.dtype == torch.float64 else torch.float32
        qn = F.normalize(q.to(dt), dim=1)
        kn = F.normalize(k.detach().to(dt), dim=1)
        if queue is None:
            logits = qn @ kn.T / temperature
            target = torch.arange(q.shape[0], device=q.device)
        else:
            if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
                raise ValueError(f"queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
            negs = F.normalize(queue.detach().to(device=q.device, dtype=dt), dim=1)
            pos = (qn * kn).sum(dim=1, keepdim=True)
            logits = torch.cat([pos, qn @ negs.T], dim=1) / temperature
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)


# --------------------------------------------------------------------------- SimSiam / BYOL


def _cosine(p: Tensor, z: Tensor) -> Tensor:
    _check_pair(p, z, "p and z")
    with _no_autocast(p):
        dt = torch.float64 if p.dtype == torch.float64 else torch.float32
        return (F.normalize(p.to(dt), dim=1) * F.normalize(z.detach().to(dt), dim=1)).sum(dim=1)


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    r"""SimSiam's symmetric-half loss :math:`D(p, \mathrm{stopgrad}(z))`.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021:

    .. math::  D(p, z) = -\frac{1}{N} \sum_i \frac{p_i}{\|p_i\|} \cdot \frac{z_i}{\|z_i\|}

    ``z`` is detached. The full SimSiam loss is
    ``0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))``.
    """
    return -_cosine(p, z).mean()


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    r"""BYOL regression loss.

    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020:

    .. math::  L = \frac{1}{N} \sum_i \left\| \bar p_i - \bar z_i \right\|_2^2
                 = \frac{1}{N} \sum_i \left(2 - 2 \cos(p_i, z_i)\right)

    with ``z`` (the target network's projection) detached. Symmetrise by adding
    the loss with the views swapped.
    """
    return (2.0 - 2.0 * _cosine(p, z)).mean()


# --------------------------------------------------------------------------- VICReg


def _off_diagonal(m: Tensor) -> Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_terms(z1: Tensor, z2: Tensor, eps: float = 1e-4) -> dict[str, Tensor]:
    r"""The three unweighted VICReg terms (Bardes, Ponce, LeCun, ICLR 2022).

    For ``(N, D)`` embeddings ``z1``, ``z2`` (``N >= 2``):

    * ``invariance``  :math:`s = \frac{1}{ND} \sum_{i,d} (z1_{id} - z2_{id})^2`
    * ``variance``    :math:`v = \frac12 \sum_{z \in \{z1, z2\}} \frac1D \sum_d
      \max(0, 1 - \sqrt{\mathrm{Var}(z_{:,d}) + \epsilon})`, unbiased variance, gamma = 1
    * ``covariance``  :math:`c = \sum_{z \in \{z1, z2\}} \frac1D \sum_{i \ne j} C(z)_{ij}^2`,
      :math:`C(z) = \frac{1}{N-1} (z - \bar z)^T (z - \bar z)`

    (averaging the variance term and summing the covariance term over the two
    branches, as in the official implementation).
    """
    _check_pair(z1, z2, "z1 and z2")
    n, d = z1.shape
    if n < 2:
        raise ValueError("VICReg needs a batch of at least 2")
    with _no_autocast(z1):
        dt = torch.float64 if z1.dtype == torch.float64 else torch.float32
        a, b = z1.to(dt), z2.to(dt)
        invariance = F.mse_loss(a, b)
        a = a - a.mean(dim=0)
        b = b - b.mean(dim=0)
        std_a = torch.sqrt(a.var(dim=0) + eps)
        std_b = torch.sqrt(b.var(dim=0) + eps)
        variance = 0.5 * (F.relu(1.0 - std_a).mean() + F.relu(1.0 - std_b).mean())
        cov_a = (a.T @ a) / (n - 1)
        cov_b = (b.T @ b) / (n - 1)
        covariance = _off_diagonal(cov_a).pow(2).sum() / d + _off_diagonal(cov_b).pow(2).sum() / d
    return {"invariance": invariance, "variance": variance, "covariance": covariance}


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    r"""VICReg: Variance-Invariance-Covariance Regularization.

    Bardes, Ponce, LeCun, ICLR 2022:

    .. math::  L = \lambda\, s(z1, z2) + \mu\, v(z1, z2) + \nu\, c(z1, z2)

    with ``lambda = sim_weight``, ``mu = var_weight``, ``nu = cov_weight`` and the
    terms defined in :func:`vicreg_terms`.
    """
    t = vicreg_terms(z1, z2, eps=eps)
    return sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"]


# --------------------------------------------------------------------------- Barlow Twins


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambda_offdiag: float = 5e-3, *, eps: float = 1e-5) -> Tensor:
    r"""Barlow Twins redundancy-reduction loss.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning
    via Redundancy Reduction", ICML 2021.

    Each dimension is standardised over the batch as a BatchNorm without affine
    parameters does in training mode, :math:`\hat z_{:,d} = (z_{:,d} - \mu_d) /
    \sqrt{\sigma_d^2 + \epsilon}` (biased variance, ``eps`` = BatchNorm's 1e-5);
    then :math:`C = \hat z_1^T \hat z_2 / N` and

    .. math::  L = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2
    """
    _check_pair(z1, z2, "z1 and z2")
    n = z1.shape[0]
    with _no_autocast(z1):
        dt = torch.float64 if z1.dtype == torch.float64 else torch.float32

        def standardise(z: Tensor) -> Tensor:
            z = z.to(dt)
            return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)

        c = standardise(z1).T @ standardise(z2) / n
        on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
        off_diag = _off_diagonal(c).pow(2).sum()
        return on_diag + lambda_offdiag * off_diag


# --------------------------------------------------------------------------- DINO


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
    _check_temperature(student_temp)
    _check_temperature(teacher_temp)
    ref = student_out[0]
    with _no_autocast(ref):
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


# --------------------------------------------------------------------------- NNCLR


@torch.no_grad()
def nearest_neighbour(z: Tensor, support: Tensor) -> Tensor:
    r"""Nearest neighbour of each row of ``z`` in a support set (NNCLR).

    Dwibedi, Aytar, Tompson, Sermanet, Zisserman, "With a Little Help from My
    Friends: Nearest-Neighbor Contrastive Learning of Visual
    Representations", ICCV 2021:

    .. math::  NN(z_i, Q) = Q_{k^*},\quad k^* = \arg\max_k \frac{z_i \cdot Q_k}{\|z_i\| \|Q_k\|}

    Returns the (un-modified) rows of ``support`` (``(M, D)``), one per row of
    ``z`` (``(N, D)``), detached: no gradient flows through the lookup.
    """
    if z.dim() != 2 or support.dim() != 2 or z.shape[1] != support.shape[1]:
        raise ValueError(f"z (N, D) and support (M, D) must share D, got {tuple(z.shape)} and {tuple(support.shape)}")
    if support.shape[0] == 0:
        raise ValueError("support set is empty")
    with _no_autocast(z):
        dt = torch.float64 if z.dtype == torch.float64 or support.dtype == torch.float64 else torch.float32
        zn = F.normalize(z.to(dt), dim=1)
        sn = F.normalize(support.to(device=z.device, dtype=dt), dim=1)
        idx = (zn @ sn.T).argmax(dim=1)
    return support.detach()[idx.to(support.device)]


def nnclr_loss(
    z1: Tensor,
    z2: Tensor,
    support: Tensor,
    temperature: float = 0.1,
    p1: Tensor | None = None,
    p2: Tensor | None = None,
    *,
    offset: int = 0,
) -> Tensor:
    r"""NNCLR loss (Dwibedi et al., ICCV 2021).

    With :math:`n_i = NN(z1_i, Q)` from :func:`nearest_neighbour` (no gradient),
    :math:`q2` the predictions ``p2`` of view 2 (or ``z2`` itself without a predictor)
    and all vectors L2-normalised,

    .. math::  L_{1 \to 2} = \frac1N \sum_i -\log \frac{\exp(n_i \cdot q2_{o+i} / t)}
               {\sum_k \exp(n_i \cdot q2_k / t)}

    and symmetrically :math:`L_{2 \to 1}` with :math:`NN(z2_i)` against ``p1`` (or ``z1``);
    the loss is :math:`(L_{1 \to 2} + L_{2 \to 1}) / 2`. The rows are the ``N`` pairs
    of ``z1``, ``z2``; the columns ``p1``, ``p2`` may be a whole batch (``(M, D)``, e.g.
    gathered across processes) of which the rows are the pairs from ``offset`` = o on
    (local rows against global columns, solo-learn's distributed form).
    """
    _check_pair(z1, z2, "z1 and z2")
    _check_temperature(temperature)
    q1 = z1 if p1 is None else p1
    q2 = z2 if p2 is None else p2
    _check_pair(q1, q2, "p1 and p2")
    if q1.shape[1] != z1.shape[1] or not 0 <= offset <= q1.shape[0] - z1.shape[0]:
        raise ValueError(f"z1 {tuple(z1.shape)} at offset {offset} must be rows of the columns {tuple(q1.shape)}")
    nn1 = nearest_neighbour(z1, support)
    nn2 = nearest_neighbour(z2, support)
    with _no_autocast(q1):
        dt = torch.float64 if q1.dtype == torch.float64 else torch.float32
        a1, a2 = F.normalize(q1.to(dt), dim=1), F.normalize(q2.to(dt), dim=1)
        b1 = F.normalize(nn1.to(device=q1.device, dtype=dt), dim=1)
        b2 = F.normalize(nn2.to(device=q1.device, dtype=dt), dim=1)
        target = offset + torch.arange(z1.shape[0], device=q1.device)
        l12 = F.cross_entropy(b1 @ a2.T / temperature, target)
        l21 = F.cross_entropy(b2 @ a1.T / temperature, target)
        return 0.5 * (l12 + l21)


# --------------------------------------------------------------------------- momentum encoders


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    r"""In-place exponential moving average of ``online`` into ``target``.

    BYOL / MoCo momentum encoder (Grill et al. 2020; He et al. 2020):

    .. math::  \theta_t \leftarrow m\, \theta_t + (1 - m)\, \theta_o

    for every floating-point parameter (matched by name); buffers (e.g.
    BatchNorm running statistics) and non-floating parameters are copied from
    ``online``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = dict(target.named_parameters())
    o_params = dict(online.named_parameters())
    if t_params.keys() != o_params.keys():
        raise ValueError("target and online modules have different parameters")
    tf, of = [], []
    for name, pt in t_params.items():
        po = o_params[name]
        if pt.shape != po.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(pt.shape)} in target, {tuple(po.shape)} in online")
        if pt.is_floating_point():
            tf.append(pt)
            of.append(po.detach().to(device=pt.device, dtype=pt.dtype))
        else:
            pt.copy_(po)
    if tf:
        torch._foreach_mul_(tf, momentum)
        torch._foreach_add_(tf, of, alpha=1.0 - momentum)
    t_bufs = dict(target.named_buffers())
    for name, bo in online.named_buffers():
        if name in t_bufs:
            t_bufs[name].copy_(bo)


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    r"""BYOL's cosine momentum schedule (Grill et al. 2020).

    .. math::  m_k = m_{final} - (m_{final} - m_{base}) \frac{\cos(\pi k / K) + 1}{2}

    so ``m_0 = base`` and ``m_K = final``; ``step`` is clamped to ``[0, K]``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    k = min(max(step, 0), total_steps)
    return final - (final - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0
