"""Pretraining on Lightning Fabric: CPU, one GPU, DDP or multi-node (torchrun/SLURM), resumable.

Each epoch shuffles the pairs with a generator seeded by (seed, epoch); each optimiser step
takes a global batch of pairs, gathers the two members' uint8 images by index (on the device, from
pinned host memory, or read ahead from a memory-mapped store by DataLoader workers: see
``sempairs.train.batches``), augments each member with the batched augmentation (its generator
seeded by (seed, epoch, rank); with ``augment.local_crops`` also the multi-crop local views), and
minimises the method's loss. Because every random choice is derived from the seed and the
epoch, a run resumed from the checkpoint written at the end of an epoch continues exactly as the
uninterrupted run would have. A run preempted mid-epoch (SIGUSR1/SIGTERM, ``sempairs.train.preemption``)
writes a checkpoint whose ``position`` also holds the steps done in the epoch, each process's
augmentation generator state and its partial sums of the epoch's metrics; the resumed run skips
those steps of the epoch's pair order and continues exactly as well.

A run directory holds ``config.yaml``, ``pairs.csv``, ``last.ckpt`` (+ ``epoch_NNNN.ckpt`` every
``train.checkpoint_every`` epochs), ``history.csv`` (the metrics of every epoch, rewritten from
the checkpoint after each epoch, so complete across resumes), ``eval/knn-<key>.json`` (the final kNN
on the run's own selection and ``knn`` settings, see ``sempairs.eval.results``), and what the
loggers of ``train.loggers`` write (``sempairs.train.trackers``): Lightning's CSV logs,
``logs/metrics.csv`` for the first attempt, ``logs/resume-N/metrics.csv`` for the N-th resume
(steps after the last checkpoint of a killed attempt appear again in the next one), TensorBoard's,
and the W&B and MLflow runs (``trackers.json``), which a resume continues.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric

from sempairs.atomic import snapshot_file
from sempairs.config import ConfigError, RunConfig
from sempairs.csvio import write_rows
from sempairs.errors import SempairsError
from sempairs.eval.protocol import PROTOCOL, Selection, knn_evaluate, result_columns
from sempairs.eval.results import result_path, write_result
from sempairs.methods import Method, StepOutput
from sempairs.precision import cpu_computes_bf16
from sempairs.runlock import run_lock
from sempairs.train.batches import PairBatches
from sempairs.trained.checkpoint import LAST, SafeCheckpointIO, epoch_checkpoint
from sempairs.trained.loading import build_method
from sempairs.train.data import RunData, load_run_data
from sempairs.train.distributed import agree, convert_sync_batchnorm, end_launched_processes
from sempairs.train.optim import Schedule, build_optimizer, clip_gradients
from sempairs.train.preemption import Preempted, PreemptionSignals
from sempairs.train.probe import OnlineProbe
from sempairs.train.progress import TrainProgress
from sempairs.train.rundir import RunExists, check_resume, check_same_pairs, write_records
from sempairs.train.trackers import close_trackers, make_loggers, start_trackers

HISTORY = "history.csv"
LEARNED_TOLERANCE = 0.01  # a run whose last-epoch loss is not this share below its first-step loss learned nothing


class TrainingStopped(SempairsError, RuntimeError):
    """The run was stopped because it cannot produce a useful representation (NaN, collapse).

    The decision is taken on values averaged over all processes, so every process raises it at
    the same step with the same message; ``rank`` is the raising process's, and only process 0
    needs to report it.
    """

    def __init__(self, message: str, rank: int = 0):
        super().__init__(message)
        self.rank = rank


@dataclass
class TrainResult:
    """What a finished run reports: where it lives, per-epoch metrics and the final kNN accuracy."""

    run_dir: Path
    pairs: int
    history: list[dict] = field(default_factory=list)
    knn: dict | None = None
    rank: int = 0  # the global rank of the process that returns it: process 0 reports for all


def uses_cuda(cfg: RunConfig) -> bool:
    """Whether the run's accelerator setting lands on a CUDA device on this machine."""
    return cfg.train.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()


