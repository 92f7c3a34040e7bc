"""Linear probes on a frozen backbone.

:func:`linear_probe` (the default protocol) fits a multinomial logistic regression on frozen,
cached features: features are standardised with the statistics of the data it is fit on, the
loss is the mean cross-entropy plus ``l2 / 2 * ||W||^2`` (bias not penalised), minimised
full-batch with L-BFGS (strong Wolfe line search) on the features' device. The L2 strength is
chosen by :func:`select_l2`, which sees the *training split only*: it holds out a seeded,
stratified part of it (``val_fraction``, default 20 %), fits every value of the grid (8 values,
1e-6 ... 1, log-spaced) on the rest and keeps the best validation top-1 (ties: the stronger
regularisation). The probe is then refit on the whole training split with that value and
evaluated once on the test split.

:func:`linear_probe_augmented` is the slower classic protocol: SGD on random-resized-crop +
flip views of the training images pushed through the frozen backbone each epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sempairs.augment import AugmentConfig, BatchAugment
from sempairs.data.store import ImageStore
from sempairs.errors import InputError
from sempairs.trained.features import extract_features

L2_GRID = tuple(float(v) for v in np.logspace(-6, 0, 8))


def stratified_split(labels, fraction: float | None = None, per_class: int | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of row indices into (picked, rest), both sorted.

    Each class contributes ``per_class`` rows, or ``max(1, round(fraction * n_class))``, drawn
    from a permutation seeded by ``seed``; a class with fewer rows than asked is an error.
    """
    if (fraction is None) == (per_class is None):
        raise InputError("give exactly one of fraction and per_class")
    if fraction is not None and not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    if per_class is not None and per_class <= 0:
        raise InputError(f"per_class must be positive, got {per_class}")
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        k = per_class if per_class is not None else max(1, round(fraction * len(rows)))
        if k > len(rows):
            raise InputError(f"class {c} has {len(rows)} labelled images, fewer than the {k} asked for")
        picked.append(rows[:k])
    chosen = np.sort(np.concatenate(picked))
    return chosen, np.setdiff1d(np.arange(len(labels)), chosen)


class StandardisedLinear(nn.Module):
    """Scores ``((x - mean) / std) @ W.T + b``: a linear classifier with its input standardisation."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(len(mean), num_classes, device=mean.device)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.std)


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float,
                 max_iter: int = 300) -> StandardisedLinear:
    """Multinomial logistic regression with L2 strength ``l2``, fit full-batch by L-BFGS on ``features.device``."""
    x = features.float()
    y = labels.to(x.device)
    clf = StandardisedLinear(x.mean(0), x.std(0).clamp_min(1e-6), num_classes)
    xs = (x - clf.mean) / clf.std
    params = list(clf.linear.parameters())
    opt = torch.optim.LBFGS(params, lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-7,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf.linear(xs), y) + 0.5 * l2 * clf.linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return clf.requires_grad_(False)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (in %) of class ``scores`` (N, C); top-5 is top-C below 5 classes."""
    target = labels.to(scores.device)
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    return (100.0 * (top[:, 0] == target).float().mean().item(),
            100.0 * (top == target[:, None]).any(dim=1).float().mean().item())


