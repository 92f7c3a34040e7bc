"""Backbones and heads."""

from sempairs.models.backbones import BackboneConfig, build_backbone
from sempairs.models.heads import mlp

__all__ = ["BackboneConfig", "build_backbone", "mlp"]
