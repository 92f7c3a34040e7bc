"""Backbones that map images to a feature vector: torchvision ResNets (optional small-image stem)
and timm Vision Transformers (ViT-Tiny/ViT-Small with a configurable patch size).

ResNets: the classifier is replaced by an identity, so the feature is the pooled last stage
(512-d for ResNet-18, 2048-d for ResNet-50). ``small_stem`` swaps the 7x7/2 conv + 3x3/2 max-pool
for a 3x3/1 conv, the usual CIFAR adaptation (32-64 px images keep their resolution).

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

import torchvision
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

VIT_MODELS = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224"}


class BackboneConfig(BaseModel):
    """Which network to pretrain.

    ``small_stem`` (ResNets only) swaps the 7x7/2 conv + max-pool for a 3x3/1 conv (32-64 px).
    ``patch_size`` (ViTs only) is the side of the square patches; the image size must be a
    multiple of it.
    """

    model_config = ConfigDict(extra="forbid")
    name: Literal["resnet18", "resnet50", "vit_tiny", "vit_small"] = "resnet18"
    small_stem: bool = True
    patch_size: int = Field(8, gt=0)


def build_backbone(cfg: BackboneConfig, image_size: int = 32) -> tuple[nn.Module, int]:
    """The backbone without its classifier, and the dimension of its feature vector."""
    if cfg.name in VIT_MODELS:
        return _build_vit(cfg, image_size)
    net = getattr(torchvision.models, cfg.name)(weights=None)
    if cfg.small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def _build_vit(cfg: BackboneConfig, image_size: int) -> tuple[nn.Module, int]:
    if image_size % cfg.patch_size:
        raise ValueError(
            f"backbone {cfg.name}: the image size {image_size} is not a multiple of "
            f"backbone.patch_size={cfg.patch_size}"
        )
    import timm  # imported here: timm is slow to import and only the ViTs need it

    net = timm.create_model(
        VIT_MODELS[cfg.name], pretrained=False, img_size=image_size, patch_size=cfg.patch_size, num_classes=0,
        dynamic_img_size=True,
    )
    return net, net.num_features
