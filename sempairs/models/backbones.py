"""Backbones that map images to a feature vector: torchvision ResNets (optional small-image stem)
and timm Vision Transformers (ViT-Tiny/ViT-Small with a configurable patch size).

ResNets: the classifier is replaced by an identity, so the feature is the pooled last stage
(512-d for ResNet-18, 2048-d for ResNet-50). ``small_stem`` swaps the 7x7/2 conv + 3x3/2 max-pool
for a 3x3/1 conv, the usual CIFAR adaptation (32-64 px images keep their resolution). Built for
the CPU, their convolutions skip the kernel taps that only read padding on small maps
(``trimmed_conv``); for other devices they are torchvision's/timm's plain ``nn.Conv2d``.

ViTs: ``timm.create_model("vit_{tiny,small}_patch16_224", pretrained=False, img_size=image_size,
patch_size=patch_size, num_classes=0, dynamic_img_size=True)``: randomly initialised (no weights
are ever downloaded), the feature is the class token after the final norm (192-d for ViT-Tiny,
384-d for ViT-Small). ``dynamic_img_size`` lets other input sizes through (multi-crop local views)
by resampling the position embedding; at ``image_size`` it is used unchanged.
The study's ViT-S/8 at 64 px is ``name=vit_small, patch_size=8``; at 32 px patch 4 is common.
``small_stem`` does not apply to ViTs and is ignored; ``patch_size`` is ignored for ResNets.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from pydantic import Field
from torch import nn

from sempairs.errors import InputError
from sempairs.models.trimmed_conv import trim_padding_taps
from sempairs.strict import Strict

VIT_MODELS = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224"}


class BackboneConfig(Strict):
    """Which network to pretrain.

    ``small_stem`` (ResNets only) swaps the 7x7/2 conv + max-pool for a 3x3/1 conv (32-64 px).
    ``width`` (ResNets only) multiplies the channels of the four stages (64, 128, 256, 512 at 1):
    ResNet-18 at width 0.25 with the small stem costs about what the standard stem costs at full
    width on 32 px images (0.26 vs 0.22 GFLOP per training view) but keeps the images' resolution.
    ``stem_width`` (ResNets only): channels of the stem (None: 64 at every width, as torchvision and
    timm build it). At width 0.25 with the small stem, 64 channels at full resolution feeding a
    16-channel first stage take about a third of a CPU training step; ``stem_width: 16`` scales
    the stem with the stages.
    ``patch_size`` (ViTs only) is the side of the square patches; the image size must be a
    multiple of it.
    """

    name: Literal["resnet18", "resnet50", "vit_tiny", "vit_small"] = "resnet18"
    small_stem: bool = True
    width: float = Field(1.0, gt=0, le=4)
    stem_width: int | None = Field(None, gt=0)
    patch_size: int = Field(8, gt=0)


def build_backbone(cfg: BackboneConfig, image_size: int = 32, device: str | torch.device = "cpu") -> tuple[nn.Module, int]:
    """The backbone without its classifier, and the dimension of its feature vector, to run on ``device``
    (a ResNet for the CPU has trimmed convolutions; the parameters and their names are the same for every device)."""
    if cfg.name in VIT_MODELS:
        return _build_vit(cfg, image_size)
    net, dim = _resnet(cfg)
    if cfg.small_stem:
        net.conv1 = nn.Conv2d(3, cfg.stem_width or 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return (trim_padding_taps(net) if torch.device(device).type == "cpu" else net), dim


def _resnet(cfg: BackboneConfig) -> tuple[nn.Module, int]:
    """torchvision's ResNet at width 1 with the usual stem (its weights files load as they are), timm's ResNet
    with scaled stages or another stem width otherwise."""
    if cfg.width == 1 and cfg.stem_width in (None, 64):
        net = getattr(torchvision.models, cfg.name)(weights=None)
        return net, net.fc.in_features
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}[cfg.name]
    channels = tuple(max(8, round(c * cfg.width)) for c in (64, 128, 256, 512))
    net = ResNet(block, layers, channels=channels, num_classes=0)
    if cfg.stem_width not in (None, 64):
        _set_stem_width(net, block, channels[0], cfg.stem_width)
    return net, net.num_features


def _set_stem_width(net: nn.Module, block: type, planes: int, stem: int) -> None:
    """``net``'s stem with ``stem`` channels, and the first block of stage 1 taking them (timm's initialisation)."""
    net.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(stem)
    out = planes * block.expansion
    downsample = None if stem == out else nn.Sequential(nn.Conv2d(stem, out, 1, bias=False), nn.BatchNorm2d(out))
    first = block(stem, planes, downsample=downsample)
    for module in (net.conv1, *first.modules()):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    first.zero_init_last()
    net.layer1[0] = first


def _build_vit(cfg: BackboneConfig, image_size: int) -> tuple[nn.Module, int]:
    if image_size % cfg.patch_size:
        raise InputError(
            f"backbone {cfg.name}: the image size {image_size} is not a multiple of "
            f"backbone.patch_size={cfg.patch_size}"
        )
    import timm  # imported here: timm is slow to import and only the ViTs need it

    net = timm.create_model(
        VIT_MODELS[cfg.name], pretrained=False, img_size=image_size, patch_size=cfg.patch_size, num_classes=0,
        dynamic_img_size=True,
    )
    return net, net.num_features
