"""The online linear probe (``train.online_probe``): a watch on the representation while it trains.

As solo-learn's online classifier (``solo/methods/base.py``: a linear layer on the detached
backbone features of the first view, cross-entropy on the training labels, SGD with lr 0.1,
momentum 0.9 and no weight decay), with MAE's normalisation of the features before it (a
BatchNorm without affine parameters, He et al. 2022, linear probing: the features' scale changes
as the backbone trains, and unnormalised features drive a fixed-lr SGD probe to diverge). It has
its own optimiser at that constant lr, outside the pretraining optimiser, and is created under a
forked random state, so the pretraining computes exactly what it computes without it (tested bit
for bit). At the end of each epoch its top-1 (%) on
the labelled test split is ``online_linear_top1`` (and its mean training loss ``online_linear_loss``).
Under DDP its gradients, and its BatchNorm statistics before each test, are averaged over the
processes, so every process holds the same probe.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.fabric import Fabric

from sempairs.data.store import ImageStore
from sempairs.trained.features import extract_features

LR, MOMENTUM = 0.1, 0.9  # solo-learn's classifier_lr and SGD momentum; no weight decay


class OnlineProbe:
    """A linear classifier on detached features with its own SGD optimiser; ``state`` goes into the checkpoint."""

    def __init__(self, fabric: Fabric, feat_dim: int, num_classes: int, seed: int):
        with torch.random.fork_rng(devices=[]):  # its initialisation draws nothing from the pretraining's random state
            torch.manual_seed(seed)
            classifier = nn.Sequential(nn.BatchNorm1d(feat_dim, affine=False), nn.Linear(feat_dim, num_classes))
        self.fabric = fabric
        self.classifier = classifier.to(fabric.device)
        self.optimizer = torch.optim.SGD(self.classifier.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=0.0)
        self.loss_sum = torch.zeros((), device=fabric.device)
        self.steps = 0

    @property
    def state(self) -> dict:
        """The objects a checkpoint saves and a resume loads in place."""
        return {"probe": self.classifier, "probe_optimizer": self.optimizer}

    def step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """One SGD step of cross-entropy on ``features`` (detached, float32) and their class ``labels``."""
        loss = F.cross_entropy(self.classifier(features.detach().float()), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.fabric.world_size > 1:
            for p in self.classifier.parameters():
                p.grad = self.fabric.all_reduce(p.grad, reduce_op="mean")
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.steps += 1

    def end_epoch(self, backbone: nn.Module, test: ImageStore, size: int, mean, std, batch_size: int,
                  channels_last: bool) -> dict:
        """The epoch's ``online_linear_loss`` (mean over its steps and the processes) and test ``online_linear_top1`` (%)."""
        loss = self.fabric.all_reduce(self.loss_sum, reduce_op="mean").item() / max(self.steps, 1)
        self.loss_sum.zero_()
        self.steps = 0
        if self.fabric.world_size > 1:
            for buffer in self.classifier[0].buffers():
                buffer.copy_(self.fabric.all_reduce(buffer.double(), reduce_op="mean").to(buffer.dtype))
        feats = extract_features(backbone, test.tensor(self.fabric.device), size, mean, std, batch_size, channels_last)
        self.classifier.eval()
        with torch.no_grad():
            predicted = self.classifier(feats).argmax(dim=1).cpu()
        self.classifier.train()
        top1 = 100 * int((predicted == torch.from_numpy(test.labels).long()).sum()) / len(test)
        return {"online_linear_top1": top1, "online_linear_loss": loss}
