"""Tests for sempairs.losses against independent reference computations.

Every reference below is written from the paper's formula with explicit Python
loops over plain floats (``tensor.tolist()`` + ``math``), so it shares no code
with the implementation under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from sempairs.losses.barlow_twins import barlow_twins_loss
from sempairs.losses.cosine import byol_loss, negative_cosine
from sempairs.losses.dino import dino_center_update, dino_loss
from sempairs.losses.info_nce import info_nce
from sempairs.losses.momentum import cosine_momentum, ema_update
from sempairs.losses.nnclr import nearest_neighbour, nnclr_loss
from sempairs.losses.nt_xent import nt_xent
from sempairs.losses.vicreg import vicreg_loss, vicreg_terms

TOL64 = dict(rtol=1e-6, atol=1e-6)
SHAPES = [(1, 3), (4, 8), (7, 5), (16, 32)]


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- plain-float helpers


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _cos(a, b):
    return _dot(_norm(a), _norm(b))


def _log_softmax(v):
    m = max(v)
    s = sum(math.exp(x - m) for x in v)
    return [x - m - math.log(s) for x in v]


def _close(value, ref, rtol=1e-6, atol=1e-6):
    value = float(value)
    assert math.isfinite(value)
    assert abs(value - ref) <= atol + rtol * abs(ref), (value, ref)


# --------------------------------------------------------------------------- references


def ref_supcon(z1, z2, t, pos_pairs=None):
    """NT-Xent / SupCon L_out with explicit loops over anchors a, positives p, denominators k."""
    n = len(z1)
    views = [_norm(v) for v in z1.tolist()] + [_norm(v) for v in z2.tolist()]
    total = 0.0
    for a in range(2 * n):
        denom = sum(math.exp(_dot(views[a], views[k]) / t) for k in range(2 * n) if k != a)
        terms = []
        for p in range(2 * n):
            if p == a:
                continue
            same_pair = p % n == a % n
            extra = pos_pairs is not None and bool(pos_pairs[a % n][p % n])
            if same_pair or extra:
                terms.append(-math.log(math.exp(_dot(views[a], views[p]) / t) / denom))
        total += sum(terms) / len(terms)
    return total / (2 * n)


def ref_info_nce(q, k, queue, t):
    qs = [_norm(v) for v in q.tolist()]
    ks = [_norm(v) for v in k.tolist()]
    total = 0.0
    for i, qi in enumerate(qs):
        if queue is None:
            logits = [_dot(qi, kj) / t for kj in ks]
            target = i
        else:
            logits = [_dot(qi, ks[i]) / t] + [_dot(qi, _norm(w)) / t for w in queue.tolist()]
            target = 0
        total += -(logits[target] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(qs)


def ref_vicreg_terms(z1, z2, eps):
    a, b = z1.tolist(), z2.tolist()
    n, d = len(a), len(a[0])
    inv = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(z):
        mean = [sum(z[i][j] for i in range(n)) / n for j in range(d)]
        hinge = 0.0
        for j in range(d):
            var = sum((z[i][j] - mean[j]) ** 2 for i in range(n)) / (n - 1)
            hinge += max(0.0, 1.0 - math.sqrt(var + eps))
        off = 0.0
        for j in range(d):
            for k in range(d):
                if j != k:
                    c = sum((z[i][j] - mean[j]) * (z[i][k] - mean[k]) for i in range(n)) / (n - 1)
                    off += c * c
        return hinge / d, off / d

    va, ca = var_cov(a)
    vb, cb = var_cov(b)
    return inv, (va + vb) / 2, ca + cb


def ref_barlow(z1, z2, lam, eps=1e-5):
    a, b = z1.tolist(), z2.tolist()
    n, d = len(a), len(a[0])

    def column_stats(z, j):
        mu = sum(z[i][j] for i in range(n)) / n
        var = sum((z[i][j] - mu) ** 2 for i in range(n)) / n
        return mu, math.sqrt(var + eps)

    sa = [column_stats(a, j) for j in range(d)]
    sb = [column_stats(b, j) for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum((a[r][i] - sa[i][0]) / sa[i][1] * (b[r][j] - sb[j][0]) / sb[j][1] for r in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c * c
    return loss


def ref_dino(student, teacher, center, ts, tt):
    c = center.reshape(-1).tolist()
    total, pairs = 0.0, 0
    for i, tv in enumerate(teacher):
        for j, sv in enumerate(student):
            if i == j:
                continue
            rows_t, rows_s = tv.tolist(), sv.tolist()
            ce = 0.0
            for rt, rs in zip(rows_t, rows_s):
                logits_t = [(x - ck) / tt for x, ck in zip(rt, c)]
                m = max(logits_t)
                e = [math.exp(x - m) for x in logits_t]
                pt = [x / sum(e) for x in e]
                lps = _log_softmax([x / ts for x in rs])
                ce += -sum(p * lp for p, lp in zip(pt, lps))
            total += ce / len(rows_t)
            pairs += 1
    return total / pairs


def ref_nn_index(z, support):
    best = []
    for zi in z.tolist():
        sims = [_cos(zi, s) for s in support.tolist()]
        best.append(max(range(len(sims)), key=lambda k: sims[k]))
    return best


def ref_nnclr(z1, z2, support, t, p1=None, p2=None):
    sup = support.tolist()

    def direction(za, zb):
        idx = ref_nn_index(za, support)
        bs = [_norm(v) for v in zb.tolist()]
        total = 0.0
        for i, k in enumerate(idx):
            nn = _norm(sup[k])
            logits = [_dot(nn, bj) / t for bj in bs]
            total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
        return total / len(bs)

    return 0.5 * (direction(z1, z2 if p2 is None else p2) + direction(z2, z1 if p1 is None else p1))


# --------------------------------------------------------------------------- NT-Xent / SupCon


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_loop_reference(shape, t):
    z1, z2 = _rand(*shape, seed=1), _rand(*shape, seed=2)
    out = nt_xent(z1, z2, temperature=t)
    assert out.dtype == torch.float64 and out.dim() == 0
    _close(out, ref_supcon(z1, z2, t))


def test_nt_xent_default_temperature_is_half():
    z1, z2 = _rand(6, 4, seed=3), _rand(6, 4, seed=4)
    _close(nt_xent(z1, z2), ref_supcon(z1, z2, 0.5))


@pytest.mark.parametrize("shape", [(4, 8), (7, 5), (12, 6)])
@pytest.mark.parametrize("kind", ["groups", "random"])
def test_nt_xent_extra_positives_match_supcon_loop(shape, kind):
    n = shape[0]
    z1, z2 = _rand(*shape, seed=5), _rand(*shape, seed=6)
    g = torch.Generator().manual_seed(7)
    if kind == "groups":
        labels = torch.randint(0, 3, (n,), generator=g)
        pos = labels[:, None] == labels[None, :]
    else:  # arbitrary, asymmetric, diagonal not necessarily set
        pos = torch.rand(n, n, generator=g) < 0.4
    for t in (0.2, 0.7):
        _close(nt_xent(z1, z2, temperature=t, positives=pos), ref_supcon(z1, z2, t, pos.tolist()))


def test_nt_xent_positives_identity_equals_none_and_diagonal_is_implied():
    z1, z2 = _rand(9, 7, seed=8), _rand(9, 7, seed=9)
    base = nt_xent(z1, z2, 0.3)
    torch.testing.assert_close(nt_xent(z1, z2, 0.3, positives=torch.eye(9, dtype=torch.bool)), base, **TOL64)
    torch.testing.assert_close(nt_xent(z1, z2, 0.3, positives=torch.zeros(9, 9, dtype=torch.bool)), base, **TOL64)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4])
    pos = groups[:, None] == groups[None, :]
    pos_nodiag = pos & ~torch.eye(9, dtype=torch.bool)
    torch.testing.assert_close(nt_xent(z1, z2, 0.3, positives=pos_nodiag), nt_xent(z1, z2, 0.3, positives=pos), **TOL64)
    assert not torch.allclose(nt_xent(z1, z2, 0.3, positives=pos), base)


def test_nt_xent_aligned_orthogonal_closed_form_and_lower_than_random():
    n, d, t = 6, 8, 0.5
    e = torch.eye(d, dtype=torch.float64)[:n] * 3.0  # scale must not matter
    aligned = nt_xent(e, e.clone(), t)
    # s(a, partner) = 1, s(a, k) = 0 for the other 2N-2 views.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    _close(aligned, expected)
    for seed in range(5):
        assert aligned < nt_xent(_rand(n, d, seed=10 + seed), _rand(n, d, seed=20 + seed), t)


def test_nt_xent_temperature_behaviour():
    n, d = 6, 8
    e = torch.eye(d, dtype=torch.float64)[:n]
    temps = [0.05, 0.1, 0.5, 1.0, 5.0]
    aligned = [nt_xent(e, e, t).item() for t in temps]
    assert all(a < b for a, b in zip(aligned, aligned[1:]))  # sharper -> lower for a perfect solution
    # As t grows every logit tends to 0: loss -> log(2N - 1) for any inputs.
    z1, z2 = _rand(n, d, seed=30), _rand(n, d, seed=31)
    _close(nt_xent(z1, z2, 1e4), math.log(2 * n - 1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        nt_xent(z1, z2, 0.0)


def test_nt_xent_is_stable_at_low_temperature():
    n, d = 8, 16
    e = torch.eye(d, dtype=torch.float32)[:n] * 1e4
    z1 = e.clone().requires_grad_(True)
    loss = nt_xent(z1, e + 1e-3, temperature=1e-3)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z1.grad).all()
    z = _rand(n, d, seed=32, dtype=torch.float32).requires_grad_(True)
    loss = nt_xent(z, _rand(n, d, seed=33, dtype=torch.float32), 1e-3, positives=torch.ones(n, n, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_nt_xent_float32_matches_reference():
    z1, z2 = _rand(10, 12, seed=34, dtype=torch.float32), _rand(10, 12, seed=35, dtype=torch.float32)
    out = nt_xent(z1, z2, 0.2)
    assert out.dtype == torch.float32
    _close(out, ref_supcon(z1.double(), z2.double(), 0.2), rtol=1e-5, atol=1e-5)


def test_nt_xent_bf16_autocast_returns_float32_close_to_float32():
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 32)
    x1, x2 = torch.randn(12, 16), torch.randn(12, 16)
    ref32 = nt_xent(proj(x1), proj(x2), 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h1, h2 = proj(x1), proj(x2)
        assert h1.dtype == torch.bfloat16  # autocast really is on
        out = nt_xent(h1, h2, 0.5)
        out_pos = nt_xent(h1, h2, 0.5, positives=torch.eye(12, dtype=torch.bool))
        # float32 inputs under autocast: similarity must not be downcast.
        same = nt_xent(proj(x1).float(), proj(x2).float(), 0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert out_pos.dtype == torch.float32
    torch.testing.assert_close(out, ref32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(same, nt_xent(h1.float(), h2.float(), 0.5), rtol=1e-5, atol=1e-5)
    out.backward()
    assert torch.isfinite(proj.weight.grad).all()


# --------------------------------------------------------------------------- MoCo InfoNCE


@pytest.mark.parametrize("n,d,k", [(1, 4, 5), (5, 8, 16), (8, 3, 1), (16, 32, 64)])
@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_info_nce_with_queue_matches_loop(n, d, k, t):
    q, key, queue = _rand(n, d, seed=40), _rand(n, d, seed=41), _rand(k, d, seed=42)
    _close(info_nce(q, key, queue, temperature=t), ref_info_nce(q, key, queue, t))


@pytest.mark.parametrize("n,d", [(2, 4), (6, 8), (16, 5)])
def test_info_nce_in_batch_negatives_matches_loop(n, d):
    q, key = _rand(n, d, seed=43), _rand(n, d, seed=44)
    _close(info_nce(q, key, None), ref_info_nce(q, key, None, 0.2))
    _close(info_nce(q, key, None, temperature=0.5), ref_info_nce(q, key, None, 0.5))


def test_info_nce_no_gradient_to_keys_or_queue():
    q = _rand(6, 8, seed=45).requires_grad_(True)
    key = _rand(6, 8, seed=46).requires_grad_(True)
    queue = _rand(10, 8, seed=47).requires_grad_(True)
    info_nce(q, key, queue).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert key.grad is None or not key.grad.any()
    assert queue.grad is None or not queue.grad.any()
    key.grad = None
    q.grad = None
    info_nce(q, key, None).backward()
    assert q.grad.abs().sum() > 0
    assert key.grad is None or not key.grad.any()


# --------------------------------------------------------------------------- SimSiam / BYOL


@pytest.mark.parametrize("shape", SHAPES)
def test_negative_cosine_and_byol_match_loops(shape):
    p, z = _rand(*shape, seed=50), _rand(*shape, seed=51)
    pl, zl = p.tolist(), z.tolist()
    ref_neg = -sum(_cos(a, b) for a, b in zip(pl, zl)) / len(pl)
    # BYOL written as squared distance between normalised vectors.
    ref_byol = sum(sum((x - y) ** 2 for x, y in zip(_norm(a), _norm(b))) for a, b in zip(pl, zl)) / len(pl)
    _close(negative_cosine(p, z), ref_neg)
    _close(byol_loss(p, z), ref_byol)
    assert -1.0 - 1e-9 <= negative_cosine(p, z).item() <= 1.0 + 1e-9
    assert 0.0 - 1e-9 <= byol_loss(p, z).item() <= 4.0 + 1e-9


@pytest.mark.parametrize("fn", [negative_cosine, byol_loss])
def test_stop_gradient_on_target(fn):
    p = _rand(5, 7, seed=52).requires_grad_(True)
    z = _rand(5, 7, seed=53).requires_grad_(True)
    fn(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None or not z.grad.any()


def test_negative_cosine_extremes():
    p = _rand(4, 6, seed=54)
    _close(negative_cosine(p, 2.5 * p), -1.0)
    _close(negative_cosine(p, -p), 1.0)
    _close(byol_loss(p, 3 * p), 0.0)
    _close(byol_loss(p, -p), 4.0)


# --------------------------------------------------------------------------- VICReg


@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (8, 8), (16, 6)])
def test_vicreg_terms_match_loops(shape):
    z1, z2 = _rand(*shape, seed=60) * 0.7, _rand(*shape, seed=61) * 1.5
    inv, var, cov = ref_vicreg_terms(z1, z2, 1e-4)
    terms = vicreg_terms(z1, z2)
    assert set(terms) == {"invariance", "variance", "covariance"}
    _close(terms["invariance"], inv)
    _close(terms["variance"], var)
    _close(terms["covariance"], cov)
    _close(vicreg_loss(z1, z2), 25.0 * inv + 25.0 * var + 1.0 * cov)
    _close(vicreg_loss(z1, z2, sim_weight=2.0, var_weight=3.0, cov_weight=0.5), 2.0 * inv + 3.0 * var + 0.5 * cov)
    inv2, var2, cov2 = ref_vicreg_terms(z1, z2, 0.1)
    _close(vicreg_loss(z1, z2, eps=0.1), 25.0 * inv2 + 25.0 * var2 + cov2)


def test_vicreg_variance_hinge_is_zero_for_spread_dims_and_gradients_flow():
    z = _rand(32, 4, seed=62) * 10.0
    terms = vicreg_terms(z, z.clone())
    assert terms["variance"].item() == 0.0 and terms["invariance"].item() == 0.0
    a = _rand(8, 5, seed=63).requires_grad_(True)
    b = _rand(8, 5, seed=64).requires_grad_(True)
    vicreg_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# --------------------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize("shape", [(2, 3), (6, 4), (10, 8), (16, 5)])
@pytest.mark.parametrize("lam", [5e-3, 0.1])
def test_barlow_twins_matches_loops(shape, lam):
    z1, z2 = _rand(*shape, seed=70) * 2 + 1, _rand(*shape, seed=71)
    _close(barlow_twins_loss(z1, z2, lambda_offdiag=lam), ref_barlow(z1, z2, lam))


def test_barlow_twins_default_lambda_and_batchnorm_standardisation():
    z1, z2 = _rand(12, 6, seed=72), _rand(12, 6, seed=73)
    _close(barlow_twins_loss(z1, z2), ref_barlow(z1, z2, 5e-3))
    # Second reference: standardise with torch's own BatchNorm1d(affine=False) in training mode.
    bn = torch.nn.BatchNorm1d(6, affine=False).double().train()
    c = bn(z1).T @ bn(z2) / 12
    diag = torch.diagonal(c)
    ref = ((1 - diag) ** 2).sum() + 5e-3 * ((c**2).sum() - (diag**2).sum())
    _close(barlow_twins_loss(z1, z2), ref.item())


# --------------------------------------------------------------------------- DINO


@pytest.mark.parametrize("n_teacher,n_student", [(2, 2), (2, 5), (1, 3), (3, 4)])
@pytest.mark.parametrize("b,k", [(1, 5), (4, 16)])
def test_dino_loss_matches_loops(n_teacher, n_student, b, k):
    student = [_rand(b, k, seed=80 + j) * 3 for j in range(n_student)]
    teacher = [_rand(b, k, seed=90 + i) * 3 for i in range(n_teacher)]
    center = _rand(1, k, seed=99)
    for ts, tt in [(0.1, 0.04), (0.5, 0.07)]:
        out = dino_loss(student, teacher, center, student_temp=ts, teacher_temp=tt)
        _close(out, ref_dino(student, teacher, center, ts, tt))
    _close(dino_loss(student, teacher, center.reshape(-1)), ref_dino(student, teacher, center, 0.1, 0.04))


def test_dino_no_gradient_to_teacher_or_center():
    student = [_rand(4, 10, seed=100 + j).requires_grad_(True) for j in range(4)]
    teacher = [_rand(4, 10, seed=110 + i).requires_grad_(True) for i in range(2)]
    center = _rand(1, 10, seed=120).requires_grad_(True)
    dino_loss(student, teacher, center).backward()
    for s in student:
        assert s.grad is not None and s.grad.abs().sum() > 0
    for t in teacher:
        assert t.grad is None or not t.grad.any()
    assert center.grad is None or not center.grad.any()


def test_dino_requires_a_cross_view_pair():
    with pytest.raises(ValueError):
        dino_loss([_rand(2, 3)], [_rand(2, 3)], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("center_shape", [(1, 6), (6,)])
def test_dino_center_update_matches_formula(center_shape):
    center = _rand(*center_shape, seed=130)
    before = center.clone()
    teacher = [_rand(5, 6, seed=131), _rand(5, 6, seed=132)]
    m = 0.9
    rows = teacher[0].tolist() + teacher[1].tolist()
    c = center.reshape(-1).tolist()
    ref = [m * c[j] + (1 - m) * sum(r[j] for r in rows) / len(rows) for j in range(6)]
    new = dino_center_update(center, teacher, momentum=m)
    assert new.shape == center.shape and new.dtype == center.dtype
    torch.testing.assert_close(new.reshape(-1), torch.tensor(ref, dtype=torch.float64), **TOL64)
    torch.testing.assert_close(center, before, rtol=0, atol=0)  # not modified in place
    # Default momentum is 0.9; momentum 0 gives the batch mean.
    torch.testing.assert_close(dino_center_update(center, teacher), new, **TOL64)
    mean = [sum(r[j] for r in rows) / len(rows) for j in range(6)]
    torch.testing.assert_close(
        dino_center_update(center, teacher, momentum=0.0).reshape(-1), torch.tensor(mean, dtype=torch.float64), **TOL64
    )


# --------------------------------------------------------------------------- NNCLR


@pytest.mark.parametrize("n,m,d", [(1, 3, 4), (6, 20, 8), (12, 7, 5)])
def test_nearest_neighbour_matches_loop(n, m, d):
    z, support = _rand(n, d, seed=140), _rand(m, d, seed=141)
    out = nearest_neighbour(z, support)
    idx = ref_nn_index(z, support)
    torch.testing.assert_close(out, support[idx], rtol=0, atol=0)  # exact support rows


def test_nearest_neighbour_uses_cosine_not_dot_product():
    z = torch.tensor([[1.0, 0.0]])
    support = torch.tensor([[10.0, 10.0], [0.9, 0.1]])  # larger dot product vs closer direction
    torch.testing.assert_close(nearest_neighbour(z, support), support[1:2])


def test_nearest_neighbour_and_nnclr_give_no_gradient_to_support():
    z = _rand(5, 6, seed=142).requires_grad_(True)
    support = _rand(9, 6, seed=143).requires_grad_(True)
    out = nearest_neighbour(z, support)
    assert not out.requires_grad
    z2 = _rand(5, 6, seed=144).requires_grad_(True)
    nnclr_loss(z, z2, support).backward()
    assert support.grad is None or not support.grad.any()
    assert z.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("n,m,d", [(2, 5, 4), (6, 20, 8), (10, 30, 6)])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nnclr_loss_matches_loop(n, m, d, t):
    z1, z2, support = _rand(n, d, seed=150), _rand(n, d, seed=151), _rand(m, d, seed=152)
    _close(nnclr_loss(z1, z2, support, temperature=t), ref_nnclr(z1, z2, support, t))


def test_nnclr_loss_with_predictions_matches_loop():
    z1, z2, support = _rand(6, 5, seed=40), _rand(6, 5, seed=41), _rand(9, 5, seed=42)
    p1, p2 = _rand(6, 5, seed=43), _rand(6, 5, seed=44)
    _close(nnclr_loss(z1, z2, support, 0.3, p1=p1, p2=p2), ref_nnclr(z1, z2, support, 0.3, p1, p2))


def test_nnclr_default_temperature():
    z1, z2, support = _rand(4, 5, seed=153), _rand(4, 5, seed=154), _rand(8, 5, seed=155)
    _close(nnclr_loss(z1, z2, support), ref_nnclr(z1, z2, support, 0.1))


# --------------------------------------------------------------------------- EMA / momentum


def _small_net(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)).double()
    net.train()
    net(torch.randn(8, 4, dtype=torch.float64))  # populate BatchNorm running stats
    return net


@pytest.mark.parametrize("m", [0.0, 0.5, 0.99, 1.0])
def test_ema_update_matches_formula(m):
    target, online = _small_net(0), _small_net(1)
    t_before = {k: v.clone() for k, v in target.state_dict().items()}
    o_before = {k: v.clone() for k, v in online.state_dict().items()}
    ema_update(target, online, m)
    param_names = {k for k, _ in target.named_parameters()}
    for name, value in target.state_dict().items():
        if name in param_names:
            tl, ol = t_before[name].reshape(-1).tolist(), o_before[name].reshape(-1).tolist()
            expected = torch.tensor([m * a + (1 - m) * b for a, b in zip(tl, ol)], dtype=torch.float64)
            torch.testing.assert_close(value.reshape(-1), expected, rtol=1e-12, atol=1e-12)
        else:  # buffers copied from online
            torch.testing.assert_close(value, o_before[name], rtol=0, atol=0)
    for name, value in online.state_dict().items():
        torch.testing.assert_close(value, o_before[name], rtol=0, atol=0)
    for p in target.parameters():
        assert p.grad is None


def test_ema_update_float32_exact_and_rejects_mismatch():
    torch.manual_seed(3)
    target, online = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w_t, w_o = target.weight.detach().clone(), online.weight.detach().clone()
    m = 0.75  # exactly representable: m * a and (1 - m) * b are exact scalings
    ema_update(target, online, m)
    torch.testing.assert_close(target.weight.detach(), m * w_t + (1 - m) * w_o, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        ema_update(target, torch.nn.Linear(3, 4), 0.5)
    with pytest.raises(ValueError):
        ema_update(target, online, 1.5)


def test_cosine_momentum_schedule():
    k = 100
    assert cosine_momentum(0, k) == pytest.approx(0.996, abs=1e-15)
    assert cosine_momentum(k, k) == pytest.approx(1.0, abs=1e-15)
    assert cosine_momentum(0, k, base=0.9, final=0.99) == pytest.approx(0.9, abs=1e-15)
    assert cosine_momentum(k, k, base=0.9, final=0.99) == pytest.approx(0.99, abs=1e-15)
    assert cosine_momentum(k // 2, k, base=0.9, final=1.0) == pytest.approx(0.95, abs=1e-12)
    # BYOL: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2, written differently.
    for step in (1, 17, 63, 99):
        expected = 1 - (1 - 0.996) * (math.cos(math.pi * step / k) + 1) / 2
        assert cosine_momentum(step, k) == pytest.approx(expected, abs=1e-12)
    values = [cosine_momentum(s, k) for s in range(k + 1)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert cosine_momentum(k + 10, k) == pytest.approx(1.0, abs=1e-15)


def _dist_center_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        teacher = [_rand(2 + rank, 4, seed=200 + rank), _rand(2 + rank, 4, seed=210 + rank)]  # uneven batches
        new = dino_center_update(torch.zeros(1, 4, dtype=torch.float64), teacher, momentum=0.5)
        torch.save(new, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="gloo not available"
)
def test_dino_center_update_all_reduces_under_distributed(tmp_path):
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_dist_center_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    rows = []
    for rank in range(world):
        rows += _rand(2 + rank, 4, seed=200 + rank).tolist() + _rand(2 + rank, 4, seed=210 + rank).tolist()
    ref = torch.tensor([0.5 * sum(r[j] for r in rows) / len(rows) for j in range(4)], dtype=torch.float64)
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got.reshape(-1), ref, **TOL64)
