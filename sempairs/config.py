"""Typed run configuration: YAML files plus ``key=value`` overrides, validated before any work."""

from __future__ import annotations

import math
import os
from pathlib import Path
import warnings
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from sempairs.augment import AugmentConfig
from sempairs.errors import SempairsError, SempairsWarning
from sempairs.methods import METHODS, MethodConfig
from sempairs.models import BackboneConfig
from sempairs.strict import Strict


class DataConfig(Strict):
    """The dataset to pretrain on (and to evaluate kNN on: its ``test_split``).

    ``memory``: how the cached uint8 images are opened. ``ram`` reads them into memory; ``mmap``
    maps the cache file and training reads each batch from it with ``train.loader_workers``
    DataLoader processes (for stores larger than RAM); ``auto`` maps a file larger than a share of
    the available RAM (see ``sempairs.data.cache.opens_mapped``).

    ``size`` (at most 4096) is the side of the square images; ``resize`` how an image gets there:
    ``squash`` (the whole image, stretched; the downsampled-ImageNet practice at 32-64 px) or
    ``short_side_center_crop`` (the short side scaled to ``size``, the centre square kept; the
    usual reading at 224 px). ``decode_workers``: processes decoding a cold cache (default: one per
    CPU, at most 4).

    ``test_split: heldout`` evaluates on images carved from the training split instead of the
    test split: the last ``heldout_per_class`` images of each class are held out, and training
    (pairs, kNN memory) uses only the others. Choose recipes this way; keep the test split for
    the final numbers.
    """

    dataset: str = "cifar10"
    root: str | None = None
    download: bool = False
    size: int = Field(32, gt=0, le=4096)
    resize: Literal["squash", "short_side_center_crop"] = "squash"
    decode_workers: int | None = Field(None, gt=0)
    split: str = "train"
    test_split: str | None = "test"
    classes: list[str] | None = None
    limit_per_class: int | None = Field(None, gt=0)
    test_limit_per_class: int | None = Field(None, gt=0)
    memory: Literal["auto", "ram", "mmap"] = "auto"
    heldout_per_class: int = Field(100, gt=0)

    @field_validator("test_split")
    @classmethod
    def _queries_not_in_memory(cls, value: str | None, info):
        if value is not None and value == info.data.get("split"):
            raise ValueError("it is also data.split, the kNN memory: every query would find itself. Fix: give another "
                             "split (test) or heldout")
        return value


class PairsConfig(Strict):
    """Where the positive pairs come from.

    ``augmented``: two views of each image (all images, or with ``per_class`` the AP set matched
    to the ``labels`` set of the same seed); ``labels``: ``per_class`` pairs of two different
    images of a class; ``file``: a pair CSV (see sempairs.pairs.pairfile). ``precision`` < 1 makes that
    share of the pairs from the labels (``labels``, and ``+sp`` files) same-class and the rest cross-class,
    seeded (:func:`sempairs.pairs.builders.with_precision`); the matched AP set keeps the same anchors.
    """

    source: Literal["augmented", "labels", "file"] = "augmented"
    per_class: int | None = Field(None, gt=0)
    file: str | None = None
    seed: int = 0
    precision: float = Field(1.0, ge=0, le=1)
    add_files: list[str] = []

    @model_validator(mode="after")
    def _file_given(self):
        if (self.source == "file") != (self.file is not None):
            raise ValueError("pairs.file is needed with pairs.source=file, and only then")
        return self


