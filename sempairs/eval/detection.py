"""Object-detection transfer: Faster R-CNN R50-FPN initialised from a pretrained backbone, VOC data, COCO-style AP.

Model: torchvision's Faster R-CNN with a ResNet-FPN backbone, assembled the way
``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` assembles it
(``resnet_fpn_backbone`` + ``FasterRCNN``; for ResNet-50 the modules and parameter names are
identical, and ResNet-18 works the same way), with ``len(classes) + 1`` outputs (0 is
background). Its ResNet body (``conv1`` ...
``layer4``) is loaded from the backbone; the FPN and heads start from torchvision's random init,
and nothing is downloaded. All five stages are fine-tuned; BatchNorm is frozen to the
pretrained statistics (``norm="frozen"``, the usual choice for small detection batches) or
trained (``norm="batch"``). Images are normalised with the backbone's mean/std.

Small-image stems (3x3/1 ``conv1`` without max-pool, ``backbone.small_stem``): the detector
keeps torchvision's 7x7/2 stem + max-pool, so the pretrained ``conv1`` cannot be used. With
``stem="refuse"`` (default) this is an error; with ``stem="reinit"`` ``conv1`` and ``bn1`` keep
their fresh initialisation (random conv, identity BatchNorm) and every other layer is loaded.

Data: the VOC layout (``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
``ImageSets/Main/<set>.txt``) over a list of roots; the usual protocol trains on VOC2007+2012
``trainval`` and tests on VOC2007 ``test``. Boxes are converted to 0-based ``x1, y1, x2, y2``
(``xmin - 1, ymin - 1, xmax, ymax``, as Detectron2). Objects marked ``difficult`` are trained
on and, in evaluation, passed as ``iscrowd`` so matching them is neither rewarded nor penalised.

Metric: COCO-style box AP (mean over IoU 0.50:0.05:0.95), AP50 and AP75, in %, from
``torchmetrics.detection.MeanAveragePrecision(iou_type="bbox")`` (pycocotools backend).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision.models import resnet
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from sempairs.errors import InputError
from sempairs.trained.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedBackbone,
    check_state_dict,
)

RESNET_LAYOUTS = {"resnet18": (resnet.BasicBlock, [2, 2, 2, 2]), "resnet50": (resnet.Bottleneck, [3, 4, 6, 3])}


@dataclass
class VOCRecord:
    """One annotated image: 0-based ``x1, y1, x2, y2`` boxes, 1-based labels, difficult flags."""

    image: Path
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def _parse_annotation(xml_path: Path) -> list[tuple[str, list[float], bool]]:
    try:
        root = ET.parse(xml_path).getroot()
        objects = []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            coords = [float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            difficult = obj.find("difficult")
            objects.append((obj.find("name").text.strip(), coords, difficult is not None and difficult.text.strip() == "1"))
        return objects
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"{xml_path}: not a VOC annotation ({exc}). Fix: each <object> needs <name> and "
                         "<bndbox> with xmin, ymin, xmax, ymax") from None


class VOCDetection(torch.utils.data.Dataset):
    """The images of ``image_set`` over VOC-format ``roots``; items are (float image (3, H, W) in [0, 1], target).

    ``classes`` fixes the label order (pass the training set's to the test set); by default it
    is the sorted class names found (for VOC: the usual 20 classes in their usual order).
    """

    def __init__(self, roots: str | Path | Sequence[str | Path], image_set: str = "trainval",
                 classes: Sequence[str] | None = None):
        roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
        found = []
        for root in roots:
            listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"{listing} does not exist. Fix: give VOC roots holding Annotations/, "
                                        f"JPEGImages/ and ImageSets/Main/{image_set}.txt")
            for image_id in listing.read_text().split():
                found.append((root / "JPEGImages" / f"{image_id}.jpg",
                              _parse_annotation(root / "Annotations" / f"{image_id}.xml")))
        if not found:
            raise InputError(f"the {image_set} lists of {', '.join(map(str, roots))} are empty")
        self.classes = list(classes) if classes is not None else sorted({o[0] for _, objs in found for o in objs})
        index = {name: i + 1 for i, name in enumerate(self.classes)}
        self.records = []
        for image, objects in found:
            unknown = [name for name, _, _ in objects if name not in index]
            if unknown:
                raise InputError(f"{image}: class {unknown[0]!r} is not one of {self.classes}. "
                                 "Fix: give the same classes to the training and test sets")
            boxes = np.array([[x1 - 1, y1 - 1, x2, y2] for _, (x1, y1, x2, y2), _ in objects], np.float32).reshape(-1, 4)
            self.records.append(VOCRecord(image, boxes, np.array([index[o[0]] for o in objects], np.int64),
                                          np.array([o[2] for o in objects], bool)))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.records[i]
        try:
            with Image.open(record.image) as im:
                image = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float().div_(255)
        except OSError as exc:
            raise InputError(f"{record.image}: cannot read the image ({exc})") from None
        return image, {"boxes": torch.from_numpy(record.boxes), "labels": torch.from_numpy(record.labels),
                       "difficult": torch.from_numpy(record.difficult)}


def _resnet_arch(module: nn.Module) -> str:
    for name, (block, depths) in RESNET_LAYOUTS.items():
        layers = [getattr(module, f"layer{i}", None) for i in range(1, 5)]
        if all(isinstance(layer, nn.Sequential) for layer in layers) and [len(layer) for layer in layers] == depths \
                and isinstance(layers[0][0], block):
            return name
    raise InputError(f"detection needs a torchvision ResNet-18 or ResNet-50 backbone, got {type(module).__name__}. "
                     "Fix: evaluate a checkpoint pretrained with backbone.name=resnet50")


def build_detector(init: LoadedBackbone | nn.Module | None, num_classes: int, arch: str = "resnet50",
                   min_size: int = 800, max_size: int = 1333, norm: Literal["frozen", "batch"] = "frozen",
                   stem: Literal["refuse", "reinit"] = "refuse", **detector_options) -> FasterRCNN:
    """Faster R-CNN (ResNet-FPN) for ``num_classes`` object classes, its ResNet body loaded from ``init``.

    ``init`` is a loaded checkpoint, a bare ResNet backbone, or None (random init, the
    from-scratch baseline; ``arch`` then names the ResNet). See the module docstring for
    ``norm`` and ``stem``; ``detector_options`` are further ``FasterRCNN`` arguments.
    """
    module = init.module if isinstance(init, LoadedBackbone) else init
    where = str(init.path) if isinstance(init, LoadedBackbone) else "the given backbone"
    if module is not None:
        arch = _resnet_arch(module)
    mean, std = (init.mean, init.std) if isinstance(init, LoadedBackbone) else (IMAGENET_MEAN, IMAGENET_STD)
    body = resnet_fpn_backbone(backbone_name=arch, weights=None, trainable_layers=5,
                               norm_layer=FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d)
    model = FasterRCNN(body, num_classes=num_classes + 1, min_size=min_size, max_size=max_size,
                       image_mean=list(mean), image_std=list(std), **detector_options)
    if module is None:
        return model
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked") or norm == "batch"}
    target = model.backbone.body
    if state["conv1.weight"].shape != target.conv1.weight.shape:
        if stem == "refuse":
            raise InputError(f"{where} has a small-image stem (conv1 {tuple(state['conv1.weight'].shape)}, no max-pool) "
                             "but the detector uses the 7x7/2 stem. Fix: pass stem='reinit' (--reinit-stem) to train "
                             "a fresh stem and load every other layer, or pretrain with backbone.small_stem=false")
        state = {k: v for k, v in state.items() if not k.startswith(("conv1.", "bn1."))}
    expected = {k: v for k, v in target.state_dict().items() if k in state or not k.startswith(("conv1.", "bn1."))}
    check_state_dict(where, arch, expected, state)
    target.load_state_dict(state, strict=False)  # strict=False: a re-initialised stem is absent from state
    return model


def _collate(batch):
    return tuple(zip(*batch))


def _flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


def finetune_detector(model: FasterRCNN, dataset: VOCDetection, iterations: int, batch_size: int = 2,
                      lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 1e-4, seed: int = 0,
                      on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fine-tune ``model`` (on its device) for ``iterations`` SGD steps; returns the loss of each step.

    ``on_step(step, loss)`` is called after each step (progress display).
    ``lr`` is per 16 images (scaled linearly); linear warm-up over the first 10 % of the steps (at
    most 100), then x0.1 at 75 % and 92 % (Detectron2's VOC schedule, compressed). Images are
    drawn in seeded random order and flipped horizontally with probability 0.5.
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    base_lr = lr * batch_size / 16
    opt = torch.optim.SGD(params, lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    warmup = min(100, max(1, iterations // 10))
    model.train()
    losses, order = [], torch.empty(0, dtype=torch.long)
    for step in range(iterations):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(dataset), generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        images, targets = [], []
        for i in idx.tolist():
            image, target = dataset[i]
            if torch.rand((), generator=gen) < 0.5:
                image, target = _flip(image, target)
            images.append(image.to(device))
            targets.append({"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)})
        factor = min(1.0, (step + 1) / warmup) * 0.1 ** sum(step >= round(f * iterations) for f in (0.75, 0.92))
        for group in opt.param_groups:
            group["lr"] = base_lr * factor
        loss = sum(model(images, targets).values())
        if not math.isfinite(loss.item()):
            raise InputError(f"the detection loss became {loss.item()} at step {step + 1}: lower lr (now {lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, losses[-1])
    return losses


def detection_ap(predictions: Sequence[dict], targets: Sequence[dict]) -> dict[str, float]:
    """COCO-style box AP, AP50, AP75 (in %) of per-image ``predictions`` (boxes, scores, labels) against
    ``targets`` (boxes, labels, optional ``difficult`` flags: passed to COCO as ``iscrowd``)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type="bbox", box_format="xyxy")
    coco_targets = [{"boxes": t["boxes"].float().cpu(), "labels": t["labels"].long().cpu(),
                     "iscrowd": t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).long().cpu()}
                    for t in targets]
    coco_preds = [{k: p[k].cpu() for k in ("boxes", "scores", "labels")} for p in predictions]
    metric.update(coco_preds, coco_targets)
    result = metric.compute()
    return {"AP": 100.0 * result["map"].item(), "AP50": 100.0 * result["map_50"].item(),
            "AP75": 100.0 * result["map_75"].item()}


