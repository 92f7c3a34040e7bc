"""Every GPU figure from one prepared call (issue 27): one JSON and one Markdown table in ``--out``.

In this order, each step started only while the time it needs is left of ``--budget-s`` (else
skipped with a note), each written to ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` as soon
as it ends (atomically); a step that fails records its error and the next one runs:

  1. environment   GPU, torch/CUDA versions, bf16 matmul TFLOP/s (a peak reference);
  2. training speed  SimCLR, ResNet-18 @ 32 px batch 512 and ResNet-50 @ 64 px batch 256:
                   sempairs end to end, the bare step on resident batches, and a per-image
                   torchvision pipeline in a DataLoader with 16 and with 4 workers, in one run
                   (``bench.throughput.measure``);
  3. quickstart    the quickstart's grid (its 5 seen classes, SP, AP, AP+SP, random init) at seed
                   0 with as many epochs as fit its share of the budget (target 100): a cosine
                   schedule must know its length, so two timed epochs of the AP arm (the
                   second, warm) fix the epochs before the grid starts (``sempairs.experiments.quickstart``);
  4. mining        exact top-10 of 1,000,000 x 512 embeddings, torch backend, fp32 and bf16
                   (``bench.mining_speed.search_time``);
  5. evaluation    features of the 60,000 CIFAR-10 images, kNN and the linear probe, seconds
                   (an untrained ResNet-18: the cost, not the accuracy, is the figure).

A second call with the same ``--out`` keeps the finished steps (and a started quickstart's
epochs, whose grid resumes from its checkpoints) and runs the others. ``--dry-run`` runs every
step on the CPU at tiny sizes (a few steps, a slice of the data), labelled ``cpu dry run``.

    python -m bench.gpu_check --out runs/gpu_check [--data FOLDER_OR_ZIP] [--budget-s 540] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from bench.cpu_speed import matmul_gflops
from bench.mining_speed import search_time
from bench.throughput import SETTINGS, measure, synchronize
from sempairs.atomic import write_text
from sempairs.config import load_config
from sempairs.data.registry import find_dataset, load_dataset
from sempairs.errors import InputError, SempairsError
from sempairs.eval.knn import knn_accuracy
from sempairs.eval.linear import linear_probe
from sempairs.experiments.grid import expand
from sempairs.experiments.quickstart import quickstart_experiment, run_quickstart
from sempairs.models import BackboneConfig, build_backbone
from sempairs.train import train
from sempairs.trained.features import extract_features

RESULT, TABLE = "gpu_check.json", "gpu_check.md"
DRY_LABEL, GPU_LABEL = "cpu dry run", "gpu"


@dataclass(frozen=True)
class Sizes:
    """What each step runs at: the GPU figures, or the CPU dry run's tiny stand-ins."""

    label: str
    device: str
    matmul_n: int
    train_settings: tuple  # (backbone, small stem, size, batch), as bench.throughput.SETTINGS
    train_steps: int
    train_warmup: int
    workers: tuple[int, ...]
    train_limit: int | None  # training images per class (None: all)
    train_overrides: tuple[str, ...]
    quickstart_epochs: int  # the target; fewer when they do not fit
    quickstart_overrides: dict
    mining_n: int
    mining_dim: int
    eval_limit: tuple[int | None, int | None]  # train, test images per class
    eval_k: int
    eval_backbone: dict  # BackboneConfig fields (always a ResNet-18 with the small stem)
    eval_size: int
    linear_options: dict  # to linear_probe (none: L2 chosen on the training split)
    needs_s: dict = field(default_factory=dict)  # step -> seconds it needs to start (quickstart: its minimum)


GPU = Sizes(GPU_LABEL, "cuda", 8192, tuple(SETTINGS[:2]), 50, 5, (16, 4),
            None, (), 100, {}, 1_000_000, 512, (None, None), 200, {}, 32, {},
            {"environment": 10, "training_speed": 150, "quickstart": 90, "mining": 90, "evaluation": 60})