class OptimConfig(Strict):
    """Optimiser and schedule; ``lr`` is per 256 images (scaled linearly with the global batch size).

    Keys a run config leaves out take the method's recipe (``recipe`` in its module, see
    ``sempairs/methods``); the defaults here are the settings solo-learn's CIFAR recipes share.
    ``weight_decay`` goes to weights only (biases and normalisation parameters get none);
    ``final_weight_decay`` turns it into a cosine schedule from ``weight_decay`` to that value (DINO).
    LARS: ``lars_eta`` is the trust coefficient, ``lars_clip`` caps the adapted learning rate at the
    scheduled one (LARC, solo-learn's ``clip_lr``); weights are always adapted, biases and
    normalisation parameters never, whatever the weight decay. ``clip_grad`` > 0 caps the L2 norm of
    each parameter's gradient (DINO's per-parameter clipping). ``fixed_lr`` names modules of the
    method whose learning rate stays at the peak, without warmup or decay (SimSiam's predictor).
    """

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = Field(0.4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    final_weight_decay: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(10, ge=0)
    min_lr: float = Field(0.0, ge=0)
    lars_eta: float = Field(0.02, gt=0)
    lars_clip: bool = True
    clip_grad: float = Field(0.0, ge=0)
    fixed_lr: list[str] = []


class TrainSettings(Strict):
    """How long, how big, on what hardware, how often to save.

    ``compile`` runs the backbone through torch.compile (off by default: on the CPU it was measured not to
    pay, docs/benchmarks.md; ``auto``, which always meant off, is read as false in saved configs and
    refused in new ones); ``data_on_device`` keeps the uint8 images
    of an in-RAM store on the GPU (None: when they take at most a quarter of its free memory).
    ``loader_workers``: DataLoader processes reading a memory-mapped store (``data.memory``; None:
    min(8, CPU count)); in-RAM stores use none. ``batch_size`` is global: each of the N processes
    takes batch_size / N pairs per step. ``sync_batchnorm`` computes BatchNorm statistics over the
    global batch (None: on when there is more than one process).

    ``loggers``: where the step and epoch metrics go besides ``history.csv``: ``csv``
    (``logs/metrics.csv``), ``tensorboard``, ``wandb`` (extra ``.[wandb]``; ``WANDB_MODE=offline``
    keeps it in the run folder), ``mlflow`` (extra ``.[mlflow]``; ``MLFLOW_TRACKING_URI``, else a
    SQLite store in the run folder); see ``sempairs.train.trackers``. ``online_probe``: train a
    linear classifier on the detached features alongside pretraining and log its test top-1 each
    epoch (``online_linear_top1``; needs labelled training images and a labelled test split; see
    ``sempairs.train.probe``).

    ``resume``: continue the run from its folder's ``last.ckpt`` when there is one, else start it
    (``auto``, or true, as ``--resume``); false refuses a folder that holds a checkpoint. A command
    that a scheduler may run again after a preemption uses ``auto`` (see ``sempairs.train.preemption``).
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
    sync_batchnorm: bool | None = None
    loggers: list[Literal["csv", "tensorboard", "wandb", "mlflow"]] = ["csv"]
    online_probe: bool = False
    resume: Literal["auto"] | bool = False

    @field_validator("loggers")
    @classmethod
    def _loggers_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"{value}: name each logger once")
        return value

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_auto_was_off(cls, value):
        """``auto`` (configs and checkpoints before 2026-12) never compiled: read as false, which it meant."""
        return False if value == "auto" else value

    @property
    def workers(self) -> int:
        """``loader_workers``, or min(8, CPU count) when it is None."""
        return self.loader_workers if self.loader_workers is not None else min(8, os.cpu_count() or 1)


class KnnConfig(Strict):
    """Weighted kNN on L2-normalised backbone features (k=200, t=0.1: the common protocol)."""

    k: int = Field(200, gt=0)
    temperature: float = Field(0.1, gt=0, allow_inf_nan=False)
    every: int = Field(0, ge=0)


class FeaturesConfig(Strict):
    """Backbone feature extraction, shared by every evaluation protocol and by mining: images per forward pass."""

    batch_size: int = Field(1024, gt=0)


def _key(section, key: str):
    """``section[key]`` of a config section given as a mapping or a model (None when absent)."""
    return section.get(key) if isinstance(section, dict) else getattr(section, key, None)


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested mapping as one level of dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def plain_name(value: str) -> str:
    """``value`` if it can name one folder inside an output folder, else a ValueError saying what is allowed."""
    if value in ("", ".", "..") or value != value.strip() or any(c in value for c in "/\\\0"):
        raise ValueError(f"{value!r} names a folder inside out_dir: give a plain name, without '/', '\\', surrounding "
                         "spaces, and other than '.' or '..'")
    return value


class RunConfig(Strict):
    """One pretraining run: data, pairs, backbone, method, augmentation, optimiser, training, kNN."""

    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = DataConfig()
    pairs: PairsConfig = PairsConfig()
    backbone: BackboneConfig = BackboneConfig()
    method: SerializeAsAny[MethodConfig] = Field(default_factory=lambda: METHODS["simclr"].config_class())
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainSettings = TrainSettings()
    knn: KnnConfig = KnnConfig()
    features: FeaturesConfig = FeaturesConfig()

    @model_validator(mode="before")
    @classmethod
    def _method_recipe(cls, data):
        """Optimiser keys the config leaves out take the method's recipe; keys it gives win."""
        if not isinstance(data, dict):
            return data
        method, backbone, optim = data.get("method"), data.get("backbone"), data.get("optim", {})
        name = _key(method, "name") or "simclr"
        if name not in METHODS:
            return data  # the method's own validation names the error
        if isinstance(optim, BaseModel):
            optim = optim.model_dump(exclude_unset=True)
        if not isinstance(optim, dict):
            return data
        recipe = METHODS[name].recipe_for(_key(backbone, "name") or BackboneConfig().name)
        return {**data, "optim": {**recipe, **optim}}

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_name(value)

    @model_validator(mode="before")
    @classmethod
    def _knn_batch_size_moved(cls, data):
        """``knn.batch_size`` (configs and checkpoints before 2026-12) is read as ``features.batch_size``."""
        knn = data.get("knn") if isinstance(data, dict) else None
        if not (isinstance(knn, dict) and "batch_size" in knn):
            return data
        warnings.warn("knn.batch_size is deprecated: it is the feature batch size of every protocol, now "
                      "features.batch_size. Fix: rename the key", SempairsWarning, stacklevel=2)
        knn = dict(knn)
        features = {"batch_size": knn.pop("batch_size"), **(data.get("features") or {})}
        return {**data, "knn": knn, "features": features}

    @field_validator("method", mode="wrap")
    @classmethod
    def _method_config(cls, value, handler):
        """A mapping becomes the config of the method it names (default simclr), whichever module registered it."""
        if not isinstance(value, dict):
            return handler(value)
        name = value.get("name", "simclr")
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; the methods are: {', '.join(sorted(METHODS))}")
        return METHODS[name].config_class.model_validate({**value, "name": name})

    @model_validator(mode="after")
    def _numbers_finite(self):
        for key, value in flatten(self.model_dump()).items():
            for number in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(number, float) and not math.isfinite(number):
                    raise ValueError(f"{key}: {number} is not a finite number; give a finite value")
        return self

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


class ConfigError(SempairsError, ValueError):
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


def nested(flat: dict[str, Any]) -> dict:
    """``{"train.epochs": 2}`` -> ``{"train": {"epochs": 2}}`` (the inverse of :func:`flatten`)."""
    tree: dict = {}
    for key, value in flat.items():
        _set_dotted(tree, key, value)
    return tree


def parse_overrides(items: list[str]) -> dict:
    """``["train.epochs=2", "method.name=byol"]`` -> nested dict; values are parsed as YAML scalars."""
    flat = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. train.epochs=10)")
        key, raw = item.split("=", 1)
        flat[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return nested(flat)


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, section by section (values of ``extra`` win)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
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
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r})")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path, kind: str, keys: str) -> dict:
    """The top-level mapping of the YAML file ``path`` (a ``kind`` file with keys like ``keys``); ConfigError if not."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{kind} file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the {kind} YAML file itself")
    try:  # from bytes, YAML reads UTF-8 and, by their byte-order mark, UTF-8-BOM and UTF-16 files
        loaded = yaml.safe_load(path.read_bytes()) or {}
    except yaml.YAMLError as exc:
        fix = "save it as UTF-8" if isinstance(exc, yaml.reader.ReaderError) else "correct the place named"
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}. Fix: {fix}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping ({keys}, ...)")
    return loaded


Layer = tuple[str, dict]
"""One source of run settings: its name (``config file run.yaml``, ``command line``, ``grid axis pairs``)
and the nested mapping of the keys it states."""

DEFAULT, DERIVED = "default", "derived from other keys"
COMMAND_LINE = "command line"


def recipe_source(method: str) -> str:
    """How a value taken from a method's optimiser recipe is credited."""
    return f"method recipe ({method})"


