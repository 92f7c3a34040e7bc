"""``sempairs eval``: evaluate a pretrained checkpoint (or plain torchvision/timm weights with --arch).

Every command writes its results as JSON to ``<run_dir>/eval/<protocol>.json`` (for a checkpoint
other than ``last.ckpt``: ``<run_dir>/eval/<checkpoint stem>-<protocol>.json``; ``--out``
overrides) and prints a table. ``knn`` also keeps writing ``knn.json`` beside the checkpoint;
``shift`` also writes a heat-map (PNG, with the CSV of its numbers) beside its JSON, and
``shift-compare`` plots several ``shift`` results side by side.
Features are cached in ``features/`` beside the checkpoint.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sempairs.atomic import write_text
from sempairs.cli.common import DownloadOpt, RootOpt, check_output, console, fail, load

_clock = {"start": time.perf_counter()}
app = typer.Typer(help="Evaluate a pretrained checkpoint.", no_args_is_help=True)

CheckpointArg = typer.Argument(..., help="A .ckpt file, a run directory, or a plain weights file (with --arch).")
ArchOpt = typer.Option(None, help="Architecture of a plain weights file: resnet18 | resnet50 | a timm model name.")
DataOpt = typer.Option(None, help="Labelled dataset (default: the run's).")
DeviceOpt = typer.Option("auto", help="cpu | cuda | auto")
OutOpt = typer.Option(None, help="JSON file for the results (default: <run_dir>/eval/<protocol>.json).")
SeedOpt = typer.Option(0, help="Random seed.")
L2Opt = typer.Option(None, help="Fixed L2 strength (default: chosen on a held-out part of the train split).")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _backbone(checkpoint: Path, arch: Optional[str], device: str):
    """The backbone on ``device``; the clock of the results' ``wall_seconds`` starts here."""
    from sempairs.trained.loading import load_backbone

    _clock["start"] = time.perf_counter()
    loaded = load_backbone(checkpoint, arch)
    loaded.module.to(_device(device))
    return loaded


def _dataset(loaded, data: Optional[str]) -> str:
    if data is not None:
        return data
    if loaded.config is None:
        fail(f"{loaded.path} is a plain weights file: give the dataset to evaluate on with --data")
    return loaded.config.data.dataset


def _root(loaded, root: Optional[str]) -> Optional[str]:
    return root if root is not None or loaded.config is None else loaded.config.data.root


def _result_path(checkpoint: Path, protocol: str) -> Path:
    """Where a protocol's results on the checkpoint file ``checkpoint`` go by default."""
    name = protocol if checkpoint.name == "last.ckpt" else f"{checkpoint.stem}-{protocol}"
    return checkpoint.parent / "eval" / f"{name}.json"


def _write(loaded, protocol: str, result: dict, out: Optional[Path]) -> Path:
    if out is None:
        out = _result_path(loaded.path, protocol)
    check_output(out, loaded.path)
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    device = next(loaded.module.parameters()).device
    timing = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "wall_seconds": round(time.perf_counter() - _clock["start"], 2), "date": datetime.date.today().isoformat()}
    write_text(out, json.dumps({"checkpoint": str(loaded.path), "protocol": protocol, **result, **timing}, indent=2))
    console.print(f"{protocol}: {timing['wall_seconds']:.1f} s on {timing['device']} (loading, features, fitting)")
    return out