DRY = Sizes(DRY_LABEL, "cpu", 256, (("resnet18", True, 16, 16), ("resnet50", True, 16, 8)), 2, 1, (2, 1),
            4, ("backbone.width=0.125",), 2,
            {"data": {"size": 16, "limit_per_class": 8, "test_limit_per_class": 4},
             "pairs": {"per_class": 4}, "backbone": {"width": 0.125, "stem_width": 8},
             "train": {"batch_size": 10, "compile": False, "accelerator": "cpu"}, "knn": {"k": 5}},
            1000, 64, (8, 4), 5, {"width": 0.125, "stem_width": 8}, 16, {"l2": 1e-3, "max_iter": 20},
            {"environment": 1, "training_speed": 5, "quickstart": 5, "mining": 1, "evaluation": 2})
STEPS = ("environment", "training_speed", "quickstart", "mining", "evaluation")


@dataclass
class Check:
    """One call: its sizes, data, output folder, deadline and the record it writes after every step."""

    sizes: Sizes
    data: Path
    out: Path
    deadline: float
    record: dict

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def save(self, step: str, entry: dict) -> None:
        """Record ``entry`` as ``step``'s state and rewrite the JSON and the table (atomically)."""
        self.record["steps"][step] = entry
        self.write()

    def write(self) -> None:
        write_text(self.out / RESULT, json.dumps(self.record, indent=1))
        write_text(self.out / TABLE, markdown(self.record))


def environment(check: Check, _: dict) -> dict:
    """Device, versions and the bf16 matmul rate (TFLOP/s of n x n products), a peak reference."""
    device = check.sizes.device
    tflops = matmul_gflops(torch.bfloat16, check.sizes.matmul_n, 2.0, device) / 1000
    return {"device_name": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device == "cuda" else None, "cpus": os.cpu_count(),
            "bf16_matmul_n": check.sizes.matmul_n, "bf16_matmul_tflops": tflops}


def training_speed(check: Check, state: dict) -> dict:
    """Images/s of each pipeline per setting (``bench.throughput.measure``); each setting is saved as it ends."""
    s = check.sizes
    settings = dict(state.get("settings", {}))
    for arch, small, size, batch in s.train_settings:
        name = f"SimCLR {arch}{' small stem' if small else ''} {size} px batch {batch}"
        if name in settings:
            continue
        if check.left_s() < s.needs_s["training_speed"] / len(s.train_settings):
            raise TimeShort(f"{name} not measured: {check.left_s():.0f} s left")
        rates = measure((arch, small, size, batch), str(check.data), s.train_steps, list(s.workers), False,
                        s.device, s.train_warmup, s.train_limit, s.train_overrides)
        settings[name] = {"images_per_s": rates, "steps": s.train_steps, "warmup_steps": s.train_warmup,
                          "images_per_class": s.train_limit, "overrides": list(s.train_overrides)}
        check.save("training_speed", {"status": "running", "settings": settings})
    return {"settings": settings}


def quickstart(check: Check, state: dict) -> dict:
    """The quickstart grid at seed 0 with the epochs that fit (fixed once, kept on resume); its summary."""
    s = check.sizes
    folder = check.out / "quickstart"
    epochs = state.get("epochs")
    calibration = state.get("calibration")
    if epochs is None:
        later = [step for step in ("mining", "evaluation") if check.record["steps"].get(step, {}).get("status") != "done"]
        share = check.left_s() - sum(s.needs_s[step] for step in later)
        if share < s.needs_s["quickstart"]:
            raise TimeShort(f"{share:.0f} s left for it after reserving what {', '.join(later) or 'nothing'} needs")
        calibration = time_epochs(check, folder.parent / "quickstart-calibration")
        arms = 3  # SP, AP, AP+SP; the random-init arm trains nothing
        per_epoch, overhead = calibration["epoch_s"], calibration["overhead_s"]
        epochs = max(1, min(s.quickstart_epochs, math.floor((share - calibration["wall_s"] - arms * 3 * overhead)
                                                            / (arms * per_epoch))))
        check.save("quickstart", {"status": "running", "epochs": epochs, "calibration": calibration,
                                  "share_s": share})
    summary = run_quickstart(folder, str(check.data), False, Console(stderr=True), quickstart_overrides(s, epochs), seeds=1)
    return {"epochs": epochs, "target_epochs": s.quickstart_epochs, "calibration": calibration,
            "folder": str(folder), "summary": {k: v for k, v in summary.items() if k != "experiment"}}


