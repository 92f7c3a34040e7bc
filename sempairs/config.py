"""Typed run configuration: YAML files plus ``key=value`` overrides, validated before any work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sempairs.augment import AugmentConfig
from sempairs.methods import METHODS
from sempairs.models import BackboneConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """The dataset to pretrain on (and to evaluate kNN on: its ``test_split``).

    ``memory``: how the cached uint8 images are opened. ``ram`` reads them into memory; ``mmap``
    maps the cache file and training reads each batch from it with ``train.loader_workers``
    DataLoader processes (for stores larger than RAM); ``auto`` maps a file larger than a share of
    the available RAM (see ``sempairs.data.cache.opens_mapped``).
    """

    dataset: str = "cifar10"
    root: str | None = None
    download: bool = False
    size: int = Field(32, gt=0)
    split: str = "train"
    test_split: str | None = "test"
    classes: list[str] | None = None
    limit_per_class: int | None = Field(None, gt=0)
    test_limit_per_class: int | None = Field(None, gt=0)
    memory: Literal["auto", "ram", "mmap"] = "auto"


class PairsConfig(Strict):
    """Where the positive pairs come from.

    ``augmented``: two views of each image (all images, or with ``per_class`` the AP set matched
    to the ``labels`` set of the same seed); ``labels``: ``per_class`` pairs of two different
    images of a class; ``file``: a pair CSV (see sempairs.pairs.pairset).
    """

    source: Literal["augmented", "labels", "file"] = "augmented"
    per_class: int | None = Field(None, gt=0)
    file: str | None = None
    seed: int = 0
    add_files: list[str] = []

    @model_validator(mode="after")
    def _file_given(self):
        if (self.source == "file") != (self.file is not None):
            raise ValueError("pairs.file is needed with pairs.source=file, and only then")
        return self


class OptimConfig(Strict):
    """Optimiser and schedule; ``lr`` is per 256 images (scaled linearly with the batch size)."""

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = Field(0.4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(10, ge=0)
    min_lr: float = Field(0.0, ge=0)


class TrainSettings(Strict):
    """How long, how big, on what hardware, how often to save.

    ``compile`` runs the backbone through torch.compile; ``data_on_device`` keeps the uint8 images
    of an in-RAM store on the GPU (None: when they take at most a quarter of its free memory).
    ``loader_workers``: DataLoader processes reading a memory-mapped store (``data.memory``; None:
    min(8, CPU count)); in-RAM stores use none.
    """

    epochs: int = Field(100, gt=0)
    batch_size: int = Field(512, gt=1)
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, gt=0)
    strategy: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    data_on_device: bool | None = None
    loader_workers: int | None = Field(None, ge=0)
    checkpoint_every: int = Field(10, gt=0)
    log_every: int = Field(50, gt=0)
    collapse_std: float = Field(0.01, ge=0)

    @property
    def workers(self) -> int:
        """``loader_workers``, or min(8, CPU count) when it is None."""
        return self.loader_workers if self.loader_workers is not None else min(8, os.cpu_count() or 1)


class KnnConfig(Strict):
    """Weighted kNN on L2-normalised backbone features (k=200, t=0.1: the common protocol)."""

    k: int = Field(200, gt=0)
    temperature: float = Field(0.1, gt=0)
    every: int = Field(0, ge=0)
    batch_size: int = Field(1024, gt=0)


def _method_type():
    configs = tuple(cls.config_class for cls in METHODS.values())
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007


MethodConfig = _method_type()


class RunConfig(Strict):
    """One pretraining run: data, pairs, backbone, method, augmentation, optimiser, training, kNN."""

    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = DataConfig()
    pairs: PairsConfig = PairsConfig()
    backbone: BackboneConfig = BackboneConfig()
    method: MethodConfig = Field(default_factory=lambda: METHODS["simclr"].config_class())
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainSettings = TrainSettings()
    knn: KnnConfig = KnnConfig()

    @field_validator("method", mode="before")
    @classmethod
    def _default_method(cls, value):
        if isinstance(value, dict) and "name" not in value:
            return {"name": "simclr", **value}
        return value

    @model_validator(mode="after")
    def _sizes_agree(self):
        if self.augment.size != self.data.size:
            self.augment = self.augment.model_copy(update={"size": self.data.size})
        return self

    @model_validator(mode="after")
    def _local_crops_usable(self):
        crops, method = self.augment.local_crops, self.method.name
        if crops and not METHODS[method].supports_local_crops:
            able = ", ".join(sorted(name for name, cls in METHODS.items() if cls.supports_local_crops))
            raise ValueError(f"augment.local_crops={crops}: method {method} trains on two views; set "
                             f"augment.local_crops=0 or use a method that trains on local crops ({able})")
        size, patch = self.augment.local_crop_size, self.backbone.patch_size
        if crops and self.backbone.name.startswith("vit") and size % patch:
            raise ValueError(f"augment.local_size={size} is not a multiple of backbone.patch_size={patch}: "
                             f"set augment.local_size to a multiple of {patch}")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


class ConfigError(ValueError):
    """A configuration that cannot run; the message names each bad key and what is allowed."""


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: '{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["train.epochs=2", "method.name=byol"]`` -> nested dict; values are parsed as YAML scalars."""
    tree: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. train.epochs=10)")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        if not key:  # a check across sections: its message names the keys
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path, kind: str, keys: str) -> dict:
    """The top-level mapping of the YAML file ``path`` (a ``kind`` file with keys like ``keys``); ConfigError if not."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{kind} file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping ({keys}, ...)")
    return loaded


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> RunConfig:
    """Read a YAML run config (or defaults), apply ``key=value`` overrides, validate everything."""
    tree = dict(base or {})
    source = "defaults"
    if path is not None:
        tree = _merge(tree, read_yaml_mapping(path, "config", "sections data, pairs"))
        source = str(path)
    tree = _merge(tree, parse_overrides(overrides or []))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None
