"""Registries: entries found in their package's modules, and a new method added as one definition."""

from __future__ import annotations

from typing import Literal

import pytest
import torch

from sempairs.config import ConfigError, load_config
from sempairs.methods import METHODS, Method, MethodConfig, StepOutput
from sempairs.models.heads import mlp
from sempairs.registry import Registry
from sempairs.train import train
from sempairs.trained.loading import load_method


def test_a_registry_imports_every_module_of_its_package(tmp_path, monkeypatch):
    package = tmp_path / "toy_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("from sempairs.registry import Registry\nREG = Registry('toy', 'toy_plugins')\n")
    for name in ("first", "second"):
        (package / f"{name}.py").write_text(f"from toy_plugins import REG\nREG.register({name!r}, {name!r}.upper())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_plugins

    assert sorted(toy_plugins.REG) == ["first", "second"] and toy_plugins.REG["second"] == "SECOND"


def test_every_module_of_the_methods_package_registers_its_method():
    import pkgutil

    import sempairs.methods as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert {cls.__module__.rsplit(".", 1)[1] for cls in METHODS.values()} == modules - {"base"}


def test_names_are_unique_and_unknown_names_are_named():
    registry: Registry[int] = Registry("thing", "sempairs.methods")
    registry.register("a", 1)
    registry.register("a", 1)  # the same entry again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        registry.register("a", 2)
    with pytest.raises(KeyError, match="unknown thing 'b'; known: a"):
        registry["b"]


class ToyConfig(MethodConfig):
    name: Literal["toy_align"] = "toy_align"
    dim: int = 8


class ToyAlign(Method):
    """A toy method: pull the two views' projections together, keep them on the sphere (alignment only)."""

    config_class = ToyConfig
    recipe = {"name": "sgd", "lr": 0.1}

    def __init__(self, backbone, feat_dim: int, cfg: ToyConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, 16, cfg.dim)

    def step(self, view1, view2):
        h1, h2 = self.backbone(view1), self.backbone(view2)
        z1, z2 = (torch.nn.functional.normalize(self.projector(h), dim=1) for h in (h1, h2))
        return StepOutput((z1 - z2).pow(2).sum(1).mean(), h1.detach())


@pytest.fixture
def toy_method():
    METHODS.register("toy_align", ToyAlign)
    yield ToyAlign
    METHODS.unregister("toy_align")


def test_a_method_defined_in_one_place_trains_from_the_config(toy_method, tiny_cifar_zip, tmp_path):
    cfg = load_config(None, [f"data.dataset={tiny_cifar_zip}", "data.size=16", f"out_dir={tmp_path}", "name=toy",
                             "method.name=toy_align", "method.dim=4", "train.batch_size=40", "train.epochs=1",
                             "optim.warmup_epochs=0", "knn.k=5"])
    assert isinstance(cfg.method, ToyConfig) and cfg.method.dim == 4 and cfg.optim.name == "sgd"  # its recipe
    result = train(cfg, progress=False)
    method, saved = load_method(result.run_dir)
    assert isinstance(method, ToyAlign) and saved.method == cfg.method and result.knn["knn_top1"] > 0


def test_without_registration_the_method_is_unknown():
    with pytest.raises(ConfigError, match="unknown method 'toy_align'"):
        load_config(None, ["method.name=toy_align"])