def quickstart_overrides(sizes: Sizes, epochs: int) -> dict:
    """The quickstart recipe's changes at these sizes, with ``epochs`` epochs."""
    return {**sizes.quickstart_overrides, "train": {**sizes.quickstart_overrides.get("train", {}), "epochs": epochs}}


def time_epochs(check: Check, folder: Path) -> dict:
    """Two epochs of the quickstart's AP arm at seed 0: a warm epoch's seconds and what each run costs besides.

    The first epoch pays the warm-up (cuDNN's algorithm search, allocations): on the H200 it took 3x
    a warm one, and a calibration on it alone fitted 34 epochs where 100 would have fitted. That
    warm-up is counted with the setup and the kNN in ``overhead_s``, paid once per arm.
    """
    s = check.sizes
    shutil.rmtree(folder, ignore_errors=True)  # this script's scratch run, left by a call killed while timing
    exp = quickstart_experiment(folder, str(check.data), False, quickstart_overrides(s, 2), seeds=1)
    cfg = next(c.config for c in expand(exp) if c.config.pairs.source == "augmented")
    cfg = cfg.model_copy(update={"out_dir": str(folder), "name": "ap-two-epochs"})
    started = time.perf_counter()
    result = train(cfg, resume=False, progress=False)
    wall = time.perf_counter() - started
    warm = result.history[-1]["seconds"]
    return {"epoch_s": warm, "first_epoch_s": result.history[0]["seconds"], "overhead_s": wall - 2 * warm, "wall_s": wall}


def mining(check: Check, _: dict) -> dict:
    """Seconds of the exact top-10 search, torch backend, float32 and bfloat16 (``bench.mining_speed``)."""
    s = check.sizes
    return {p: search_time(s.mining_n, s.mining_dim, 10, "torch", p, s.device) for p in ("float32", "bfloat16")}


def evaluation(check: Check, _: dict) -> dict:
    """Seconds to load CIFAR-10 (train and test), extract features, run kNN and the linear probe."""
    s = check.sizes
    cfg = load_config(None, [])
    mean, std = cfg.augment.mean, cfg.augment.std
    seconds = {}
    started = time.perf_counter()
    size = s.eval_size
    stores = [load_dataset(check.data, split, size, limit_per_class=limit)
              for split, limit in zip(("train", "test"), s.eval_limit)]
    seconds["load"] = time.perf_counter() - started
    torch.manual_seed(0)
    backbone, _ = build_backbone(BackboneConfig(name="resnet18", small_stem=True, **s.eval_backbone), size)
    backbone.to(s.device)
    extract_features(backbone, stores[1].tensor(s.device)[:64], size, mean, std)  # warm-up (cuDNN, threads)

    def timed(name, fn):
        synchronize(s.device)
        start = time.perf_counter()
        value = fn()
        synchronize(s.device)
        seconds[name] = time.perf_counter() - start
        return value

    feats = timed("features", lambda: [extract_features(backbone, st.tensor(s.device), size, mean, std) for st in stores])
    labels = [torch.from_numpy(st.labels).to(s.device) for st in stores]
    classes = stores[0].num_classes
    knn = timed("knn", lambda: knn_accuracy(feats[0], labels[0], feats[1], labels[1], classes, s.eval_k, 0.1))
    linear = timed("linear", lambda: linear_probe(feats[0], labels[0], feats[1], labels[1], classes, **s.linear_options))
    return {"images": sum(len(st) for st in stores), "train_images": len(stores[0]), "test_images": len(stores[1]),
            "backbone": {"name": "resnet18", "small_stem": True, **s.eval_backbone, "weights": "untrained (seed 0)"},
            "image_size": size, "knn_k": s.eval_k, "linear_options": s.linear_options, "parts_s": seconds,
            "knn_top1": knn["knn_top1"], "linear_top1": linear["linear_top1"], "linear_l2": linear["linear_l2"]}