def resolve_precision(cfg: RunConfig) -> str:
    """``auto``: bf16 mixed precision where the device computes bf16 natively, else the fastest safe choice.

    On CUDA: bf16 on GPUs that support it (Ampere and later), fp16 with loss scaling on older ones.
    On the CPU: bf16 with AVX-512 BF16 or AMX, float32 elsewhere (emulated bf16 matrix products
    are hundreds of times slower). ``python -m bench.cpu_speed`` measures both on a machine.
    (oneDNN's bf16 backward of a 3x3 convolution on a 1x1 map is not deterministic; the ResNets'
    trimmed convolutions, ``sempairs.models.trimmed_conv``, never run that case.)
    """
    if cfg.train.precision != "auto":
        return cfg.train.precision
    if uses_cuda(cfg):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cfg.train.accelerator in ("auto", "cpu") and cpu_computes_bf16() else "32-true"


def embedding_spread(z: torch.Tensor) -> float:
    """Std of L2-normalised embeddings over the batch, averaged over dims, times sqrt(dim).

    About 1 for embeddings spread over the sphere, 0 for a collapsed representation.
    """
    z = F.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def _stop_if_broken(loss: float, spread: float, epoch: int, cfg: RunConfig, run_dir: Path, rank: int = 0) -> None:
    """Stop on a non-finite loss or a collapsed embedding (values already agreed by all processes)."""
    last = run_dir / LAST
    resume_hint = f" The last good checkpoint is {last}." if last.exists() else ""
    if not math.isfinite(loss):
        raise TrainingStopped(
            f"the loss became {loss} in epoch {epoch + 1}: lower optim.lr (now {cfg.optim.lr}) or "
            f"use train.precision=32-true.{resume_hint}", rank
        )
    if spread < cfg.train.collapse_std:
        raise TrainingStopped(
            f"the representation collapsed in epoch {epoch + 1} (embedding spread {spread:.4f} < "
            f"train.collapse_std={cfg.train.collapse_std}): lower optim.lr, raise the temperature, or "
            f"check that the pairs are not all identical.{resume_hint}", rank
        )


def _log_version(run_dir: Path, resuming: bool) -> str:
    """``""`` (``logs/``) for a fresh run, else the first free ``resume-N``: earlier logs are never overwritten."""
    if not resuming:
        return ""
    n = 1
    while any((run_dir / folder / f"resume-{n}").exists() for folder in ("logs", "tensorboard")):
        n += 1
    return f"resume-{n}"


def _make_fabric(cfg: RunConfig, run_dir: Path, resuming: bool) -> Fabric:
    loggers = make_loggers(cfg, run_dir, _log_version(run_dir, resuming))
    try:
        return Fabric(
            accelerator=cfg.train.accelerator, devices=cfg.train.devices, num_nodes=cfg.train.num_nodes,
            strategy=cfg.train.strategy, precision=resolve_precision(cfg), loggers=loggers, plugins=[SafeCheckpointIO()],
        )
    except (ValueError, RuntimeError, TypeError) as exc:  # Lightning's answer to settings it cannot use
        keys = ("accelerator", "devices", "num_nodes", "strategy", "precision")
        settings = ", ".join(f"train.{k}={getattr(cfg.train, k)!r}" for k in keys)
        raise ConfigError(f"{settings}: {' '.join(str(exc).split())} Fix: correct these keys (e.g. train.accelerator=cpu "
                          "train.devices=1)") from None


def setup_model(fabric: Fabric, cfg: RunConfig):
    """The method (plain), the method and optimiser as set up by Fabric (device, precision, DDP).

    With ``train.sync_batchnorm`` (None: when there is more than one process) every BatchNorm
    layer computes its statistics over the global batch.
    """
    method = build_method(cfg, fabric.device)
    sync = cfg.train.sync_batchnorm if cfg.train.sync_batchnorm is not None else fabric.world_size > 1
    if sync:
        method = convert_sync_batchnorm(method, fabric.device)
    method = method.to(fabric.device)
    if cfg.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        method.backbone.compile()
    optimizer = build_optimizer(method, cfg.optim, cfg.train.batch_size, fused=fabric.device.type == "cuda")
    model, optimizer = fabric.setup(method, optimizer)
    return method, model, optimizer


