"""Pretraining on Lightning Fabric: CPU, one GPU, DDP or multi-node (torchrun/SLURM), resumable.

Each epoch shuffles the pairs with a generator seeded by (seed, epoch); each optimiser step
takes a global batch of pairs, gathers the two members' uint8 images by index (on the device, from
pinned host memory, or read ahead from a memory-mapped store by DataLoader workers: see
``sempairs.train.batches``), augments each member with the batched augmentation (its generator
seeded by (seed, epoch, rank); with ``augment.local_crops`` also the multi-crop local views), and
minimises the method's loss. Because every random choice is derived from the seed and the
epoch, a run resumed from the checkpoint written at the end of an epoch continues exactly as the
uninterrupted run would have.

A run directory holds ``config.yaml``, ``pairs.csv``, ``last.ckpt`` (+ ``epoch_NNNN.ckpt`` every
``train.checkpoint_every`` epochs), ``history.csv`` (the metrics of every epoch, rewritten from
the checkpoint after each epoch, so complete across resumes), ``knn.yaml``, and the step-level
logs of Lightning's CSV (and TensorBoard) loggers: ``logs/metrics.csv`` for the first attempt,
``logs/resume-N/metrics.csv`` for the N-th resume (steps after the last checkpoint of a killed
attempt appear again in the next one).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger

from sempairs.config import RunConfig
from sempairs.csvio import write_rows
from sempairs.eval.protocol import knn_evaluate
from sempairs.methods import StepOutput
from sempairs.train.batches import PairBatches
from sempairs.train.checkpoint import LAST, build_method, epoch_checkpoint
from sempairs.train.data import load_run_data
from sempairs.train.optim import build_optimizer, lr_at, set_lr
from sempairs.train.progress import TrainProgress

# Keys that may change between a run and its resumption without changing what is computed.
HISTORY = "history.csv"
RESUMABLE_CHANGES = ("train.epochs", "train.checkpoint_every", "train.log_every", "train.loader_workers", "data.memory",
                     "knn.")


class TrainingStopped(RuntimeError):
    """The run was stopped because it cannot produce a useful representation (NaN, collapse)."""


@dataclass
class TrainResult:
    """What a finished run reports: where it lives, per-epoch metrics and the final kNN accuracy."""

    run_dir: Path
    pairs: int
    history: list[dict] = field(default_factory=list)
    knn: dict | None = None


def uses_cuda(cfg: RunConfig) -> bool:
    """Whether the run's accelerator setting lands on a CUDA device on this machine."""
    return cfg.train.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()


def resolve_precision(cfg: RunConfig) -> str:
    """``auto`` means bf16 mixed precision on CUDA and full float32 elsewhere."""
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "bf16-mixed" if uses_cuda(cfg) else "32-true"


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_same_run(saved: dict, cfg: RunConfig, path: Path) -> None:
    # keys added since the run was saved take their defaults in both, so they are no difference
    old, new = _flat(RunConfig.model_validate(saved).model_dump(mode="json")), _flat(cfg.model_dump(mode="json"))
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)]
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume {path}: the config differs in {detail}; use the run's own config.yaml or a new run name")


def embedding_spread(z: torch.Tensor) -> float:
    """Std of L2-normalised embeddings over the batch, averaged over dims, times sqrt(dim).

    About 1 for embeddings spread over the sphere, 0 for a collapsed representation.
    """
    z = F.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def _stop_if_broken(loss: float, spread: float, epoch: int, cfg: RunConfig, run_dir: Path) -> None:
    last = run_dir / LAST
    resume_hint = f" The last good checkpoint is {last}." if last.exists() else ""
    if not math.isfinite(loss):
        raise TrainingStopped(
            f"the loss became {loss} in epoch {epoch + 1}: lower optim.lr (now {cfg.optim.lr}) or "
            f"use train.precision=32-true.{resume_hint}"
        )
    if spread < cfg.train.collapse_std:
        raise TrainingStopped(
            f"the representation collapsed in epoch {epoch + 1} (embedding spread {spread:.4f} < "
            f"train.collapse_std={cfg.train.collapse_std}): lower optim.lr, raise the temperature, or "
            f"check that the pairs are not all identical.{resume_hint}"
        )