class TimeShort(SempairsError):
    """Less time is left than a step (or the rest of one) needs: it is skipped, to be resumed by another call."""


RUNNERS = {"environment": environment, "training_speed": training_speed, "quickstart": quickstart,
           "mining": mining, "evaluation": evaluation}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU"


def run_check(check: Check, log=print) -> dict:
    """Run every step not yet done, in order, within the deadline; the record, also in the JSON and the table."""
    check.write()  # this call is recorded even when every step was done before
    for step in STEPS:
        state = check.record["steps"].get(step, {})
        if state.get("status") == "done":
            log(f"{step}: done by an earlier call, kept")
            continue
        need = check.sizes.needs_s[step]
        if check.left_s() < need:
            check.save(step, {**state, "status": "skipped", "note": f"time ran short: {check.left_s():.0f} s left, the "
                              f"step needs about {need} s; call again with the same --out to run it"})
            log(f"{step}: skipped, time ran short")
            continue
        log(f"{step}: running ({check.left_s():.0f} s left)")
        started = time.perf_counter()
        try:
            result = RUNNERS[step](check, state)
        except TimeShort as short:
            check.save(step, {**check.record["steps"].get(step, state), "status": "skipped",
                              "note": f"time ran short: {short}; call again with the same --out to finish it"})
            log(f"{step}: skipped part, time ran short")
            continue
        except Exception as error:  # noqa: BLE001 (one failed figure must not cost the others; the traceback is kept)
            trace = traceback.format_exc()
            print(trace, file=sys.stderr)
            check.save(step, {**check.record["steps"].get(step, state), "status": "failed",
                              "error": f"{type(error).__name__}: {error}", "traceback": trace})
            continue
        check.save(step, {"status": "done", "step_s": time.perf_counter() - started, **result})
        log(f"{step}: done in {time.perf_counter() - started:.1f} s")
    return check.record


def ratios(rates: dict) -> str:
    """The end-to-end rate as a multiple of the bare step's and of each DataLoader pipeline's."""
    ours, bare = rates["sempairs (GPU data + GPU augmentation)"], rates["bare step (GPU-resident batches)"]
    parts = [f"{ours / bare:.2f} of the bare step ({bare:,.0f} img/s)"]
    for name, rate in rates.items():
        if "DataLoader" in name:
            parts.append(f"{ours / rate:.2f}x {name.split(', ')[1]} ({rate:,.0f} img/s)")
    return "; ".join(parts)


def _rows(step: str, entry: dict) -> list[tuple[str, str, str]]:
    """(figure, value, ratios) rows of one finished step."""
    if step == "environment":
        return [(f"bf16 matmul {entry['bf16_matmul_n']}^2", f"{entry['bf16_matmul_tflops']:.2f} TFLOP/s", "")]
    if step == "training_speed":
        return [(f"{name}: sempairs end to end", f"{s['images_per_s']['sempairs (GPU data + GPU augmentation)']:,.0f} img/s",
                 ratios(s["images_per_s"])) for name, s in entry["settings"].items()]
    if step == "quickstart":
        summary = entry["summary"]
        rows = []
        for arm, stats in summary["arms"].items():
            seen, unseen = (stats.get(g, {}).get("mean", float("nan")) for g in ("seen", "unseen"))
            rows.append((f"quickstart {arm}, seed 0, {stats['settings']['epochs']} epochs: kNN top-1 seen / unseen",
                         f"{seen:.1f} / {unseen:.1f} %", ""))
        rows.append(("quickstart grid wall time", f"{summary['minutes']:.1f} min",
                     f"{entry['epochs']} of {entry['target_epochs']} target epochs fitted"))
        return rows
    if step == "mining":
        return [(f"exact top-10 of {r['n']:,} x {r['dim']} ({r['backend']}, {precision})", f"{r['seconds']:.2f} s", "")
                for precision, r in entry.items() if isinstance(r, dict)]
    sec = entry["parts_s"]
    return [(f"evaluation of {entry['images']:,} images: {part}", f"{sec[key]:.2f} s", "")
            for part, key in (("loading", "load"), ("features", "features"), ("kNN", "knn"), ("linear probe", "linear"))]