def optimizer_step(fabric: Fabric, model, optimizer, *views: torch.Tensor, epoch: int = 0, clip_grad: float = 0.0,
                   labels: torch.Tensor | None = None) -> StepOutput:
    """One step: the method's loss on the views (two global, then any local ones), backward, update.

    ``labels``: the class of each global view, for label-aware variants (``Method.uses_labels``).

    Between backward and update: the method's ``before_update(epoch)`` (DINO's frozen prototypes),
    then with ``clip_grad`` > 0 each parameter's gradient norm capped (``optim.clip_grad``).
    """
    out = model(*views, labels=labels)
    fabric.backward(out.loss)
    model.module.before_update(epoch)
    if clip_grad:
        clip_gradients(model.parameters(), clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out


def train(
    cfg: RunConfig,
    resume: bool | str | None = None,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    progress: bool = True,
) -> TrainResult:
    """Pretrain as ``cfg`` says; with ``resume`` (True or ``"auto"``; None: ``train.resume``) continue from the
    run directory's last checkpoint when it has one, else start.

    ``callbacks`` are called as ``cb(epoch, metrics)`` after each epoch's checkpoint is written.
    With several processes every one of them calls ``train`` (Lightning's launcher, torchrun or
    srun start them); an error in one ends them all (see ``sempairs.train.distributed``).
    SIGUSR1 or SIGTERM make every process stop after the same step, with one checkpoint of where
    it was, and raise :class:`Preempted` (see ``sempairs.train.preemption``).
    """
    run_dir = cfg.run_dir
    last = run_dir / LAST
    resume = bool(cfg.train.resume if resume is None else resume) and last.exists()
    if last.exists() and not resume:
        raise RunExists(f"{run_dir} already holds a checkpoint: pass --resume to continue it, or choose another name")
    if resume:
        check_resume(cfg)  # before anything is written
    fabric = _make_fabric(cfg, run_dir, resuming=resume)
    if cfg.train.batch_size % fabric.world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} must be divisible by the {fabric.world_size} processes")
    run_dir.mkdir(parents=True, exist_ok=True)
    with PreemptionSignals() as signals:
        fabric.launch()
        try:
            with run_lock(run_dir, take=fabric.is_global_zero, agree=fabric.broadcast):
                return _train(fabric, cfg, resume, callbacks, progress, signals)
        except TrainingStopped:
            raise  # every process stops at the same step: none is left waiting
        except Preempted:
            end_launched_processes(fabric, grace_s=60.0)  # they stop too; their status is no failure to watch for
            raise
        except BaseException:
            failed = end_launched_processes(fabric)  # they would wait for this process in their next collective
            if failed:  # a launched process failed first and reported its error: this one's is only its echo
                raise SystemExit(failed if failed > 0 else 1) from None
            raise


@dataclass
class _Run:
    """What the steps of a run share: its setup, and the history that grows epoch by epoch."""

    fabric: Fabric
    cfg: RunConfig
    data: RunData
    method: Method
    model: Any  # the method as Fabric wraps it
    optimizer: Any
    schedule: Schedule
    batches: PairBatches
    steps_per_epoch: int
    signals: PreemptionSignals
    probe: OnlineProbe | None = None
    history: list[dict] = field(default_factory=list)
    first_loss: float | None = None
    start_epoch: int = 0
    position: dict | None = None  # where a preempted attempt stopped within epoch ``start_epoch`` (see _preempt)
    stop: bool = False  # the processes agreed to stop for a preemption signal


def _train(fabric: Fabric, cfg: RunConfig, resume: bool, callbacks, progress: bool, signals: PreemptionSignals) -> TrainResult:
    run = _prepare(fabric, cfg, resume, signals)
    if fabric.is_global_zero:
        start_trackers(fabric.loggers, cfg, resuming=run.start_epoch > 0 or run.position is not None)
    bar = TrainProgress(cfg.train.epochs, run.steps_per_epoch, run.start_epoch, enabled=progress and fabric.is_global_zero,
                        start_step=run.position["step"] if run.position else 0)
    try:
        with bar:
            for epoch in range(run.start_epoch, cfg.train.epochs):
                metrics = _run_epoch(run, epoch, bar)
                _end_epoch(run, epoch, metrics)
                bar.epoch_done(metrics)
                for callback in callbacks:
                    callback(epoch, metrics)
                if run.stop:  # agreed in the epoch's last step: its checkpoint is the one to resume from
                    raise _preempted(run, f"after epoch {epoch + 1}")
        result = _finish(run)
    except BaseException:
        close_trackers(fabric.loggers, ok=False)
        raise
    close_trackers(fabric.loggers, ok=True)
    return result


