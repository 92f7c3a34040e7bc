"""Batched augmentation with per-sample random parameters (see ``pipeline``)."""

from sempairs.augment.pipeline import PRESETS, AugmentConfig, BatchAugment, eval_transform, preset

__all__ = ["AugmentConfig", "BatchAugment", "PRESETS", "eval_transform", "preset"]
