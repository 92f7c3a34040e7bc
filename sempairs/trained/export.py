"""A run's backbone as files that torchvision or timm load without sempairs, and a Hugging Face Hub folder.

An export is a new folder holding the backbone's plain state dict (torchvision/timm key names, no
``backbone.`` prefix, no classifier) and ``config.json``: the run it came from (checkpoint, epoch,
the whole run config), the input it expects (size, normalisation) and, per library that can
build the matching module, the exact Python that builds it and loads the weights with
``load_state_dict(strict=True)``. Formats:

* ``torchvision``: ``model.pth`` (``torch.save`` of the state dict; read it with
  ``weights_only=True``) and the torchvision code. ResNets at width 1 only: torchvision's ResNet
  has fixed stage widths, and its ViT names its weights unlike timm's.
* ``timm``: ``model.safetensors`` and the timm code (every sempairs backbone).
* ``safetensors``: ``model.safetensors`` and the code of each library that can build it.
* ``hf``: as ``safetensors``, plus a model card ``README.md`` written from the run (method, pairs,
  data, epochs, seeds, and every result under ``<run>/eval/`` with its selection and settings):
  a folder to upload to the Hugging Face Hub as it is (:func:`push_to_hub`).

The checkpoint is read with ``weights_only=True`` and the results as JSON: nothing is unpickled.
Before writing, the export runs its own build code, loads the weights strictly and checks that the
built module gives the run backbone's features. A new export is written in a hidden sibling folder
renamed to ``out`` at the end; each file is written atomically.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sempairs import __version__
from sempairs.atomic import write_bytes, write_text
from sempairs.config import RunConfig
from sempairs.errors import InputError
from sempairs.models import BackboneConfig
from sempairs.models.backbones import VIT_MODELS
from sempairs.trained.checkpoint import LAST, checkpoint_file, read_checkpoint
from sempairs.trained.loading import load_method

FORMATS = ("torchvision", "timm", "safetensors", "hf")
LIBRARIES = ("torchvision", "timm")
CONFIG = "config.json"
CARD = "README.md"
MARK = "sempairs export"  # config.json's "exported_by" starts with it: how --force recognises an earlier export
STAGE_CHANNELS = (64, 128, 256, 512)
FEATURE_TOLERANCE = 1e-4  # the self-check before writing; the tests hold exports to 1e-5


@dataclass
class Exported:
    """What an export wrote: its folder, file names and the contents of its ``config.json``."""

    folder: Path
    files: list[str]
    config: dict


def weights_file(fmt: str) -> str:
    """The name of the weights file of format ``fmt``."""
    return "model.pth" if fmt == "torchvision" else "model.safetensors"


def unsupported(backbone: BackboneConfig, library: str) -> str | None:
    """Why ``library`` cannot build ``backbone`` (None when it can)."""
    if library == "torchvision" and backbone.name in VIT_MODELS:
        return "torchvision's VisionTransformer names its weights unlike timm's, which sempairs' ViTs are"
    if library == "torchvision" and backbone.width != 1:
        return f"torchvision's ResNet has fixed stage widths {STAGE_CHANNELS}, and this backbone has width {backbone.width}"
    return None


def build_code(backbone: BackboneConfig, image_size: int, library: str) -> list[str]:
    """Python lines that build the module ``backbone`` describes as ``model`` with ``library`` alone (no weights)."""
    if backbone.name in VIT_MODELS:
        return ["import timm",
                f"model = timm.create_model({VIT_MODELS[backbone.name]!r}, pretrained=False, num_classes=0, "
                f"img_size={image_size}, patch_size={backbone.patch_size}, dynamic_img_size=True)"]
    channels = tuple(max(8, round(c * backbone.width)) for c in STAGE_CHANNELS)
    if library == "torchvision":
        lines = ["import torchvision", "from torch import nn", f"model = torchvision.models.{backbone.name}(weights=None)"]
    else:
        extra = f", channels={channels}" if backbone.width != 1 else ""
        lines = ["import timm", "from torch import nn",
                 f"model = timm.create_model({backbone.name!r}, pretrained=False, num_classes=0{extra})"]
    stem = backbone.stem_width or 64
    if backbone.small_stem:
        lines.append(f"model.conv1 = nn.Conv2d(3, {stem}, kernel_size=3, stride=1, padding=1, bias=False)")
        lines.append("model.maxpool = nn.Identity()")
    elif stem != 64:
        lines.append(f"model.conv1 = nn.Conv2d(3, {stem}, kernel_size=7, stride=2, padding=3, bias=False)")
    if stem != 64:
        lines += _stem_width_lines(backbone.name, library, stem, channels[0])
    if library == "torchvision":
        lines.append("model.fc = nn.Identity()")
    return lines


def _stem_width_lines(arch: str, library: str, stem: int, planes: int) -> list[str]:
    """The stem's norm and the first block of stage 1 taking ``stem`` channels (as ``backbones._set_stem_width``)."""
    block, expansion = ("BasicBlock", 1) if arch == "resnet18" else ("Bottleneck", 4)
    out = planes * expansion
    downsample = "None" if stem == out else f"nn.Sequential(nn.Conv2d({stem}, {out}, 1, bias=False), nn.BatchNorm2d({out}))"
    return [f"from {library}.models.resnet import {block}",
            f"model.bn1 = nn.BatchNorm2d({stem})",
            f"model.layer1[0] = {block}({stem}, {planes}, downsample={downsample})"]


