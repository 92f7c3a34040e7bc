"""Pretraining: the Fabric loop, optimisers and schedules, checkpoints."""

from sempairs.train.checkpoint import build_method, load_method
from sempairs.train.loop import TrainingStopped, TrainResult, train

__all__ = ["train", "TrainResult", "TrainingStopped", "build_method", "load_method"]