@torch.no_grad()
def evaluate_detector(model: FasterRCNN, dataset: VOCDetection, batch_size: int = 4) -> dict[str, float]:
    """AP, AP50, AP75 (%) of ``model`` on every image of ``dataset``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions, targets = [], []
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images, batch_targets = _collate(items)
            predictions += model([image.to(device) for image in images])
            targets += batch_targets
    finally:
        model.train(was_training)
    return detection_ap(predictions, targets)


def detection_evaluate(init: LoadedBackbone | nn.Module | None, train_roots, test_roots, train_set: str = "trainval",
                       test_set: str = "test", iterations: int = 1000, batch_size: int = 2, lr: float = 0.02,
                       min_size: int = 800, max_size: int = 1333, norm: Literal["frozen", "batch"] = "frozen",
                       stem: Literal["refuse", "reinit"] = "refuse", seed: int = 0,
                       device: str | torch.device = "cpu", detector_options: dict | None = None,
                       on_step: Callable[[int, float], None] | None = None) -> dict:
    """Fine-tune a detector initialised from ``init`` on ``train_roots``/``train_set`` and report AP on ``test_roots``/``test_set``.

    ``detector_options`` are further ``FasterRCNN`` arguments (e.g. fewer proposals for quick runs).
    """
    train = VOCDetection(train_roots, train_set)
    test = VOCDetection(test_roots, test_set, classes=train.classes)
    with torch.random.fork_rng():  # the seed drives the FPN and heads' init and the RPN/ROI sampling, not the caller's RNG
        torch.manual_seed(seed)
        model = build_detector(init, len(train.classes), min_size=min_size, max_size=max_size, norm=norm, stem=stem,
                               **(detector_options or {}))
        model.to(device)
        losses = finetune_detector(model, train, iterations, batch_size, lr, seed=seed, on_step=on_step)
    return {**evaluate_detector(model, test), "classes": train.classes, "train_images": len(train),
            "test_images": len(test), "iterations": iterations, "batch_size": batch_size, "lr": lr,
            "min_size": min_size, "max_size": max_size, "norm": norm, "stem": stem,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