def load_code(fmt: str) -> list[str]:
    """Python lines that load the export's weights into ``model`` strictly (run in the export's folder)."""
    if fmt == "torchvision":
        read = ["import torch", 'state = torch.load("model.pth", map_location="cpu", weights_only=True)']
    else:
        read = ["from safetensors.torch import load_file", 'state = load_file("model.safetensors")']
    return [*read, "model.load_state_dict(state, strict=True)", "model.eval()"]


def export_run(run: str | Path, fmt: str, out: str | Path, force: bool = False) -> Exported:
    """Export the backbone of the run (directory or checkpoint file) ``run`` as ``fmt`` into the new folder ``out``.

    ``force`` replaces an earlier export in ``out`` (and only that). InputError for an unknown
    format, an ``out`` that is taken, or a backbone the format's library cannot build.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}. Fix: use one of {', '.join(FORMATS)}")
    checkpoint = checkpoint_file(run)
    out = Path(out)
    earlier = _check_out(out, checkpoint, force)
    method, cfg = load_method(checkpoint)
    backbone = method.backbone.eval()
    libraries = _libraries(cfg.backbone, fmt)
    state = {key: value.detach().contiguous().clone() for key, value in backbone.state_dict().items()}
    builds = {lib: build_code(cfg.backbone, cfg.data.size, lib) for lib in libraries}
    for lines in builds.values():
        _check_build(lines, state, backbone, cfg.data.size)
    code = {lib: "\n".join(lines + load_code(fmt)) for lib, lines in builds.items()}
    epoch = read_checkpoint(checkpoint, mmap=True).get("epoch")
    config = {
        "exported_by": f"{MARK} {__version__}",
        "format": fmt,
        "weights": weights_file(fmt),
        "architecture": cfg.backbone.name,
        "backbone": cfg.backbone.model_dump(mode="json"),
        "num_features": _feature_dim(backbone, cfg.data.size),
        "input": {"size": cfg.data.size, "mean": list(cfg.augment.mean), "std": list(cfg.augment.std),
                  "preprocess": "RGB scaled to [0, 1], resized to size x size (bilinear, antialiased), "
                                "normalised with mean and std"},
        "code": code,
        "source": {"checkpoint": str(checkpoint.resolve()), "epoch": epoch},
        "run_config": cfg.model_dump(mode="json"),
    }
    files = [weights_file(fmt), CONFIG] + ([CARD] if fmt == "hf" else [])
    config["files"] = files
    card = model_card(cfg, config, eval_results(checkpoint)) if fmt == "hf" else None
    with _folder(out) as folder:
        write_bytes(folder / weights_file(fmt), _serialise(state, fmt))
        write_text(folder / CONFIG, json.dumps(config, indent=2) + "\n")
        if card is not None:
            write_text(folder / CARD, card)
        for stale in set(earlier) - set(files):
            (folder / stale).unlink(missing_ok=True)
    return Exported(out, files, config)


@contextmanager
def _folder(out: Path) -> Iterator[Path]:
    """The folder to write the export to: ``out`` when it exists (``--force``), else a hidden sibling renamed to
    ``out`` when the block succeeds (removed when it fails), so that ``out`` never holds half a new export."""
    if out.exists():
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _libraries(backbone: BackboneConfig, fmt: str) -> list[str]:
    if fmt in LIBRARIES:
        reason = unsupported(backbone, fmt)
        if reason:
            raise InputError(f"cannot export this backbone for {fmt}: {reason}. "
                             "Fix: use --format timm (or safetensors / hf, which describe the timm build)")
        return [fmt]
    return [lib for lib in LIBRARIES if unsupported(backbone, lib) is None]


def _check_out(out: Path, checkpoint: Path, force: bool) -> list[str]:
    """Refuse an ``out`` that is taken; the files of the earlier export ``force`` may replace."""
    run_dir = checkpoint.parent.resolve()
    if out.resolve() in (run_dir, *run_dir.parents, checkpoint.resolve()):
        raise InputError(f"{out} is the run's folder or holds it, and an export never writes over its input. "
                         "Fix: give a new folder for --out")
    if not out.exists():
        return []
    if not out.is_dir():
        raise InputError(f"{out} exists and is a file. Fix: give a new folder for --out")
    if not force:
        raise InputError(f"{out} exists. Fix: give a new folder for --out, or --force to replace the export in it")
    if not any(out.iterdir()):
        return []
    try:
        earlier = json.loads((out / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or not str(earlier.get("exported_by", "")).startswith(MARK):
        raise InputError(f"{out} holds files that are not a sempairs export, which --force never replaces. "
                         "Fix: give a new folder for --out")
    return [name for name in earlier.get("files", []) if isinstance(name, str) and Path(name).name == name]


def _check_build(lines: list[str], state: dict[str, torch.Tensor], backbone: nn.Module, size: int) -> None:
    """Run the build code, load ``state`` strictly and compare features with ``backbone`` (a bug if they differ)."""
    scope: dict = {}
    exec("\n".join(lines), scope)  # noqa: S102 - our own generated code, the code the user will run
    model = scope["model"]
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (model(x) - backbone(x)).abs().max().item()
    if not difference <= FEATURE_TOLERANCE:
        raise RuntimeError(f"the exported build code gives features {difference:.2e} away from the run's backbone")


@torch.no_grad()
def _feature_dim(backbone: nn.Module, size: int) -> int:
    return int(backbone(torch.zeros(1, 3, size, size)).shape[1])


def _serialise(state: dict[str, torch.Tensor], fmt: str) -> bytes:
    if fmt == "torchvision":
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()
    from safetensors.torch import save

    return save(state, metadata={"format": "pt", "exported_by": f"{MARK} {__version__}"})


def eval_results(checkpoint: Path) -> dict[str, dict]:
    """The evaluation results of ``checkpoint`` under ``<run>/eval/``, by file stem (``last.ckpt``: every file
    not named after another checkpoint; another checkpoint: ``<its stem>-*.json``)."""
    folder = checkpoint.parent / "eval"
    results = {}
    for file in sorted(folder.glob("*.json")):
        ours = (not re.match(r"epoch_\d+-", file.stem)) if checkpoint.name == LAST else file.stem.startswith(f"{checkpoint.stem}-")
        if ours:
            try:
                results[file.stem] = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"{file} is not valid JSON ({exc}). Fix: evaluate again, or move the file away") from None
    return results


def _numbers(result: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of ``result`` by key, those of nested mappings as ``outer.inner`` (``selection`` and ``settings``
    are shown apart)."""
    numbers = {}
    for key, value in result.items():
        if isinstance(value, dict) and not (prefix == "" and key in ("selection", "settings")):
            numbers.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[f"{prefix}{key}"] = value
    return numbers