def markdown(record: dict) -> str:
    """The short table: one row per figure (ratio columns for training speed), one per step not done."""
    env = record["steps"].get("environment", {})
    head = [f"# GPU check: {record['mode']}" + (" (tiny sizes on the CPU, not GPU figures)" if record["mode"] == DRY_LABEL else ""),
            "", f"{env.get('device_name', record['device'])}, torch {record['torch']}, CUDA {record['cuda']}, "
            f"{record['calls'][0]['date']}; command: `{record['calls'][-1]['command']}`", "",
            "| step | figure | value | ratios |", "|---|---|---|---|"]
    lines = []
    for step in STEPS:
        entry = record["steps"].get(step)
        if entry is None:
            continue
        if entry.get("status") == "done":
            lines += [f"| {step} | {figure} | {value} | {extra} |" for figure, value, extra in _rows(step, entry)]
        else:
            lines.append(f"| {step} | {entry['status']} | {entry.get('note') or entry.get('error', '')} | |")
    return "\n".join(head + lines) + "\n"


def resolve_data(data: str) -> Path:
    """The CIFAR-10 zip/folder: ``data`` itself if it is a file, else CIFAR-10 found in the folder ``data``."""
    path = Path(data).expanduser()
    if path.is_file():
        return path
    found = find_dataset("cifar10", path) if path.is_dir() else None
    if found is None:
        raise InputError(f"--data {data}: no CIFAR-10 there. Fix: give the cifar10-jpeg.zip or the folder holding it")
    return found


def open_record(out: Path, sizes: Sizes, command: str, budget_s: float, data: Path | None = None) -> dict:
    """The record of ``out`` (a new one, or the one an earlier call of the same kind left), with this call added."""
    path = out / RESULT
    record = json.loads(path.read_text()) if path.exists() else {
        "mode": sizes.label, "device": device_name(sizes.device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "sizes": asdict(sizes), "calls": [], "steps": {}}
    if record["mode"] != sizes.label:
        raise InputError(f"{path} holds a {record['mode']} check; this call is a {sizes.label} one. "
                         "Fix: give another --out (nothing overwrites a result made another way)")
    record["calls"].append({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command, "budget_s": budget_s,
                            "data": str(data) if data else None})
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder of gpu_check.json and gpu_check.md (a second call resumes)")
    parser.add_argument("--data", default=os.environ.get("SEMPAIRS_DATA") or "../shared/data",
                        help="CIFAR-10: the zip, or a folder holding it (default: $SEMPAIRS_DATA, else ../shared/data)")
    parser.add_argument("--budget-s", type=float, default=540, help="seconds this call may use (steps are started within it)")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    args = parser.parse_args(argv)
    sizes = DRY if args.dry_run else GPU
    if args.dry_run:  # it checks that every step runs, not speed: one thread spins least on a shared CPU
        torch.set_num_threads(1)
    try:
        if sizes.device == "cuda" and not torch.cuda.is_available():
            raise InputError("no CUDA GPU here. Fix: run it on the GPU machine, or pass --dry-run for the CPU check")
        data = resolve_data(args.data)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = shlex.join(["python", "-m", "bench.gpu_check", *(sys.argv[1:] if argv is None else argv)])
        record = open_record(out, sizes, command, args.budget_s, data)
        check = Check(sizes, data, out, time.monotonic() + args.budget_s, record)
    except SempairsError as error:  # one line, exit status 2, as the command line reports input errors
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    run_check(check)
    print(markdown(check.record))


if __name__ == "__main__":
    main()