def config_layers(path: str | Path | None = None, overrides: list[str] | None = None) -> list[Layer]:
    """The layers of a run config: the YAML file ``path`` (if any), then the ``key=value`` overrides (if any)."""
    layers = [] if path is None else [(f"config file {path}", read_yaml_mapping(path, "config", "sections data, pairs"))]
    tree = parse_overrides(overrides or [])
    return layers + [(COMMAND_LINE, tree)] if tree else layers


def load_layers(layers: list[Layer]) -> RunConfig:
    """The run config the layers give (each over the ones before it; keys none states: the method's recipe,
    then the defaults), validated; ConfigError naming the sources and each bad key."""
    tree: dict = {}
    for source, layer in layers:
        if _key(layer.get("train") or {}, "compile") == "auto":
            raise ConfigError(f"{source}: train.compile: auto is removed (it never compiled anything). Fix: set "
                              "train.compile to true or false")
        tree = merge(tree, layer)
    return validate(RunConfig, tree, " + ".join(source for source, _ in layers) or "defaults")


def validate(model: type[BaseModel], tree: dict, source: str) -> BaseModel:
    """``tree`` validated as ``model`` (a config section or the whole run); ConfigError naming each bad key."""
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or defaults), apply ``key=value`` overrides, validate everything."""
    return load_layers(config_layers(path, overrides))


def _unstated(cfg: RunConfig) -> dict[str, Any]:
    """What ``cfg``'s method and backbone give with no other key stated (defaults and recipe), by dotted key."""
    bare = RunConfig.model_validate({"method": {"name": cfg.method.name}, "backbone": {"name": cfg.backbone.name}})
    return flatten(bare.model_dump(mode="json"))