def _prepare(fabric: Fabric, cfg: RunConfig, resume: bool, signals: PreemptionSignals) -> _Run:
    """Seed, load the data and pairs (checked against a run being resumed), build the model and the batches."""
    run_dir, last = cfg.run_dir, cfg.run_dir / LAST
    fabric.seed_everything(cfg.train.seed, verbose=False)
    batch = cfg.train.batch_size
    with fabric.rank_zero_first(local=True):  # process 0 of each node loads (and caches) first; an error there stops
        # before the others load; the cache's file lock keeps nodes sharing a file system to one decode
        data = load_run_data(cfg)
        if len(data.pairs) < batch:
            raise ConfigError(f"{len(data.pairs)} pairs are fewer than one batch (train.batch_size={batch}): lower the batch size")
    if resume and last.exists():
        check_same_pairs(run_dir, data.pairs, data.train)  # before anything is written
    if fabric.global_rank == 0:
        write_records(run_dir, cfg, data.pairs, data.train)
    steps_per_epoch = len(data.pairs) // batch
    schedule = Schedule(cfg.optim, batch, steps_per_epoch, cfg.train.epochs)
    method, model, optimizer = setup_model(fabric, cfg)
    if method.uses_labels and data.train.labels is None:
        raise ConfigError(f"method.name={cfg.method.name} with its label-aware variant needs labelled training images; "
                          f"{data.train.source} has none: turn the variant off")
    batches = PairBatches(data.train.images, data.pairs, cfg.augment, fabric.device, on_device=cfg.train.data_on_device,
                          channels_last=cfg.train.channels_last, loader_workers=cfg.train.workers)
    run = _Run(fabric, cfg, data, method, model, optimizer, schedule, batches, steps_per_epoch, signals)
    if cfg.train.online_probe:
        run.probe = _online_probe(fabric, cfg, data, method)
    if resume and last.exists():
        rest = fabric.load(last, {"model": model, "optimizer": optimizer, **(run.probe.state if run.probe else {})})
        run.start_epoch, run.history, run.first_loss = rest["epoch"], rest["history"], rest.get("first_loss")
        run.position = rest.get("position")
        if run.position and run.position["world_size"] != fabric.world_size:
            raise ConfigError(f"{last} was preempted mid-epoch with {run.position['world_size']} processes; resume it with "
                              f"as many (now {fabric.world_size}): the processes' shares of the epoch differ")
        within = f", step {run.position['step']} of epoch {run.start_epoch + 1}" if run.position else ""
        fabric.print(f"resuming {run_dir} after epoch {run.start_epoch}{within}")
    return run


def _online_probe(fabric: Fabric, cfg: RunConfig, data: RunData, method: Method) -> OnlineProbe:
    """The online linear probe, after checking that the run has the labels it learns and is tested on."""
    if data.train.labels is None or data.test is None:
        raise ConfigError(f"train.online_probe=true needs labelled training images and a labelled test split "
                          f"(data.test_split={cfg.data.test_split or 'null'}); {data.train.source} gives "
                          f"{'no labels' if data.train.labels is None else 'no test split'}: set train.online_probe=false")
    return OnlineProbe(fabric, method.feat_dim, data.train.num_classes, cfg.train.seed)


