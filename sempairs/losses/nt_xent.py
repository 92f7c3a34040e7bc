"""NT-Xent (SimCLR), with same-class masking and the SupCon form of extra positives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import no_autocast, check_temperature, check_pair


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
    check_pair(z1, z2, "z1 and z2")
    check_temperature(temperature)
    n = z1.shape[0]
    if columns is None:
        columns, offset = (z1, z2), 0
    check_pair(columns[0], columns[1], "columns")
    m = columns[0].shape[0]
    if columns[0].shape[1] != z1.shape[1] or not 0 <= offset <= m - n:
        raise ValueError(f"z1 {tuple(z1.shape)} at offset {offset} must be rows of the columns {tuple(columns[0].shape)}")
    with no_autocast(z1):
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
