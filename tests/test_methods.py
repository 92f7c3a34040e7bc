"""Self-supervised methods: every registered method trains; targets, queues and centres behave.

Tiny CPU setting: batches of 8 random 3x16x16 images, a small conv net as the backbone and small
heads, so the whole file runs in seconds.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from sempairs.augment import preset
from sempairs.config import ConfigError, load_config
from sempairs.losses.momentum import cosine_momentum
from sempairs.methods import METHODS
from sempairs.methods.base import enqueue
from sempairs.models import BackboneConfig, build_backbone

FEAT = 16
BATCH = 8

# Small heads for the tests; a method registered later without an entry here runs with its defaults.
SMALL = {
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 16},
    "moco": {"proj_hidden_dim": 32, "proj_dim": 16, "queue_size": 64},
    "byol": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
    "simsiam": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 8},
    "vicreg": {"proj_hidden_dim": 32, "proj_dim": 32},
    "barlow_twins": {"proj_hidden_dim": 32, "proj_dim": 32},
    "dino": {"proj_hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64},
    "nnclr": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32, "queue_size": 64},
}
EXPECTED = {"simclr", "moco", "byol", "simsiam", "vicreg", "barlow_twins", "dino", "nnclr"}
# (target, online) submodule names of the momentum methods.
TARGETS = {
    "moco": [("target_backbone", "backbone"), ("target_projector", "projector")],
    "byol": [("target_backbone", "backbone"), ("target_projector", "projector")],
    "dino": [("teacher_backbone", "backbone"), ("teacher_head", "head")],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny ops: thread start-up dominates, and on a busy machine 2+ threads are ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, FEAT, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def make(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cls = METHODS[name]
    cfg = cls.config_class(**{**SMALL.get(name, {}), **overrides})
    return cls(tiny_backbone(), FEAT, cfg).train()


def views(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 16, 16, generator=g)
    return x, x + 0.1 * torch.randn(x.shape, generator=g)


def sgd(method, lr=0.05):
    return torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr, momentum=0.9)


def train_steps(method, n, lr=0.05, total=100, start=0, batch=None, after=None):
    opt = sgd(method, lr)
    losses = []
    for i in range(n):
        v1, v2 = batch if batch is not None else views(seed=100 + start + i)
        out = method(v1, v2)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        method.after_step(start + i, total)
        if after is not None:
            after()
        losses.append(out.loss.item())
    return losses


def test_all_methods_registered():
    assert EXPECTED <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.config_class.model_fields["name"].default == name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_steps_finite_and_every_trainable_param_gets_a_gradient(name):
    method = make(name)
    opt = sgd(method)
    for step in range(2):
        v1, v2 = views(seed=step)
        out = method(v1, v2)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert out.features.shape == (BATCH, FEAT) and not out.features.requires_grad  # backbone features, every method
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        # DDP without find_unused_parameters needs a gradient for every trainable parameter.
        missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, missing
        opt.step()
        method.after_step(step, 10)


# lr per method on a fixed batch (the default 0.05 unless listed)
LR = {"vicreg": 0.01}
FIXED_BATCH_OVERRIDES = {
    # The centre is frozen here: the tiny random net maps the 8 images to nearly the same teacher
    # output, so once the centre (momentum 0.9) catches up the centred teacher is uniform and the
    # loss rises towards its entropy log K whatever the student does. With the centre fixed the
    # test checks what it should: the student learns to match the teacher. The centre update is
    # tested on its own in test_dino_centre_and_teacher_temperature.
    "dino": {"center_momentum": 1.0},
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_decreases_on_a_fixed_batch(name):
    method = make(name, **FIXED_BATCH_OVERRIDES.get(name, {}))
    hold = None
    if name == "moco":
        # The queue is held at its random initial negatives: on a fixed batch every push adds
        # near-copies of the batch's own positive keys as negatives, so the loss would rise
        # (log of the number of copies) whatever the encoder learns. Queue pushes are tested in
        # test_moco_queue_gets_the_newest_keys_and_pointer_advances.
        queue = method.queue.clone()

        def hold():
            method.queue.copy_(queue)
            method.queue_ptr.zero_()

    losses = train_steps(method, 20, lr=LR.get(name, 0.05), total=20, batch=views(seed=7), after=hold)
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_stop_gradient_on_the_target_branch(name):
    """With the predictor's input cut, only the target branch links the encoder to the loss:
    the encoder then must get no gradient at all."""
    method = make(name)
    v1, v2 = views()
    method(v1, v2).loss.backward()  # control: normally the encoder does get a gradient
    assert method.backbone[0].weight.grad is not None
    method.zero_grad(set_to_none=True)

    handle = method.predictor.register_forward_pre_hook(lambda mod, args: (args[0].detach(),))
    loss = method(v1, v2).loss
    loss.backward()
    handle.remove()
    encoder = list(method.backbone.parameters()) + list(method.projector.parameters())
    assert all(p.grad is None or not p.grad.any() for p in encoder)
    assert any(p.grad is not None and p.grad.any() for p in method.predictor.parameters())
    for target in ("target_backbone", "target_projector"):
        if hasattr(method, target):
            assert all(not p.requires_grad and p.grad is None for p in getattr(method, target).parameters())


def test_dino_teacher_gets_no_gradient():
    method = make("dino")
    method(*views()).loss.backward()
    for module in (method.teacher_backbone, method.teacher_head):
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    assert method.center.grad is None and not method.center.requires_grad
    assert method.head.prototypes.grad is not None


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_is_the_ema_of_the_online_network(name):
    method = make(name, base_momentum=0.9, final_momentum=1.0)
    train_steps(method, 1, lr=0.5)  # online and target now differ
    step, total = 3, 10
    before = {t: (copy.deepcopy(getattr(method, t)), copy.deepcopy(getattr(method, o))) for t, o in TARGETS[name]}
    method.after_step(step, total)
    m = cosine_momentum(step, total, 0.9, 1.0)
    assert 0.9 < m < 1.0
    for t, (old_target, online) in before.items():
        new_target = getattr(method, t)
        changed = False
        for (pname, new), old, onl in zip(new_target.named_parameters(), old_target.parameters(), online.parameters()):
            torch.testing.assert_close(new, m * old + (1 - m) * onl, rtol=1e-6, atol=1e-7, msg=pname)
            changed |= not torch.equal(new, old)
        assert changed
        for (bname, new), onl in zip(new_target.named_buffers(), online.buffers()):
            assert torch.equal(new, onl), bname  # BatchNorm statistics are copied


def _capture(module: nn.Module) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    module.register_forward_hook(lambda mod, args, out: outputs.append(out.detach().clone()))
    return outputs


def test_moco_queue_gets_the_newest_keys_and_pointer_advances():
    method = make("moco", queue_size=40)
    keys = _capture(method.target_projector)
    old_queue = method.queue.clone()
    out = method(*views())
    assert torch.equal(method.queue, old_queue)  # the step itself leaves the queue alone
    assert int(method.queue_ptr) == 0
    out.loss.backward()
    method.after_step(0, 10)
    # symmetric: the query of view 1 meets the key of view 2 (first target call), then 2 meets 1
    k2, k1 = (F.normalize(k, dim=1) for k in keys)
    assert int(method.queue_ptr) == 2 * BATCH
    torch.testing.assert_close(method.queue[: 2 * BATCH], torch.cat([k1, k2]))
    assert torch.equal(method.queue[2 * BATCH :], old_queue[2 * BATCH :])
    keys.clear()
    method(*views(seed=2))
    method.after_step(1, 10)
    method(*views(seed=3))
    method.after_step(2, 10)
    assert int(method.queue_ptr) == (6 * BATCH) % 40  # wrapped around
    newest = torch.cat([F.normalize(keys[3], dim=1), F.normalize(keys[2], dim=1)])
    torch.testing.assert_close(method.queue[torch.arange(32, 48) % 40], newest)


def test_moco_asymmetric_enqueues_one_view_and_eval_forward_enqueues_nothing():
    method = make("moco", symmetric=False)
    method(*views())
    method.after_step(0, 10)
    assert int(method.queue_ptr) == BATCH
    method.eval()
    queue = method.queue.clone()
    with torch.no_grad():
        method(*views(seed=5))
    method.after_step(1, 10)
    assert int(method.queue_ptr) == BATCH and torch.equal(method.queue, queue)


def test_enqueue_wraps_and_keeps_the_newest():
    queue, ptr = torch.zeros(5, 2), torch.zeros((), dtype=torch.long)
    items = torch.arange(14.0).view(7, 2)
    assert enqueue(queue, ptr, items[:3]) == 3 and int(ptr) == 3
    assert enqueue(queue, ptr, items[3:]) == 4 and int(ptr) == 2
    assert torch.equal(queue, items[[5, 6, 2, 3, 4]])
    assert enqueue(queue, ptr, items) == 5 and int(ptr) == 2  # more than fits: the newest 5
    assert set(map(tuple, queue.tolist())) == set(map(tuple, items[2:].tolist()))


def test_nnclr_support_queue_fills():
    method = make("nnclr", queue_size=20)
    z = _capture(method.projector)
    assert int(method.queue_len) == 0
    for step, (length, ptr) in enumerate([(8, 8), (16, 16), (20, 4)]):
        z.clear()
        method(*views(seed=step))
        method.after_step(step, 10)
        assert (int(method.queue_len), int(method.queue_ptr)) == (length, ptr)
    z1 = F.normalize(z[0], dim=1)  # the projections of the first view are pushed
    torch.testing.assert_close(method.queue[torch.arange(16, 24) % 20], z1)
    assert method.support(z1).shape == (20, 16)


def test_nnclr_without_predictor_uses_the_library_loss():
    method = make("nnclr", use_predictor=False)
    assert not hasattr(method, "predictor")
    losses = train_steps(method, 3)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_dino_centre_and_teacher_temperature():
    method = make("dino", teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_fraction=0.5)
    assert float(method.teacher_temp) == pytest.approx(0.04)
    teacher = _capture(method.teacher_head)
    center = method.center.clone()
    method(*views())
    method.after_step(1, 10)
    expected = 0.9 * center + 0.1 * torch.cat(teacher).mean(dim=0, keepdim=True)
    torch.testing.assert_close(method.center, expected)
    assert float(method.teacher_temp) == pytest.approx(0.04 + 0.03 * 2 / 5)  # temperature for step 2
    method.after_step(4, 10)
    assert float(method.teacher_temp) == pytest.approx(0.07)
    assert float(make("dino").teacher_temp) == pytest.approx(0.04)  # default: fixed 0.04


@pytest.mark.parametrize("name", ["moco", "byol", "dino", "nnclr"])
def test_state_dict_round_trip_preserves_queues_centres_and_targets(name):
    a = make(name, seed=0)
    train_steps(a, 3)
    b = make(name, seed=1)
    state = a.state_dict()
    for key in ("queue", "queue_ptr", "queue_len", "center", "teacher_temp"):
        if hasattr(a, key):
            assert key in state, key
            if key != "teacher_temp":  # fixed by default; the rest moved during training
                assert not torch.equal(state[key], getattr(b, key)), key
    b.load_state_dict(state)
    for key, value in b.state_dict().items():
        assert torch.equal(value, state[key]), key
    # resumed and uninterrupted continue identically
    batch = views(seed=42)
    torch.testing.assert_close(a(*batch).loss, b(*batch).loss, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_config_rejects_unknown_keys(name):
    with pytest.raises(ValidationError):
        METHODS[name].config_class(no_such_key=1)


def test_load_config_selects_the_registered_method():
    cfg = load_config(None, ["method.name=byol"])
    assert type(cfg.method) is METHODS["byol"].config_class
    assert (cfg.method.base_momentum, cfg.method.final_momentum) == (0.99, 1.0)
    cfg = load_config(None, ["method.name=dino", "method.out_dim=1024"])
    assert cfg.method.name == "dino" and cfg.method.out_dim == 1024
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["method.name=byol", "method.temperature=0.1"])  # BYOL has no temperature


def test_resnet18_small_stem_builds():
    net, dim = build_backbone(BackboneConfig(name="resnet18", small_stem=True), 16)
    assert dim == 512
    assert isinstance(net.maxpool, nn.Identity) and net.conv1.stride == (1, 1)
    assert net.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 512)


@pytest.mark.parametrize("name,width,small_stem", [("resnet18", 0.25, True), ("resnet18", 1.0, False), ("resnet50", 0.25, True)])
def test_stem_width_sets_the_stem_and_the_first_block_takes_it(name, width, small_stem):
    plain, dim = build_backbone(BackboneConfig(name=name, width=width, small_stem=small_stem))
    assert plain.conv1.out_channels == 64 and plain.bn1.num_features == 64  # the default: 64 at every width
    torch.manual_seed(0)
    net, narrow_dim = build_backbone(BackboneConfig(name=name, width=width, small_stem=small_stem, stem_width=16))
    assert narrow_dim == dim
    assert (net.conv1.out_channels, net.bn1.num_features, net.layer1[0].conv1.in_channels) == (16, 16, 16)
    first = net.layer1[0]
    expected_out = first.conv1.out_channels * type(first).expansion
    assert (first.downsample is None) == (expected_out == 16)  # an identity shortcut where the channels match
    last_bn = first.bn2 if type(first).expansion == 1 else first.bn3
    assert torch.all(last_bn.weight == 0)  # timm's zero-initialised last norm of the residual branch
    x = torch.randn(2, 3, 32, 32)
    assert net.eval()(x).shape == (2, dim) and torch.isfinite(net(x)).all()
    default = BackboneConfig(name=name, width=width, small_stem=small_stem)
    torch.manual_seed(0)
    a, _ = build_backbone(default)
    torch.manual_seed(0)
    b, _ = build_backbone(default.model_copy(update={"stem_width": 64}))
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), key  # stem_width 64 is the default network, initialised the same


def test_vit_tiny_patch4_builds_and_trains():
    cfg = BackboneConfig(name="vit_tiny", patch_size=4)
    for size in (16, 32):
        net, dim = build_backbone(cfg, size)
        assert dim == 192
        assert net.eval()(torch.randn(2, 3, size, size)).shape == (2, 192)
    assert BackboneConfig().patch_size == 8 and BackboneConfig(name="vit_small").name == "vit_small"
    with pytest.raises(ValueError, match="multiple of"):
        build_backbone(cfg, 18)
    torch.manual_seed(0)
    net, dim = build_backbone(cfg, 16)
    method = METHODS["byol"](net, dim, METHODS["byol"].config_class(**SMALL["byol"])).train()
    losses = train_steps(method, 2, total=10)
    assert all(torch.isfinite(torch.tensor(losses)))


# ----------------------------------------------------------------------------- DINO multi-crop


def local_views(n: int, seed: int = 2, size: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(BATCH, 3, size, size, generator=g) for _ in range(n)]


def test_dino_multicrop_loss_is_every_teacher_global_against_every_other_student_view():
    method = make("dino").eval()  # eval: BatchNorm does not depend on how views are grouped in a forward
    method.center.copy_(torch.randn(method.center.shape, generator=torch.Generator().manual_seed(3)))
    teacher_inputs = []
    method.teacher_backbone.register_forward_hook(lambda mod, args, out: teacher_inputs.append(args[0].shape))
    globals_, locals_ = views(), local_views(3)
    loss = method(*globals_, *locals_).loss
    assert teacher_inputs == [(BATCH, 3, 16, 16)] * 2  # the teacher sees the global views only
    with torch.no_grad():
        student = [method.head(method.backbone(v)) for v in (*globals_, *locals_)]
        teacher = [method.teacher_head(method.teacher_backbone(v)) for v in globals_]
    ts, tt = method.cfg.student_temp, float(method.teacher_temp)
    terms = []
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i != j:
                for b in range(BATCH):  # cross-entropy of one image, written out
                    p = torch.exp((t[b] - method.center[0]) / tt)
                    p = p / p.sum()
                    log_q = s[b] / ts - torch.logsumexp(s[b] / ts, dim=0)
                    terms.append(-(p * log_q).sum())
    assert len(terms) == BATCH * (2 * 5 - 2)
    torch.testing.assert_close(loss, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_dino_multicrop_centre_comes_from_the_teacher_globals():
    method = make("dino")
    teacher = _capture(method.teacher_head)
    center = method.center.clone()
    method(*views(), *local_views(4))
    method.after_step(0, 10)
    assert len(teacher) == 2
    torch.testing.assert_close(method.center, 0.9 * center + 0.1 * torch.cat(teacher).mean(dim=0, keepdim=True))


def test_dino_multicrop_loss_decreases_on_a_fixed_batch_of_the_tiny_slice(tiny_cifar_zip):
    from sempairs.data.registry import load_dataset
    from sempairs.pairs import pairs_from_labels
    from sempairs.train.batches import PairBatches

    store = load_dataset(str(tiny_cifar_zip), split="train", size=16)
    pairs = pairs_from_labels(store.labels, per_class=1, seed=0)  # one semantic pair per class
    batches = PairBatches(store.images, pairs, preset("dino_multicrop", size=16, local_crops=4), torch.device("cpu"))
    batch = batches.views(torch.arange(BATCH), torch.Generator().manual_seed(0))
    assert len(batch) == 6 and batch[2].shape == (BATCH, 3, 8, 8)
    method = make("dino", **FIXED_BATCH_OVERRIDES["dino"])
    opt = sgd(method)
    losses = []
    for step in range(20):
        out = method(*batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        method.after_step(step, 20)
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"dino"}))
def test_methods_without_multicrop_refuse_local_views(name):
    with pytest.raises(ValueError, match=f"method {name} trains on two views.*augment.local_crops=0"):
        make(name)(*views(), *local_views(2))


def test_local_crops_with_a_two_view_method_fail_at_config_load():
    with pytest.raises(ConfigError, match="augment.local_crops=4: method simclr trains on two views; set augment.local_crops=0 "
                                          r"or use a method that trains on local crops \(dino\)"):
        load_config(None, ["augment.local_crops=4"])
    cfg = load_config(None, ["method.name=dino", "augment.local_crops=4", "data.size=64"])
    assert cfg.augment.local_crops == 4 and cfg.augment.local_crop_size == 32
    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / "dino_multicrop_cifar10.yaml")
    assert shipped.augment == preset("dino_multicrop") and shipped.augment.local_crop_size == 16
    with pytest.raises(ConfigError, match="augment.local_size=12 is not a multiple of backbone.patch_size=8"):
        load_config(None, ["method.name=dino", "augment.local_crops=2", "augment.local_size=12", "backbone.name=vit_tiny"])


def test_vit_takes_local_views_of_another_size():
    net, dim = build_backbone(BackboneConfig(name="vit_tiny", patch_size=4), 16)
    method = METHODS["dino"](net, dim, METHODS["dino"].config_class(**SMALL["dino"])).train()
    out = method(*views(), *local_views(2, size=8))
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("name, weights", [
    ("vicreg", lambda c: {"invariance": c.sim_weight, "variance": c.var_weight, "covariance": c.cov_weight}),
    ("barlow_twins", lambda c: {"on_diagonal": c.scale_loss, "off_diagonal": c.scale_loss * c.lambda_offdiag}),
])
def test_logged_loss_terms_recombine_to_the_loss(name, weights):
    method = make(name)
    out = method(*views())
    assert set(out.logs) == set(weights(method.cfg)) and not any(t.requires_grad for t in out.logs.values())
    total = sum(w * out.logs[term] for term, w in weights(method.cfg).items())
    assert total.item() == pytest.approx(out.loss.item(), rel=1e-6)