def _mapping_line(mapping: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in mapping.items())


def model_card(cfg: RunConfig, config: dict, results: dict[str, dict]) -> str:
    """The Hugging Face model card (README.md) of an export: where the backbone came from, its results, how to load it."""
    library = "timm" if "timm" in config["code"] else "pytorch"
    dataset = cfg.data.dataset
    front = ["---", f"library_name: {library}", "pipeline_tag: image-feature-extraction",
             f"tags: [sempairs, self-supervised, {cfg.method.name}, {cfg.backbone.name}]"]
    if re.fullmatch(r"[a-z0-9_-]+", dataset):
        front.append(f"datasets: [{dataset}]")
    front.append("---")
    trained = f"{config['source']['epoch']} of {cfg.train.epochs}" if config["source"]["epoch"] is not None else str(cfg.train.epochs)
    method = cfg.method.model_dump(mode="json")
    lines = [
        *front, "",
        f"# {cfg.name}: {cfg.method.name} {cfg.backbone.name} pretrained with sempairs", "",
        f"A {cfg.backbone.name} backbone (no classifier; {config['num_features']}-d features) pretrained self-supervised "
        f"with {cfg.method.name} by sempairs on positive pairs from `{cfg.pairs.source}`.", "",
        "## Training", "",
        "| | |", "|---|---|",
        f"| method | {_mapping_line(method)} |",
        f"| pairs | {_mapping_line(cfg.pairs.model_dump(mode='json'))} |",
        f"| data | {_mapping_line(cfg.data.model_dump(mode='json', exclude={'root', 'download', 'memory'}))} |",
        f"| backbone | {_mapping_line(config['backbone'])} |",
        f"| epochs | {trained} (batch size {cfg.train.batch_size}, optimiser {cfg.optim.name}, lr {cfg.optim.lr}) |",
        f"| seeds | train.seed={cfg.train.seed}, pairs.seed={cfg.pairs.seed} |",
        f"| checkpoint | `{Path(config['source']['checkpoint']).name}` of run `{cfg.name}` |", "",
        "The whole run config is in `config.json` (`run_config`).", "",
        "## Evaluation", "",
    ]
    if not results:
        lines += ["No evaluation results were recorded for this checkpoint.", ""]
    for name, result in results.items():
        lines += [f"### {name}", ""]
        numbers = _numbers(result) if isinstance(result, dict) else {}
        lines += [f"- {key}: {json.dumps(value)}" for key, value in numbers.items()] or ["- (no numbers)"]
        for part in ("selection", "settings"):
            if isinstance(result, dict) and isinstance(result.get(part), dict):
                lines.append(f"- {part}: {_mapping_line(result[part])}")
        lines.append("")
    size, mean, std = config["input"]["size"], config["input"]["mean"], config["input"]["std"]
    lines += ["## Use", "",
              f"Input: RGB images scaled to [0, 1], resized to {size} x {size} px, normalised with mean {mean} and std {std}.",
              "In this folder, with only the library installed (no sempairs):", ""]
    for lib, code in config["code"].items():
        lines += [f"{lib}:", "", "```python", code, "```", ""]
    return "\n".join(lines)


def hub_api():
    """A ``huggingface_hub.HfApi`` (InputError naming the extra to install when the package is missing)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise InputError("--push-to-hub needs huggingface_hub. Fix: pip install 'sempairs[hub]'") from None
    return HfApi()


def push_to_hub(api, folder: str | Path, repo: str) -> str:
    """Upload the export ``folder`` with ``api`` (:func:`hub_api`) to the Hub repository ``repo`` (created if missing);
    its URL."""
    try:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=f"Upload {MARK}")
    except _hub_errors() as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"could not push {folder} to the Hub repository {repo} ({exc.__class__.__name__}: {reason}). "
                         "Fix: log in (hf auth login), check the repository name and the connection; "
                         "the export itself is complete") from None
    return f"https://huggingface.co/{repo}"


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The errors of an unreachable or refusing Hub: its HTTP errors and those of the HTTP client it uses."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for client in ("httpx2", "httpx"):  # huggingface_hub 1.x uses httpx, 2.x httpx2
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except ImportError:
            continue
    return tuple(errors)