def _run_epoch(run: _Run, epoch: int, bar: TrainProgress) -> dict:
    """The steps of one epoch (pair order and augmentation seeded by seed, epoch and rank); its metrics.

    After a preempted attempt (``run.position``) the epoch starts at the step it stopped before, with
    the generator state and partial sums it had there.
    """
    fabric, cfg, batch, world = run.fabric, run.cfg, run.cfg.train.batch_size, run.fabric.world_size
    order = torch.randperm(len(run.data.pairs), generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch))
    order = order[: run.steps_per_epoch * batch].view(run.steps_per_epoch, batch)[:, fabric.global_rank :: world]
    order = order.to(fabric.device)
    gen = torch.Generator(device=fabric.device).manual_seed(cfg.train.seed * 1_000_003 + epoch * 1009 + fabric.global_rank)
    run.model.train()
    loss_sum = torch.zeros((), device=fabric.device)
    term_sums: dict[str, torch.Tensor] = {}
    position, run.position = run.position, None
    start = position["step"] if position else 0
    if position:
        gen.set_state(position["generators"][fabric.global_rank].clone())  # its own storage: set_state of a row (a view
        # at an offset) crashed torch 2.x
        sums = {name: value[fabric.global_rank].to(fabric.device) for name, value in position["sums"].items()}
        loss_sum = sums.pop("loss")
        if run.probe:
            run.probe.loss_sum, run.probe.steps = sums.pop("probe"), start
        term_sums = sums
    spread, loss_now = float("nan"), float("nan")
    started = time.perf_counter()
    for i, views in enumerate(run.batches.epoch(order[start:], gen), start=start):
        step = epoch * run.steps_per_epoch + i
        lr = run.schedule.apply(run.optimizer, step)
        labels = run.batches.view_labels(run.data.train.labels, order[i]) if run.method.uses_labels else None
        out = optimizer_step(fabric, run.model, run.optimizer, *views, epoch=epoch, clip_grad=cfg.optim.clip_grad,
                             labels=labels)
        run.method.after_step(step, run.schedule.total)
        if run.probe:
            run.probe.step(out.features, run.batches.view_labels(run.data.train.labels, order[i])[: len(out.features)])
        loss_sum += out.loss.detach()
        for name, term in out.logs.items():
            term_sums[name] = term_sums.get(name, 0.0) + term.detach().double()
        if i % cfg.train.log_every == 0 or i == run.steps_per_epoch - 1:
            loss_now, spread, run.stop = _log_step(run, out, epoch, step, lr)
        bar.step(epoch, loss_now, lr)
        if run.stop and i + 1 < run.steps_per_epoch:
            _preempt(run, epoch, i + 1, gen, {"loss": loss_sum, **term_sums})
    seconds = time.perf_counter() - started

    def mean(total: torch.Tensor) -> float:  # over the epoch's steps and the processes
        return fabric.all_reduce(total, reduce_op="mean").item() / run.steps_per_epoch

    return {"epoch": epoch + 1, "loss": mean(loss_sum), "lr": lr, "embedding_spread": spread,
            **{name: mean(total) for name, total in term_sums.items()},
            "images_per_s": (run.steps_per_epoch - start) * batch / seconds, "seconds": seconds}


def _log_step(run: _Run, out: StepOutput, epoch: int, step: int, lr: float) -> tuple[float, float, bool]:
    """Agree on the step's loss, feature spread and loss terms in every process; stop if broken; log them.

    Also agreed: whether any process received a preemption signal (the third value returned).
    """
    fabric = run.fabric
    loss_now, spread, signalled, *terms = agree(fabric, out.loss.item(), embedding_spread(out.features),
                                                float(run.signals.received is not None),
                                                *(term.item() for term in out.logs.values()))
    _stop_if_broken(loss_now, spread, epoch, run.cfg, run.cfg.run_dir, fabric.global_rank)
    run.first_loss = loss_now if step == 0 else run.first_loss
    fabric.log_dict({"loss": loss_now, "lr": lr, "embedding_spread": spread, **dict(zip(out.logs, terms))}, step=step)
    return loss_now, spread, signalled > 0


def _per_process(fabric: Fabric, value: torch.Tensor) -> torch.Tensor:
    """``value`` of every process, stacked in rank order (on the CPU, for a checkpoint)."""
    gathered = fabric.all_gather(value.to(fabric.device))
    return (gathered if fabric.world_size > 1 else gathered.unsqueeze(0)).cpu()


def _preempt(run: _Run, epoch: int, done: int, gen: torch.Generator, sums: dict[str, torch.Tensor]) -> None:
    """Write the checkpoint of a run stopped after step ``done`` of ``epoch`` (its ``position``); raise Preempted."""
    fabric = run.fabric
    if run.probe:
        sums = {**sums, "probe": run.probe.loss_sum}
    position = {"step": done, "world_size": fabric.world_size, "generators": _per_process(fabric, gen.get_state()),
                "sums": {name: _per_process(fabric, value) for name, value in sums.items()}}
    _save(fabric, run.cfg.run_dir, {**_state(run, epoch, epoch * run.steps_per_epoch + done), "position": position},
          keep=False)
    for logger in fabric.loggers:  # the steps logged so far
        logger.save()
    raise _preempted(run, f"after step {done} of epoch {epoch + 1}")


def _preempted(run: _Run, where: str) -> Preempted:
    signal_name = run.signals.received or "a preemption signal (received by another process)"
    return Preempted(f"preempted by {signal_name}: {run.cfg.run_dir / LAST} holds the run {where}. Continue it with the "
                     "same command and --resume auto (or train.resume=auto)", run.fabric.global_rank)


def _state(run: _Run, epochs_done: int, steps_done: int) -> dict:
    """What a checkpoint of ``run`` holds after ``epochs_done`` whole epochs and ``steps_done`` steps in all."""
    return {"model": run.model, "optimizer": run.optimizer, "epoch": epochs_done, "step": steps_done,
            "config": run.cfg.model_dump(mode="json"), "history": run.history, "first_loss": run.first_loss,
            "preempted": run.stop, **(run.probe.state if run.probe else {})}