def select_l2(train_features: torch.Tensor, train_labels: torch.Tensor, num_classes: int,
              grid: Sequence[float] = L2_GRID, val_fraction: float = 0.2, seed: int = 0,
              max_iter: int = 300) -> tuple[float, list[dict]]:
    """The L2 strength of ``grid`` with the best top-1 on a held-out stratified part of the *training* data.

    Returns the chosen value and the validation curve ``[{"l2", "val_top1"}, ...]``.
    """
    if not 0 < val_fraction <= 0.5:
        raise InputError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
    counts = torch.bincount(train_labels.cpu(), minlength=num_classes)
    if counts[counts > 0].min() < 2:
        raise InputError("some class has a single training image, so no validation part can be held out. "
                         "Fix: give a fixed l2 (skips the selection)")
    val, fit = stratified_split(train_labels, fraction=val_fraction, seed=seed)
    val_t, fit_t = torch.from_numpy(val).to(train_features.device), torch.from_numpy(fit).to(train_features.device)
    curve = []
    for l2 in sorted(grid, reverse=True):
        clf = fit_logistic(train_features[fit_t], train_labels[fit_t.cpu()], num_classes, l2, max_iter)
        curve.append({"l2": l2, "val_top1": topk_accuracy(clf(train_features[val_t]), train_labels[val_t.cpu()])[0]})
    best = max(curve, key=lambda point: point["val_top1"])  # first maximum: the strongest regularisation
    return best["l2"], sorted(curve, key=lambda point: point["l2"])


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, l2: float | None = None,
                 grid: Sequence[float] = L2_GRID, val_fraction: float = 0.2, seed: int = 0,
                 max_iter: int = 300) -> dict:
    """Logistic-regression probe: L2 chosen on the training split (unless ``l2`` is given), refit, test top-1/top-5 (%)."""
    train_labels, test_labels = train_labels.long().cpu(), test_labels.long().cpu()
    curve = None
    if l2 is None:
        l2, curve = select_l2(train_features, train_labels, num_classes, grid, val_fraction, seed, max_iter)
    clf = fit_logistic(train_features, train_labels, num_classes, l2, max_iter)
    top1, top5 = topk_accuracy(clf(test_features.to(train_features.device)), test_labels)
    return {"linear_top1": top1, "linear_top5": top5, "linear_l2": l2, "linear_val_curve": curve,
            "val_fraction": val_fraction if curve else None, "seed": seed,
            "train_images": len(train_labels), "test_images": len(test_labels)}


def flip_crop_config(size: int, mean, std, crop_scale: tuple[float, float] = (0.08, 1.0)) -> AugmentConfig:
    """Random-resized-crop + horizontal flip only (no colour, blur or solarize): the linear-probe views."""
    return AugmentConfig(size=size, crop_scale=crop_scale, jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0,
                         mean=tuple(mean), std=tuple(std))


def linear_probe_augmented(backbone: nn.Module, train: ImageStore, test: ImageStore, size: int, mean, std,
                           epochs: int = 100, batch_size: int = 256, lr: float = 0.1, momentum: float = 0.9,
                           weight_decay: float = 0.0, seed: int = 0,
                           crop_scale: tuple[float, float] = (0.08, 1.0)) -> dict:
    """SGD probe on flip+crop views through the frozen ``backbone``; test on the deterministic view.

    The head is ``BatchNorm1d(affine=False)`` + ``Linear`` (BN standardises the features, as the
    closed-form probe does); ``lr`` is per 256 images, with a cosine schedule over all steps.
    No hyper-parameter is selected, so the test split is only used for the final accuracy.
    """
    device = next(backbone.parameters()).device
    for store in (train, test):
        if store.labels is None:
            raise InputError(f"{store.source} ({store.split}) has no labels: a linear probe needs labelled splits")
    images = train.tensor(device)
    labels = torch.from_numpy(train.labels).to(device)
    augment = BatchAugment(flip_crop_config(size, mean, std, crop_scale))
    gen = torch.Generator(device=device).manual_seed(seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad(), autocast:
        dim = backbone(augment(images[:2], gen)).shape[1]
    head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, train.num_classes)).to(device)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    opt = torch.optim.SGD(head.parameters(), lr=lr * batch_size / 256, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    try:
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=gen, device=device)
            for idx in order.split(batch_size):
                if len(idx) < 2:  # BatchNorm needs two samples; a last batch of one is skipped
                    continue
                with torch.no_grad(), autocast:
                    feats = backbone(augment(images[idx], gen)).float()
                loss = F.cross_entropy(head(feats), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
        head.eval()
        with torch.no_grad():
            scores = head(extract_features(backbone, test.tensor(device), size, mean, std, batch_size))
    finally:
        backbone.train(was_training)
    top1, top5 = topk_accuracy(scores, torch.from_numpy(test.labels))
    return {"linear_aug_top1": top1, "linear_aug_top5": top5, "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "weight_decay": weight_decay, "seed": seed, "train_images": len(train), "test_images": len(test)}
