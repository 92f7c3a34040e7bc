"""Each method's optimiser recipe and its pieces: LARS adaptation per group, clipping, schedules,
fixed learning rates, DINO's frozen prototypes; config keys a user gives win over the recipe;
and the distributed forms of the SimCLR/NNCLR losses against the whole-batch computation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

from sempairs.config import OptimConfig, RunConfig, load_config
from sempairs.losses.nnclr import nnclr_loss
from sempairs.losses.nt_xent import nt_xent
from sempairs.methods import METHODS
from sempairs.train.optim import Schedule, build_optimizer, clip_gradients, param_groups

REPO = Path(__file__).resolve().parents[1]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 3)  # a weight and a bias
        self.norm = nn.BatchNorm1d(3)
        self.predictor = nn.Linear(3, 3, bias=False)


def _one_step(cfg: OptimConfig, lr: float = 0.5):
    """A Tiny whose gradients are set by hand, and its parameters after one optimiser step at ``lr``."""
    torch.manual_seed(0)
    model = Tiny()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, cfg, batch_size=256)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    return before, grads, dict(model.named_parameters())


@pytest.mark.parametrize("clip", [False, True])
def test_lars_adapts_weights_even_without_weight_decay_and_never_biases_or_norms(clip):
    cfg = OptimConfig(name="lars", weight_decay=0.0, momentum=0.0, lars_eta=0.02, lars_clip=clip)
    lr = 0.5
    before, grads, after = _one_step(cfg, lr)
    for name in before:
        w, g = before[name], grads[name]
        if w.ndim > 1:  # trust ratio eta |w| / |g| (LARC: ratio / lr capped at 1), weight decay 0
            ratio = 0.02 * w.norm() / g.norm()
            ratio = min(ratio / lr, 1.0) if clip else ratio
            expected = w - lr * ratio * g
        else:  # biases and BatchNorm parameters: plain SGD
            expected = w - lr * g
        torch.testing.assert_close(after[name].detach(), expected, msg=name)


def test_lars_weight_decay_goes_into_the_trust_ratio_and_to_weights_only():
    cfg = OptimConfig(name="lars", weight_decay=0.1, momentum=0.0, lars_eta=0.02, lars_clip=False)
    before, grads, after = _one_step(cfg, lr=0.5)
    w, g = before["body.weight"], grads["body.weight"]
    ratio = 0.02 * w.norm() / (g.norm() + 0.1 * w.norm())
    torch.testing.assert_close(after["body.weight"].detach(), w - 0.5 * ratio * (g + 0.1 * w))
    torch.testing.assert_close(after["body.bias"].detach(), before["body.bias"] - 0.5 * grads["body.bias"])


def test_param_groups_split_decay_and_fixed_lr_and_name_a_missing_module():
    model = Tiny()
    groups = param_groups(model, OptimConfig(name="sgd", weight_decay=0.1, fixed_lr=["predictor"]))
    by_kind = {(g["decay"], g["fixed_lr"]): g for g in groups}
    assert set(by_kind) == {(True, False), (False, False), (True, True)}  # the predictor has no bias
    assert by_kind[True, True]["params"] == [model.predictor.weight]
    assert [g["weight_decay"] for g in groups if not g["decay"]] == [0.0]
    assert "always_adapt" not in groups[0]  # LARS keys only for LARS
    with pytest.raises(ValueError, match="optim.fixed_lr names 'head'.*its modules: body, norm, predictor"):
        param_groups(model, OptimConfig(fixed_lr=["head"]))


def test_schedule_warmup_cosine_fixed_groups_and_weight_decay_cosine():
    cfg = OptimConfig(name="sgd", lr=0.4, min_lr=0.04, warmup_epochs=2, weight_decay=0.04, final_weight_decay=0.4,
                      fixed_lr=["predictor"])
    opt = build_optimizer(Tiny(), cfg, batch_size=512)  # peak 0.8, floor 0.08
    schedule = Schedule(cfg, batch_size=512, steps_per_epoch=5, epochs=12)  # 10 warmup steps, 60 in all
    lrs = [schedule.apply(opt, step) for step in range(60)]
    assert lrs[0] == pytest.approx(0.08) and lrs[9] == pytest.approx(0.8)  # linear warmup to the peak
    assert lrs[35] == pytest.approx(0.08 + 0.72 * 0.5 * (1 + math.cos(math.pi * 25 / 50)))
    assert lrs[59] == pytest.approx(0.08 + 0.72 * 0.5 * (1 + math.cos(math.pi * 49 / 50)))
    fixed = [g for g in opt.param_groups if g["fixed_lr"]]
    assert fixed and all(g["lr"] == pytest.approx(0.8) for g in fixed)  # never warmed up or decayed
    assert schedule.weight_decay_at(0) == pytest.approx(0.04) and schedule.weight_decay_at(60) == pytest.approx(0.4)
    assert schedule.weight_decay_at(30) == pytest.approx(0.22)
    decays = {g["decay"]: g["weight_decay"] for g in opt.param_groups}
    assert decays[True] == pytest.approx(schedule.weight_decay_at(59)) and decays[False] == 0.0


def test_clip_gradients_caps_each_parameter_on_its_own():
    big, small = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    big.grad, small.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])
    clip_gradients([big, small], max_norm=1.0)
    torch.testing.assert_close(big.grad, torch.tensor([3.0, 4.0, 0.0]) / (5 + 1e-6))
    torch.testing.assert_close(small.grad, torch.tensor([0.3, 0.4]))  # below the cap: unchanged


def test_dino_prototypes_take_no_update_in_the_frozen_epochs():
    from sempairs.trained.loading import build_method

    cfg = load_config(None, ["method.name=dino", "method.out_dim=16", "method.proj_hidden_dim=32",
                             "method.bottleneck_dim=8", "method.freeze_last_layer_epochs=1", "data.size=16"])
    method = build_method(cfg)
    for p in method.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    method.before_update(epoch=0)
    assert method.head.prototypes.grad is None and method.head.mlp[0].weight.grad is not None
    method.head.prototypes.grad = torch.ones_like(method.head.prototypes)
    method.before_update(epoch=1)
    assert method.head.prototypes.grad is not None


# --------------------------------------------------------------------------- recipes and config keys


def test_each_method_has_a_complete_recipe_the_config_applies():
    for name, cls in METHODS.items():
        for backbone in ("resnet18", "vit_small"):
            recipe = cls.recipe_for(backbone)
            assert {"name", "lr", "weight_decay"} <= recipe.keys(), name
            OptimConfig(**recipe)  # valid keys and values
            cfg = RunConfig.model_validate({"method": {"name": name}, "backbone": {"name": backbone}})
            assert cfg.optim == OptimConfig(**recipe), (name, backbone)
    assert RunConfig().optim == OptimConfig()  # SimCLR's recipe is the default optimiser
    assert load_config(None, ["method.name=simsiam"]).optim.fixed_lr == ["predictor"]
    vit = load_config(None, ["method.name=dino", "backbone.name=vit_small"]).optim
    assert (vit.name, vit.final_weight_decay, vit.clip_grad) == ("adamw", 0.4, 3.0)


def test_keys_a_user_gives_win_over_the_recipe_key_by_key(tmp_path):
    path = tmp_path / "byol.yaml"
    path.write_text(yaml.safe_dump({"method": {"name": "byol"}, "optim": {"weight_decay": 0.0}}))
    cfg = load_config(path, ["optim.warmup_epochs=3"])
    assert (cfg.optim.name, cfg.optim.lr) == ("lars", 1.0)  # BYOL's recipe
    assert (cfg.optim.weight_decay, cfg.optim.warmup_epochs) == (0.0, 3)  # the file's key, the override
    assert load_config(path, ["optim.lr=0.2"]).optim.lr == 0.2
    again = RunConfig.model_validate(cfg.model_dump(mode="json"))  # a saved config.yaml means the same
    assert again == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")) + [REPO / "sempairs/configs/quickstart.yaml"],
                         ids=lambda p: p.name)
def test_the_shipped_configs_keep_every_optimiser_key_they_state(path):
    tree = yaml.safe_load(path.read_text())
    base = tree.get("base", tree)  # experiment grids hold the run settings under base
    stated = base.get("optim", {})
    cfg = RunConfig.model_validate({k: v for k, v in base.items() if k in RunConfig.model_fields})
    for key, value in stated.items():
        assert getattr(cfg.optim, key) == value, (path.name, key)


def test_the_short_methods_grid_trains_each_method_with_its_own_recipe():
    from sempairs.experiments.grid import expand, load_experiment

    cells = expand(load_experiment(REPO / "configs" / "exp_methods_short.yaml"))
    by_method = {c.config.method.name: c.config for c in cells}
    assert set(by_method) == set(METHODS)
    for name, cfg in by_method.items():
        recipe = METHODS[name].recipe_for(cfg.backbone.name)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == (recipe["name"], recipe["lr"], recipe["weight_decay"])
        assert cfg.optim.warmup_epochs == 2  # the grid's own short warmup for 20 epochs


# --------------------------------------------------------------------------- distributed loss forms


def _shares(n: int, world: int):
    return [(r * n // world, n // world) for r in range(world)]


@pytest.mark.parametrize("with_positives", [False, True])
def test_nt_xent_local_rows_against_global_columns_equal_the_whole_batch(with_positives):
    torch.manual_seed(0)
    z1, z2 = (torch.randn(12, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    pos = torch.rand(12, 12) > 0.8 if with_positives else None
    whole = nt_xent(z1, z2, 0.2, pos)
    expected = torch.autograd.grad(whole, (z1, z2))
    shares = [nt_xent(z1[o : o + n], z2[o : o + n], 0.2, None if pos is None else pos[o : o + n],
                      columns=(z1, z2), offset=o) for o, n in _shares(12, 3)]
    mean = sum(shares) / 3  # what the processes' losses average to under DDP
    torch.testing.assert_close(mean, whole)
    for got, want in zip(torch.autograd.grad(mean, (z1, z2)), expected):
        torch.testing.assert_close(got, want)


def test_nnclr_local_rows_against_global_columns_equal_the_whole_batch():
    torch.manual_seed(0)
    z1, z2, p1, p2 = (torch.randn(8, 4, dtype=torch.float64, requires_grad=True) for _ in range(4))
    support = torch.randn(20, 4, dtype=torch.float64)
    whole = nnclr_loss(z1, z2, support, 0.2, p1, p2)
    mean = sum(nnclr_loss(z1[o : o + n], z2[o : o + n], support, 0.2, p1, p2, offset=o) for o, n in _shares(8, 2)) / 2
    torch.testing.assert_close(mean, whole)
    for got, want in zip(torch.autograd.grad(mean, (p1, p2)), torch.autograd.grad(whole, (p1, p2))):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="offset 6 must be rows of the columns"):
        nnclr_loss(z1[:4], z2[:4], support, 0.2, p1, p2, offset=6)