def sources(cfg: RunConfig, layers: list[Layer]) -> dict[str, str]:
    """Where each value of ``cfg`` (made by :func:`load_layers` from ``layers``) came from, by dotted key in the
    config's order: the last layer stating it, else the method's recipe, else the default; a value that
    validation set from other keys (``augment.size`` follows ``data.size``) is ``derived from other keys``."""
    stated = {key: source for source, layer in layers for key in flatten(layer)}
    recipe = METHODS[cfg.method.name].recipe_for(cfg.backbone.name)
    unstated = _unstated(cfg)
    out = {}
    for key, value in flatten(cfg.model_dump(mode="json")).items():
        section, _, name = key.partition(".")
        if key in stated:
            out[key] = stated[key]
        elif section == "optim" and name in recipe:
            out[key] = recipe_source(cfg.method.name)
        else:
            out[key] = DERIVED if key in unstated and unstated[key] != value else DEFAULT  # absent: in a section a layer gave
    return out


def saved_sources(cfg: RunConfig, record: str) -> dict[str, str]:
    """:func:`sources` for a config saved whole (a run's ``config.yaml``, named ``record``), which does not
    record its sources: a value equal to the default or to the method's recipe is credited to them, any other
    to ``record``."""
    unstated = _unstated(cfg)
    differing = {k: v for k, v in flatten(cfg.model_dump(mode="json")).items() if unstated.get(k) != v}
    return sources(cfg, [(record, nested(differing))])


def recipe_overrides(cfg: RunConfig, where: dict[str, str]) -> dict[str, tuple[str, Any, Any]]:
    """The keys of the method's recipe that ``cfg`` holds at another value, with ``where`` (its :func:`sources`):
    dotted key -> (source, value, the recipe's value)."""
    recipe = METHODS[cfg.method.name].recipe_for(cfg.backbone.name)
    optim = cfg.optim.model_dump(mode="json")
    return {f"optim.{k}": (where[f"optim.{k}"], optim[k], v) for k, v in recipe.items() if optim[k] != v}