def _table(title: str, columns: list[str], rows: list[list], path: Optional[Path] = None) -> None:
    """Print ``rows`` as a table (floats with 2 decimals), then where the results were written."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if path is not None:
        console.print(f"results: {path}")


def _splits(loaded, dataset: str, root: Optional[str], download: bool, train_split: str, test_split: str):
    from sempairs.eval.transfer import labelled_features

    return [labelled_features(loaded, dataset, split, root, download) for split in (train_split, test_split)]


@app.command("knn")
def eval_knn(
    checkpoint: Path = CheckpointArg,
    data: Optional[str] = DataOpt,
    k: int = typer.Option(200, help="Neighbours."),
    temperature: float = typer.Option(0.1, help="Vote temperature."),
    train_split: str = typer.Option("train", help="Memory split."),
    test_split: str = typer.Option("test", help="Query split."),
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Weighted kNN accuracy of the backbone; writes knn.json beside the checkpoint and eval/knn.json."""
    from sempairs.eval.knn import knn_accuracy

    loaded = _backbone(checkpoint, arch, device)
    dataset = _dataset(loaded, data)
    (train_x, train_y, names, _), (test_x, test_y, _, _) = _splits(loaded, dataset, _root(loaded, root), download,
                                                                   train_split, test_split)
    result = {**knn_accuracy(train_x, train_y, test_x, test_y, len(names), k, temperature), "knn_k": k,
              "knn_temperature": temperature, "train_images": len(train_y), "test_images": len(test_y),
              "dataset": dataset}
    legacy = loaded.path.parent / "knn.json"
    write_text(legacy, json.dumps(result, indent=2))
    path = _write(loaded, "knn", result, out)
    console.print(f"kNN (k={k}, t={temperature}) on {dataset}: top-1 {result['knn_top1']:.2f}%  "
                  f"top-5 {result['knn_top5']:.2f}%  -> {legacy}, {path}")


@app.command("linear")
def eval_linear(
    checkpoint: Path = CheckpointArg,
    data: Optional[str] = DataOpt,
    l2: Optional[float] = L2Opt,
    val_fraction: float = typer.Option(0.2, help="Part of the train split held out to choose the L2 strength."),
    max_iter: int = typer.Option(300, help="L-BFGS iterations per fit."),
    augmented: bool = typer.Option(False, "--augmented", help="SGD on flip+crop views through the backbone instead."),
    epochs: int = typer.Option(100, help="Epochs of the --augmented protocol."),
    batch_size: int = typer.Option(256, help="Batch size of the --augmented protocol."),
    lr: float = typer.Option(0.1, help="Learning rate per 256 images of the --augmented protocol."),
    seed: int = SeedOpt,
    train_split: str = typer.Option("train", help="Training split."),
    test_split: str = typer.Option("test", help="Test split (only for the final accuracy)."),
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Linear probe: logistic regression on frozen features (or SGD on augmented views with --augmented)."""
    loaded = _backbone(checkpoint, arch, device)
    dataset, root = _dataset(loaded, data), _root(loaded, root)
    if augmented:
        from sempairs.eval.linear import linear_probe_augmented

        train, test = (load(dataset, split, root, download, loaded.size) for split in (train_split, test_split))
        result = linear_probe_augmented(loaded.module, train, test, loaded.size, loaded.mean, loaded.std,
                                         epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        path = _write(loaded, "linear_augmented", {**result, "dataset": dataset}, out)
        _table(f"augmented linear probe on {dataset}", ["top-1 %", "top-5 %", "epochs"],
               [[result["linear_aug_top1"], result["linear_aug_top5"], epochs]], path)
        return
    from sempairs.eval.linear import linear_probe

    (train_x, train_y, names, _), (test_x, test_y, _, _) = _splits(loaded, dataset, root, download, train_split, test_split)
    result = linear_probe(train_x, train_y, test_x, test_y, len(names), l2=l2, val_fraction=val_fraction,
                           seed=seed, max_iter=max_iter)
    path = _write(loaded, "linear", {**result, "dataset": dataset}, out)
    if result["linear_val_curve"]:
        _table("L2 selection (validation part of the train split)", ["L2", "val top-1 %"],
               [[f"{p['l2']:.1e}", p["val_top1"]] for p in result["linear_val_curve"]])
    _table(f"linear probe on {dataset}", ["top-1 %", "top-5 %", "L2"],
           [[result["linear_top1"], result["linear_top5"], f"{result['linear_l2']:.1e}"]], path)


@app.command("fewshot")
def eval_fewshot(
    checkpoint: Path = CheckpointArg,
    data: Optional[str] = DataOpt,
    fraction: Optional[list[float]] = typer.Option(None, help="Fraction of labels per class (repeatable; default 0.01 and 0.1)."),
    per_class: Optional[list[int]] = typer.Option(None, help="Labelled images per class (repeatable)."),
    seeds: int = typer.Option(3, help="Subsets drawn per setting (seeds 0..N-1)."),
    l2: Optional[float] = L2Opt,
    max_iter: int = typer.Option(300, help="L-BFGS iterations per fit."),
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Linear probe on balanced few-label subsets of the train split: mean and std over seeds."""
    from sempairs.eval.fewshot import fewshot_probe

    loaded = _backbone(checkpoint, arch, device)
    dataset = _dataset(loaded, data)
    (train_x, train_y, names, _), (test_x, test_y, _, _) = _splits(loaded, dataset, _root(loaded, root), download,
                                                                   "train", "test")
    fractions = fraction or ([] if per_class else [0.01, 0.1])
    result = fewshot_probe(train_x, train_y, test_x, test_y, len(names), fractions=fractions,
                            per_class=per_class or [], seeds=list(range(seeds)), l2=l2, max_iter=max_iter)
    path = _write(loaded, "fewshot", {"dataset": dataset, "settings": result}, out)
    _table(f"few-label linear probe on {dataset} ({seeds} seeds)", ["labels", "images", "top-1 %", "top-5 %"],
           [[name, r["runs"][0]["labelled_images"], f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}",
             f"{r['top5_mean']:.2f} ± {r['top5_std']:.2f}"] for name, r in result.items()], path)