def _log_version(run_dir: Path, resuming: bool) -> str:
    """``""`` (``logs/``) for a fresh run, else the first free ``resume-N``: earlier logs are never overwritten."""
    if not resuming:
        return ""
    n = 1
    while (run_dir / "logs" / f"resume-{n}").exists():
        n += 1
    return f"resume-{n}"


def _make_fabric(cfg: RunConfig, run_dir: Path, resuming: bool) -> Fabric:
    version = _log_version(run_dir, resuming)
    loggers = [CSVLogger(root_dir=str(run_dir), name="logs", version=version)]
    try:
        from lightning.fabric.loggers import TensorBoardLogger

        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=version))
    except ImportError:
        pass
    return Fabric(
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy, precision=resolve_precision(cfg), loggers=loggers,
    )


def setup_model(fabric: Fabric, cfg: RunConfig):
    """The method (plain), the method and optimiser as set up by Fabric (device, precision, DDP)."""
    method = build_method(cfg).to(fabric.device)
    if cfg.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        method.backbone.compile()
    optimizer = build_optimizer(method, cfg.optim, cfg.train.batch_size, fused=fabric.device.type == "cuda")
    model, optimizer = fabric.setup(method, optimizer)
    return method, model, optimizer


def optimizer_step(fabric: Fabric, model, optimizer, *views: torch.Tensor) -> StepOutput:
    """One step: the method's loss on the views (two global, then any local ones), backward, update."""
    out = model(*views)
    fabric.backward(out.loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out


def train(
    cfg: RunConfig,
    resume: bool = False,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    progress: bool = True,
) -> TrainResult:
    """Pretrain as ``cfg`` says; with ``resume`` continue from the run directory's last checkpoint.

    ``callbacks`` are called as ``cb(epoch, metrics)`` after each epoch's checkpoint is written.
    """
    run_dir = cfg.run_dir
    last = run_dir / LAST
    if last.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a checkpoint: pass --resume to continue it, or choose another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    fabric = _make_fabric(cfg, run_dir, resuming=resume and last.exists())
    fabric.launch()
    fabric.seed_everything(cfg.train.seed, verbose=False)

    with fabric.rank_zero_first():
        data = load_run_data(cfg)
    if fabric.global_rank == 0:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        data.pairs.save(run_dir / "pairs.csv", ids=data.train.ids, class_names=data.train.class_names)

    world = fabric.world_size
    batch = cfg.train.batch_size
    if batch % world:
        raise ValueError(f"train.batch_size={batch} must be divisible by the {world} processes")
    steps_per_epoch = len(data.pairs) // batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.pairs)} pairs are fewer than one batch (train.batch_size={batch}): lower the batch size")
    total_steps = steps_per_epoch * cfg.train.epochs
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch)

    method, model, optimizer = setup_model(fabric, cfg)
    peak_lr = optimizer.param_groups[0]["lr"]
    batches = PairBatches(data.train.images, data.pairs, cfg.augment, fabric.device, on_device=cfg.train.data_on_device,
                          channels_last=cfg.train.channels_last, loader_workers=cfg.train.workers)

    start_epoch, history = 0, []
    if resume and last.exists():
        state = {"model": model, "optimizer": optimizer}
        rest = fabric.load(last, state)
        _check_same_run(rest["config"], cfg, last)
        start_epoch, history = rest["epoch"], rest["history"]
        fabric.print(f"resuming {run_dir} after epoch {start_epoch}")

    bar = TrainProgress(cfg.train.epochs, steps_per_epoch, start_epoch, enabled=progress and fabric.is_global_zero)
    with bar:
        for epoch in range(start_epoch, cfg.train.epochs):
            order = torch.randperm(len(data.pairs), generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch))
            order = order[: steps_per_epoch * batch].view(steps_per_epoch, batch)[:, fabric.global_rank :: world].to(fabric.device)
            gen = torch.Generator(device=fabric.device).manual_seed(cfg.train.seed * 1_000_003 + epoch * 1009 + fabric.global_rank)
            model.train()
            loss_sum = torch.zeros((), device=fabric.device)
            spread, loss_now = float("nan"), float("nan")
            started = time.perf_counter()
            for i, views in enumerate(batches.epoch(order, gen)):
                step = epoch * steps_per_epoch + i
                lr = lr_at(step, total_steps, warmup_steps, peak_lr, cfg.optim.min_lr * batch / 256)
                set_lr(optimizer, lr)
                out = optimizer_step(fabric, model, optimizer, *views)
                method.after_step(step, total_steps)
                loss_sum += out.loss.detach()
                if i % cfg.train.log_every == 0 or i == steps_per_epoch - 1:
                    loss_now, spread = out.loss.item(), embedding_spread(out.embedding)
                    _stop_if_broken(loss_now, spread, epoch, cfg, run_dir)
                    fabric.log_dict({"loss": loss_now, "lr": lr, "embedding_spread": spread}, step=step)
                bar.step(epoch, loss_now, lr)
            seconds = time.perf_counter() - started
            metrics = {
                "epoch": epoch + 1,
                "loss": fabric.all_reduce(loss_sum, reduce_op="mean").item() / steps_per_epoch,
                "lr": lr,
                "embedding_spread": spread,
                "images_per_s": steps_per_epoch * batch / seconds,
                "seconds": seconds,
            }
            if cfg.knn.every and (epoch + 1) % cfg.knn.every == 0 and epoch + 1 < cfg.train.epochs:
                metrics.update(_knn(fabric, method, data, cfg))
            history.append(metrics)
            fabric.log_dict({f"epoch/{k}": v for k, v in metrics.items()}, step=step)
            _save(fabric, run_dir, {"model": model, "optimizer": optimizer, "epoch": epoch + 1, "step": step + 1,
                                    "config": cfg.model_dump(mode="json"), "history": history},
                  keep=(epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == cfg.train.epochs)
            if fabric.is_global_zero:
                write_rows(run_dir / HISTORY, history)
            for logger in fabric.loggers:
                logger.save()
            bar.epoch_done(metrics)
            for callback in callbacks:
                callback(epoch, metrics)

    knn = _knn(fabric, method, data, cfg) if data.test is not None else None
    if knn and fabric.is_global_zero:
        (run_dir / "knn.yaml").write_text(yaml.safe_dump(knn))
    for logger in fabric.loggers:
        logger.finalize("success")
    return TrainResult(run_dir=run_dir, pairs=len(data.pairs), history=history, knn=knn)


def _save(fabric: Fabric, run_dir: Path, state: dict, keep: bool) -> None:
    """Write ``last.ckpt`` atomically (a killed run never leaves half a file); keep a copy if asked."""
    tmp = run_dir / (LAST + ".tmp")
    fabric.save(tmp, state)
    if fabric.is_global_zero:
        os.replace(tmp, run_dir / LAST)
        if keep:
            target = epoch_checkpoint(run_dir, state["epoch"])
            shutil.copyfile(run_dir / LAST, target)
    fabric.barrier()


def _knn(fabric: Fabric, method, data, cfg: RunConfig) -> dict:
    """kNN accuracy of the current backbone (computed on rank 0, shared with all ranks)."""
    result = {}
    if fabric.is_global_zero and data.test is not None:
        result = knn_evaluate(method.backbone, data.train, data.test, cfg.data.size, cfg.augment.mean, cfg.augment.std,
                              k=cfg.knn.k, temperature=cfg.knn.temperature, batch_size=cfg.knn.batch_size,
                              channels_last=cfg.train.channels_last)
    fabric.barrier()
    return fabric.broadcast(result)
