"""Pretraining: the Fabric loop, optimisers and schedules, run folders."""

from sempairs.train.loop import TrainingStopped, TrainResult, train

__all__ = ["train", "TrainResult", "TrainingStopped"]