@app.command("transfer")
def eval_transfer(
    checkpoint: Path = CheckpointArg,
    data: Optional[list[str]] = typer.Option(None, help="Datasets (repeatable): cifar10 | cifar100 | stl10 | a path. "
                                                        "Default: the run's."),
    classes: Optional[str] = typer.Option(None, help="seen | unseen | comma-separated class names "
                                                     "(default: all, plus seen/unseen for class-subset runs)."),
    k: int = typer.Option(200, help="kNN neighbours."),
    linear: bool = typer.Option(True, "--linear/--no-linear", help="Also run the linear probe."),
    l2: Optional[float] = L2Opt,
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """kNN + linear probe on several datasets (at the pretraining resolution) and class subsets."""
    from sempairs.eval.transfer import transfer_evaluate

    loaded = _backbone(checkpoint, arch, device)
    datasets = data or [_dataset(loaded, None)]
    subset = classes if classes in (None, "seen", "unseen") else [c.strip() for c in classes.split(",") if c.strip()]
    result = transfer_evaluate(loaded, datasets, subset, root=_root(loaded, root), download=download,
                                knn_k=k, linear=linear, l2=l2)
    path = _write(loaded, "transfer", {"datasets": result}, out)
    rows = [[dataset, group, len(r["classes"]), r["knn_top1"], r.get("linear_top1", "-")]
            for dataset, groups in result.items() for group, r in groups.items()]
    _table("transfer", ["dataset", "classes", "n", "kNN top-1 %", "linear top-1 %"], rows, path)


@app.command("detect")
def eval_detect(
    checkpoint: Path = CheckpointArg,
    voc: list[Path] = typer.Option(..., help="VOC-format root for training (repeatable, e.g. VOC2007 and VOC2012)."),
    voc_test: Optional[list[Path]] = typer.Option(None, help="VOC-format root(s) for testing (default: the first --voc)."),
    train_set: str = typer.Option("trainval", help="ImageSets/Main list to train on."),
    test_set: str = typer.Option("test", help="ImageSets/Main list to test on."),
    iterations: int = typer.Option(1000, help="SGD iterations."),
    batch_size: int = typer.Option(2, help="Images per iteration."),
    lr: float = typer.Option(0.02, help="Learning rate per 16 images."),
    min_size: int = typer.Option(800, help="Shorter image side after resizing."),
    max_size: int = typer.Option(1333, help="Longest image side after resizing."),
    proposals: Optional[int] = typer.Option(None, help="RPN proposals kept per image (default 2000 train / 1000 test)."),
    rois: int = typer.Option(512, help="Proposals sampled per image for the box-head loss."),
    norm: str = typer.Option("frozen", help="frozen | batch: BatchNorm frozen to the pretrained statistics, or trained."),
    reinit_stem: bool = typer.Option(False, "--reinit-stem", help="Small-stem checkpoints: train a fresh 7x7 stem."),
    seed: int = SeedOpt,
    arch: Optional[str] = ArchOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Faster R-CNN (ResNet-FPN) from the backbone, fine-tuned on VOC-format data: box AP, AP50, AP75."""
    from rich.progress import Progress

    from sempairs.eval.detection import detection_evaluate

    if norm not in ("frozen", "batch"):
        fail(f"--norm must be frozen or batch, got {norm!r}")
    loaded = _backbone(checkpoint, arch, device)
    options = {"box_batch_size_per_image": rois}
    if proposals is not None:
        options.update(rpn_post_nms_top_n_train=proposals, rpn_post_nms_top_n_test=proposals)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=iterations)
        result = detection_evaluate(loaded, voc, voc_test or voc[:1], train_set, test_set, iterations,
                                     batch_size, lr, min_size, max_size, norm, "reinit" if reinit_stem else "refuse", seed,
                                     _device(device), detector_options=options,
                                     on_step=lambda step, loss: bar.update(
                                         task, completed=step, description=f"fine-tuning (loss {loss:.3f})"))
    path = _write(loaded, "detect", {"voc": [str(v) for v in voc], **result}, out)
    _table(f"detection ({iterations} iterations)", ["AP", "AP50", "AP75"],
           [[result["AP"], result["AP50"], result["AP75"]]], path)


@app.command("invariance")
def eval_invariance(
    checkpoint: Path = CheckpointArg,
    data: Optional[str] = DataOpt,
    split: str = typer.Option("test", help="Split whose images are perturbed."),
    limit: int = typer.Option(1000, help="Images used (the first N of the split)."),
    probe: Optional[list[str]] = typer.Option(None, help="Probes (repeatable; default all): occlusion | background | "
                                                        "background_noise | pattern | brightness | gamma."),
    strength: Optional[list[float]] = typer.Option(None, help="Strengths in [0, 1] (repeatable; default 0 .25 .5 .75)."),
    seed: int = SeedOpt,
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Mean cosine similarity of embeddings of images and their perturbed versions, per probe and strength."""
    from sempairs.eval.invariance import PROBES, invariance

    loaded = _backbone(checkpoint, arch, device)
    dataset = _dataset(loaded, data)
    store = load(dataset, split, _root(loaded, root), download, loaded.size)
    images = store.subset(range(min(limit, len(store)))).tensor()
    strengths = strength or [0.0, 0.25, 0.5, 0.75]
    result = invariance(loaded.module, images, loaded.size, loaded.mean, loaded.std, probe or list(PROBES),
                         strengths, seed)
    path = _write(loaded, "invariance", {"dataset": dataset, "split": split, "images": len(images), "probes": result}, out)
    keys = list(next(iter(result.values())))
    _table(f"invariance (mean cosine similarity, {len(images)} images)", ["probe", *keys],
           [[name, *(f"{per[key]:.4f}" for key in keys)] for name, per in result.items()], path)


SHIFT_SUMMARY = ("clean", "mean_corruption", "drop", "occlusion")


def _or_dash(value):
    return "-" if value is None else value


def _run_name(checkpoint: Path) -> str:
    """A checkpoint's short name: its run directory for ``last.ckpt``, else its file stem."""
    return checkpoint.parent.name if checkpoint.name == "last.ckpt" else checkpoint.stem


def _shift_json(path: Path) -> Path:
    """The shift results of ``path``: a JSON file, a run directory (its last.ckpt) or a checkpoint file."""
    if path.suffix == ".json":
        return path
    return _result_path(path / "last.ckpt" if path.is_dir() else path, "shift")


@app.command("shift")
def eval_shift(
    checkpoint: Path = CheckpointArg,
    data: Optional[str] = DataOpt,
    corruption: Optional[list[str]] = typer.Option(None, help="Corruptions (repeatable; default all 15 of CIFAR-10-C "
                                                              "and occlusion)."),
    severity: Optional[list[int]] = typer.Option(None, help="Severities 1..5 (repeatable; default all)."),
    limit: Optional[int] = typer.Option(None, help="Test images used: a seeded random subset (default all)."),
    k: int = typer.Option(200, help="kNN neighbours."),
    temperature: float = typer.Option(0.1, help="kNN vote temperature."),
    linear: bool = typer.Option(True, "--linear/--no-linear", help="Also score a linear probe (fit once on clean "
                                                                   "train features)."),
    l2: Optional[float] = L2Opt,
    seed: int = typer.Option(0, help="Seed of the corruptions and of the test subset."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Keep the corrupted test sets in the dataset cache."),
    train_split: str = typer.Option("train", help="Split of the kNN memory and the probe."),
    test_split: str = typer.Option("test", help="Split that is corrupted."),
    arch: Optional[str] = ArchOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    device: str = DeviceOpt,
    out: Optional[Path] = OutOpt,
) -> None:
    """Accuracy under corruption shift (CIFAR-10-C protocol + occlusion): per corruption x severity, mean, drop."""
    from rich.progress import Progress

    from sempairs.eval.corruptions import SEVERITIES
    from sempairs.eval.shift import shift_evaluate
    from sempairs.eval.shift_plots import shift_heatmap

    loaded = _backbone(checkpoint, arch, device)
    dataset, root = _dataset(loaded, data), _root(loaded, root)
    train, test = (load(dataset, split, root, download, loaded.size) for split in (train_split, test_split))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("corrupted test sets", total=None)
        result = shift_evaluate(loaded, train, test, corruptions=corruption, severities=severity or SEVERITIES,
                                 limit=limit, seed=seed, knn_k=k, knn_temperature=temperature, linear=linear, l2=l2,
                                 use_cache=cache, on_set=lambda done, total, label: bar.update(
                                     task, completed=done, total=total, description=f"corrupted test sets ({label})"))
    path = _write(loaded, "shift", {"dataset": dataset, "split": test_split, **result}, out)
    png = shift_heatmap(result, path.parent, path.stem, f"Accuracy under corruption: {_run_name(loaded.path)} on "
                        f"{dataset} {test_split} ({result['test_images']} images, seed {seed})")
    metrics = [m for m in ("knn", "linear") if f"{m}_top1" in result["clean"]]
    severities = result["severities"]
    rows = [["clean", *([""] * len(severities)), *(result["clean"][f"{m}_top1"] for m in metrics)]]
    for name, means in result["per_corruption"].items():
        by_severity = {r["severity"]: r["knn_top1"] for r in result["rows"] if r["corruption"] == name}
        rows.append([name, *(by_severity[s] for s in severities), *(means[f"{m}_top1"] for m in metrics)])
    _table(f"kNN top-1 % per severity, and means over severities ({result['test_images']} {test_split} images)",
           ["corruption", *(f"s{s}" for s in severities), *(f"mean {m} %" for m in metrics)], rows)
    summary = result["summary"]
    _table(f"summary (mean over {len(result['corruptions_in_mean'])} CIFAR-10-C corruptions x {len(severities)} "
           "severities; drop = clean - mean, in points)",
           ["classifier", "clean %", "mean corrupted %", "drop", "occlusion %"],
           [[m, *(_or_dash(summary[f"{m}_{key}"]) for key in SHIFT_SUMMARY)] for m in metrics], path)
    console.print(f"heat-map: {png} (numbers: {png.with_suffix('.csv')})")


@app.command("shift-compare")
def eval_shift_compare(
    results: list[Path] = typer.Argument(..., help="Shift results: eval/shift.json files, run directories or checkpoints."),
    out: Path = typer.Option(..., help="Folder for shift_compare.png and shift_compare.csv."),
    label: Optional[list[str]] = typer.Option(None, help="Legend labels, one per result (default: the run names)."),
    metric: str = typer.Option("knn", help="knn | linear"),
) -> None:
    """Grouped bars of several checkpoints' accuracy per corruption (from their ``eval shift`` results)."""
    from sempairs.eval.shift_plots import shift_comparison

    files = [_shift_json(p) for p in results]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no shift results at {', '.join(missing)}. Fix: run sempairs eval shift on those checkpoints first")
    if label and len(label) != len(files):
        fail(f"give one --label per result ({len(files)}), got {len(label)}")
    loaded = [json.loads(f.read_text()) for f in files]
    names = label or [_run_name(Path(r["checkpoint"])) if "checkpoint" in r else f.stem for r, f in zip(loaded, files)]
    if len(set(names)) < len(names):
        names = [str(f) for f in files]
    png = shift_comparison(loaded, names, out, metric)
    rows = [[n, *(_or_dash(r["summary"].get(f"{metric}_{key}")) for key in SHIFT_SUMMARY)] for n, r in zip(names, loaded)]
    _table(f"{metric} top-1 % under corruption", ["checkpoint", "clean %", "mean corrupted %", "drop", "occlusion %"], rows)
    console.print(f"plot: {png} (numbers: {png.with_suffix('.csv')})")