def _end_epoch(run: _Run, epoch: int, metrics: dict) -> None:
    """Optional kNN, then the epoch's records: history, the checkpoint (atomic), history.csv, the loggers."""
    fabric, cfg, run_dir = run.fabric, run.cfg, run.cfg.run_dir
    step = (epoch + 1) * run.steps_per_epoch - 1  # the epoch's last step
    if cfg.knn.every and (epoch + 1) % cfg.knn.every == 0 and epoch + 1 < cfg.train.epochs:
        metrics.update(result_columns(_knn(fabric, run.method, run.data, cfg)))
    if run.probe:
        metrics.update(run.probe.end_epoch(run.method.backbone, run.data.test, cfg.data.size, cfg.augment.mean,
                                           cfg.augment.std, cfg.features.batch_size, cfg.train.channels_last))
    run.history.append(metrics)
    fabric.log_dict({f"epoch/{k}": v for k, v in metrics.items()}, step=step)
    _save(fabric, run_dir, _state(run, epoch + 1, step + 1),
          keep=(epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == cfg.train.epochs)
    if fabric.is_global_zero:
        write_rows(run_dir / HISTORY, run.history)
    for logger in fabric.loggers:
        logger.save()


def _finish(run: _Run) -> TrainResult:
    """The learned-nothing note, the final kNN (eval/knn-<key>.json), the loggers closed."""
    fabric, cfg, run_dir, history = run.fabric, run.cfg, run.cfg.run_dir, run.history
    warning = learned_nothing(run.first_loss, history, cfg, steps=run.schedule.total)
    if warning:
        history = [*history[:-1], {**history[-1], "warning": warning}]
        if fabric.is_global_zero:
            write_rows(run_dir / HISTORY, history)
        fabric.print(f"warning: {warning}")
    knn = _knn(fabric, run.method, run.data, cfg) if run.data.test is not None else None
    if knn and fabric.is_global_zero:
        write_result(result_path(run_dir / LAST, PROTOCOL, knn["key"]), {"protocol": PROTOCOL, **knn})
    for logger in fabric.loggers:
        logger.finalize("success")
    return TrainResult(run_dir=run_dir, pairs=len(run.data.pairs), history=history, knn=knn, rank=fabric.global_rank)


def _save(fabric: Fabric, run_dir: Path, state: dict, keep: bool) -> None:
    """Write ``last.ckpt`` atomically (a killed run never leaves half a file); keep a snapshot of it if asked."""
    fabric.save(run_dir / LAST, state)  # through SafeCheckpointIO: atomic
    if fabric.is_global_zero and keep:
        snapshot_file(run_dir / LAST, epoch_checkpoint(run_dir, state["epoch"]))
    fabric.barrier()


def learned_nothing(first_loss: float | None, history: list[dict], cfg: RunConfig, steps: int) -> str | None:
    """A note when the last epoch's loss is not below the loss of the first step (by LEARNED_TOLERANCE of it).

    A network that learns lowers its loss below that of its random initialisation; one whose loss
    stays at that level (or rises to chance, e.g. with a far too high learning rate) learned nothing.
    A run of one optimiser step (``steps``) is not judged: its only loss is the first.
    """
    if first_loss is None or not history or steps < 2:
        return None
    final = history[-1]["loss"]
    if final < first_loss - LEARNED_TOLERANCE * abs(first_loss):
        return None
    return (f"the run learned nothing: its loss did not fall ({first_loss:.4f} at the first step, {final:.4f} in epoch "
            f"{history[-1]['epoch']}). Fix: lower optim.lr (now {cfg.optim.lr}) or train longer (train.epochs)")


def _knn(fabric: Fabric, method, data, cfg: RunConfig) -> dict:
    """kNN accuracy of the current backbone on the run's own selection (computed on rank 0, shared with all ranks)."""
    result = {}
    if fabric.is_global_zero and data.test is not None:
        result = knn_evaluate(method.backbone, Selection.of_run(cfg),
                              (cfg.data.size, cfg.augment.mean, cfg.augment.std), batch_size=cfg.features.batch_size,
                              channels_last=cfg.train.channels_last)
    fabric.barrier()
    return fabric.broadcast(result)
