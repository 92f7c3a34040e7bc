"""``sempairs eval``: evaluate a pretrained checkpoint (or plain torchvision/timm weights with --arch).

Every command writes its results as JSON to ``<run_dir>/eval/<protocol>.json`` (for a checkpoint
other than ``last.ckpt``: ``<run_dir>/eval/<checkpoint stem>-<protocol>.json``; ``--out``
overrides; see :func:`sempairs.eval.results.result_path`) and prints a table. ``knn`` evaluates
the run's own selection and settings unless told otherwise, through the training loop's path, and
names its file by them, ``eval/knn-<key>.json``: on the run's own selection it is the file the
training loop's final kNN writes, on another a file of its own; ``shift`` also writes a heat-map
(PNG, with the CSV of its numbers) beside its JSON, and ``shift-compare`` plots several ``shift``
results side by side. Features are cached in ``features/`` beside the checkpoint.

A command that evaluates a checkpoint is a function ``f(run: Evaluation, <its own options>)``
registered with :func:`evaluation_command`, which gives the command the checkpoint argument and
the options such commands share (``--data``, ``--arch``, ``--root``, ``--download``, ``--device``,
``--out``), loads the backbone and hands ``f`` the :class:`Evaluation`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sempairs.cli.common import DownloadOpt, ForceOpt, RootOpt, check_output, console, fail
from sempairs.errors import InputError

app = typer.Typer(help="Evaluate a pretrained checkpoint.", no_args_is_help=True)

CheckpointArg = typer.Argument(..., help="A .ckpt file, a run directory, or a plain weights file (with --arch).")
ArchOpt = typer.Option(None, help="Architecture of a plain weights file: resnet18 | resnet50 | a timm model name.")
DataOpt = typer.Option(None, help="Labelled dataset (default: the run's).")
DeviceOpt = typer.Option("auto", help="cpu | cuda | auto")
OutOpt = typer.Option(None, help="JSON file for the results (default: <run_dir>/eval/<protocol>[-<key>].json).")
SeedOpt = typer.Option(0, help="Random seed.")
L2Opt = typer.Option(None, help="Fixed L2 strength (default: chosen on a held-out part of the train split).")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One evaluation command on a checkpoint: the backbone (a :class:`sempairs.trained.loading.LoadedBackbone`, on
    its device), the dataset options, where the results go, and when the command started (``perf_counter``)."""

    loaded: LoadedBackbone  # noqa: F821 (sempairs.trained.loading: imported where a command runs, not at CLI start)
    started: float
    out: Optional[Path] = None
    data: Optional[str] = None
    root: Optional[str] = None
    download: bool = False
    force: bool = False

    @classmethod
    def start(cls, checkpoint: Path, arch: Optional[str] = None, device: str = "auto", **options) -> Evaluation:
        """Start the clock, then load the backbone in ``checkpoint`` onto ``device``; ``options`` are the other fields
        (the command's ``--out``, ``--force``, ``--data``, ``--root``, ``--download``); an existing ``--out`` without
        ``--force`` is refused before any work."""
        from sempairs.trained.loading import load_backbone

        check_output(options.get("out"), checkpoint if checkpoint.is_file() else None, force=options.get("force", False))
        started = time.perf_counter()
        loaded = load_backbone(checkpoint, arch)
        loaded.module.to(_device(device))
        return cls(loaded, started, **options)

    @property
    def device(self):
        """The device the backbone is on."""
        return next(self.loaded.module.parameters()).device

    @property
    def dataset(self) -> str:
        """The labelled dataset: ``--data``, else the run's (a plain weights file needs ``--data``)."""
        if self.data is not None:
            return self.data
        if self.loaded.config is None:
            fail(f"{self.loaded.path} is a plain weights file: give the dataset to evaluate on with --data")
        return self.loaded.config.data.dataset

    @property
    def dataset_root(self) -> Optional[str]:
        """The folder of :attr:`dataset`: ``--root``, else the run's."""
        return self.root if self.root is not None or self.loaded.config is None else self.loaded.config.data.root

    def load(self, split: str):
        """A split of :attr:`dataset` at the backbone's resolution."""
        from sempairs.eval.selection import load_split, whole_dataset

        return load_split(whole_dataset(self.dataset, self.loaded.size, self.dataset_root, self.download), split, None)

    def features(self, train_split: str, test_split: str):
        """``(features, labels, class names, source)`` of the two splits of :attr:`dataset` (cached)."""
        from sempairs.eval.transfer import labelled_features

        return [labelled_features(self.loaded, self.dataset, split, self.dataset_root, self.download)
                for split in (train_split, test_split)]

    @property
    def feature_batch_size(self) -> int:
        """Images per forward pass: the run's ``features.batch_size`` (1024 for a plain weights file)."""
        return self.loaded.config.features.batch_size if self.loaded.config is not None else 1024

    def knn_selection(self, classes: Optional[str] = None, k: Optional[int] = None, temperature: Optional[float] = None,
                      **data: Optional[int | str]):
        """The kNN :class:`sempairs.eval.protocol.Selection` of this command: the run's own data selection and ``knn``
        settings (another ``--data`` or a plain weights file: every image of the dataset, k=200, t=0.1), with the
        options given instead (``classes``: seen | unseen | all | comma-separated names; a limit of 0: every image);
        validated by the run config's rules (a ConfigError names the key)."""
        from sempairs.eval.protocol import Selection
        from sempairs.eval.selection import other_classes

        config = self.loaded.config
        own = config is not None and self.data in (None, config.data.dataset)
        tree = config.data.model_dump() if own else {"dataset": self.dataset, "root": self.dataset_root}
        tree.update(size=self.loaded.size, download=self.download, **{key: value for key, value in data.items()
                                                                       if value is not None})
        tree.update({key: None for key in ("limit_per_class", "test_limit_per_class") if tree.get(key) == 0})
        if self.root is not None:
            tree["root"] = self.root
        if classes not in (None, "seen", "unseen"):
            tree["classes"] = None if classes == "all" else [c.strip() for c in classes.split(",") if c.strip()]
        knn = config.knn.model_dump(exclude={"every"}) if config is not None else {}
        knn.update({key: value for key, value in (("k", k), ("temperature", temperature)) if value is not None})
        selection = Selection.checked(tree, knn, f"sempairs eval knn {self.loaded.path}: --train-split is data.split, "
                                                 "--test-split data.test_split, --k knn.k")
        if classes == "unseen":
            selection = selection.model_copy(update={"data": other_classes(selection.data)})
        return selection

    def write(self, protocol: str, result: dict, path: Optional[Path] = None) -> Path:
        """Write ``result`` with the checkpoint, protocol and timing to ``--out`` (default: ``path``, else the
        protocol's result file), print the time taken since :meth:`start`, and return the path."""
        import torch

        from sempairs.eval.results import result_path, write_result

        out = self.out or path or result_path(self.loaded.path, protocol)
        check_output(out, self.loaded.path, force=self.force or self.out is None)  # the protocol's own file is updated
        device = self.device
        timing = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  "wall_seconds": round(time.perf_counter() - self.started, 2), "date": datetime.date.today().isoformat()}
        write_result(out, {"checkpoint": str(self.loaded.path), "protocol": protocol, **result, **timing})
        console.print(f"{protocol}: {timing['wall_seconds']:.1f} s on {timing['device']} (loading, features, fitting)")
        return out


def _parameter(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


CHECKPOINT = _parameter("checkpoint", Path, CheckpointArg)
DATA = _parameter("data", Optional[str], DataOpt)
ARCH = _parameter("arch", Optional[str], ArchOpt)
DATASET_FOLDER = (_parameter("root", Optional[str], RootOpt), _parameter("download", bool, DownloadOpt))
DEVICE_OUT = (_parameter("device", str, DeviceOpt), _parameter("out", Optional[Path], OutOpt),
              _parameter("force", bool, ForceOpt))


def evaluation_command(name: str, data: bool = True, dataset_folder: bool = True):
    """Register ``function(run: Evaluation, **own_options)`` as ``sempairs eval NAME``. Its options, in this order in
    ``--help``: the checkpoint argument, ``--data`` (if ``data``), the function's own, ``--arch``, ``--root`` and
    ``--download`` (if ``dataset_folder``), ``--device``, ``--out``, ``--force``. The command loads the backbone and calls it."""

    def register(function):
        own = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for parameter in list(inspect.signature(function, eval_str=True).parameters.values())[1:]]
        shared_before = [CHECKPOINT, *([DATA] if data else [])]
        shared_after = [ARCH, *(DATASET_FOLDER if dataset_folder else ()), *DEVICE_OUT]
        shared = {parameter.name for parameter in shared_before + shared_after}

        @functools.wraps(function)
        def command(**options) -> None:
            run = Evaluation.start(**{key: options.pop(key) for key in shared})
            function(run, **options)

        command.__signature__ = inspect.Signature([*shared_before, *own, *shared_after])
        return app.command(name)(command)

    return register


def _table(title: str, columns: list[str], rows: list[list], path: Optional[Path] = None) -> None:
    """Print ``rows`` as a table (floats with 2 decimals), then where the results were written."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if path is not None:
        console.print(f"results: {path}")


def _classes(value: Optional[str]) -> Optional[str]:
    """``--classes``, checked before the backbone is loaded."""
    if value is not None and not [c for c in value.split(",") if c.strip()]:
        fail("--classes is empty: give seen | unseen | all | comma-separated class names")
    return value


@evaluation_command("knn")
def eval_knn(
    run: Evaluation,
    k: Optional[int] = typer.Option(None, help="Neighbours (default: the run's knn.k, else 200)."),
    temperature: Optional[float] = typer.Option(None, help="Vote temperature (default: the run's knn.temperature, else 0.1)."),
    classes: Optional[str] = typer.Option(None, help="seen (the run's data.classes: default) | unseen (the dataset's other "
                                                     "classes) | all | comma-separated class names.", callback=_classes),
    limit_per_class: Optional[int] = typer.Option(None, help="Memory images per class (default: the run's; 0: all)."),
    test_limit_per_class: Optional[int] = typer.Option(None, help="Query images per class (default: the run's; 0: all)."),
    train_split: Optional[str] = typer.Option(None, help="Memory split (default: the run's data.split)."),
    test_split: Optional[str] = typer.Option(None, help="Query split, test or heldout (default: the run's data.test_split)."),
) -> None:
    """Weighted kNN accuracy of the backbone on the run's own selection and settings, or on the ones given; writes
    eval/knn-<key>.json beside the checkpoint (the key names the selection and settings)."""
    from sempairs.eval.protocol import knn_evaluate
    from sempairs.eval.results import result_path

    selection = run.knn_selection(k=k, temperature=temperature, classes=classes, limit_per_class=limit_per_class,
                                  test_limit_per_class=test_limit_per_class, split=train_split, test_split=test_split)
    result = knn_evaluate(run.loaded, selection, batch_size=run.feature_batch_size, channels_last=run.device.type == "cuda")
    path = run.write("knn", result, result_path(run.loaded.path, "knn", selection.key))
    console.print(f"kNN (k={result['knn_k']}, t={result['knn_temperature']}) on {run.dataset}, "
                  f"{result['train_images']} memory / {result['test_images']} query images: top-1 {result['knn_top1']:.2f}%  "
                  f"top-5 {result['knn_top5']:.2f}%  -> {path}")


@evaluation_command("linear")
def eval_linear(
    run: Evaluation,
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
) -> None:
    """Linear probe: logistic regression on frozen features (or SGD on augmented views with --augmented)."""
    loaded, dataset = run.loaded, run.dataset
    if augmented:
        from sempairs.eval.linear import linear_probe_augmented

        result = linear_probe_augmented(loaded.module, run.load(train_split), run.load(test_split), loaded.size,
                                         loaded.mean, loaded.std, epochs=epochs, batch_size=batch_size, lr=lr,
                                         seed=seed)
        path = run.write("linear_augmented", {**result, "dataset": dataset})
        _table(f"augmented linear probe on {dataset}", ["top-1 %", "top-5 %", "epochs"],
               [[result["linear_aug_top1"], result["linear_aug_top5"], epochs]], path)
        return
    from sempairs.eval.linear import linear_probe

    (train_x, train_y, names, _), (test_x, test_y, _, _) = run.features(train_split, test_split)
    result = linear_probe(train_x, train_y, test_x, test_y, len(names), l2=l2, val_fraction=val_fraction,
                           seed=seed, max_iter=max_iter)
    path = run.write("linear", {**result, "dataset": dataset})
    if result["linear_val_curve"]:
        _table("L2 selection (validation part of the train split)", ["L2", "val top-1 %"],
               [[f"{p['l2']:.1e}", p["val_top1"]] for p in result["linear_val_curve"]])
    _table(f"linear probe on {dataset}", ["top-1 %", "top-5 %", "L2"],
           [[result["linear_top1"], result["linear_top5"], f"{result['linear_l2']:.1e}"]], path)


@evaluation_command("fewshot")
def eval_fewshot(
    run: Evaluation,
    fraction: Optional[list[float]] = typer.Option(None, help="Fraction of labels per class (repeatable; default 0.01 and 0.1)."),
    per_class: Optional[list[int]] = typer.Option(None, help="Labelled images per class (repeatable)."),
    seeds: int = typer.Option(3, help="Subsets drawn per setting (seeds 0..N-1)."),
    l2: Optional[float] = L2Opt,
    max_iter: int = typer.Option(300, help="L-BFGS iterations per fit."),
) -> None:
    """Linear probe on balanced few-label subsets of the train split: mean and std over seeds."""
    from sempairs.eval.fewshot import fewshot_probe

    (train_x, train_y, names, _), (test_x, test_y, _, _) = run.features("train", "test")
    fractions = fraction or ([] if per_class else [0.01, 0.1])
    result = fewshot_probe(train_x, train_y, test_x, test_y, len(names), fractions=fractions,
                            per_class=per_class or [], seeds=list(range(seeds)), l2=l2, max_iter=max_iter)
    path = run.write("fewshot", {"dataset": run.dataset, "settings": result})
    _table(f"few-label linear probe on {run.dataset} ({seeds} seeds)", ["labels", "images", "top-1 %", "top-5 %"],
           [[name, r["runs"][0]["labelled_images"], f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}",
             f"{r['top5_mean']:.2f} ± {r['top5_std']:.2f}"] for name, r in result.items()], path)


@evaluation_command("transfer", data=False)
def eval_transfer(
    run: Evaluation,
    data: Optional[list[str]] = typer.Option(None, help="Datasets (repeatable): cifar10 | cifar100 | stl10 | a path. "
                                                        "Default: the run's."),
    classes: Optional[str] = typer.Option(None, help="seen | unseen | comma-separated class names "
                                                     "(default: all, plus seen/unseen for class-subset runs)."),
    k: int = typer.Option(200, help="kNN neighbours."),
    linear: bool = typer.Option(True, "--linear/--no-linear", help="Also run the linear probe."),
    l2: Optional[float] = L2Opt,
) -> None:
    """kNN + linear probe on several datasets (at the pretraining resolution) and class subsets."""
    from sempairs.eval.transfer import transfer_evaluate

    subset = classes if classes in (None, "seen", "unseen") else [c.strip() for c in classes.split(",") if c.strip()]
    result = transfer_evaluate(run.loaded, data or [run.dataset], subset, root=run.dataset_root, download=run.download,
                                knn_k=k, linear=linear, l2=l2)
    path = run.write("transfer", {"datasets": result})
    rows = [[dataset, group, len(r["classes"]), r["knn_top1"], r.get("linear_top1", "-")]
            for dataset, groups in result.items() for group, r in groups.items()]
    _table("transfer", ["dataset", "classes", "n", "kNN top-1 %", "linear top-1 %"], rows, path)


def _norm(value: str) -> str:
    """``--norm``, checked before the backbone is loaded."""
    if value not in ("frozen", "batch"):
        fail(f"--norm must be frozen or batch, got {value!r}")
    return value


@evaluation_command("detect", data=False, dataset_folder=False)
def eval_detect(
    run: Evaluation,
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
    norm: str = typer.Option("frozen", help="frozen | batch: BatchNorm frozen to the pretrained statistics, or trained.",
                             callback=_norm),
    reinit_stem: bool = typer.Option(False, "--reinit-stem", help="Small-stem checkpoints: train a fresh 7x7 stem."),
    seed: int = SeedOpt,
) -> None:
    """Faster R-CNN (ResNet-FPN) from the backbone, fine-tuned on VOC-format data: box AP, AP50, AP75."""
    from rich.progress import Progress

    from sempairs.eval.detection import detection_evaluate

    options = {"box_batch_size_per_image": rois}
    if proposals is not None:
        options.update(rpn_post_nms_top_n_train=proposals, rpn_post_nms_top_n_test=proposals)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=iterations)
        result = detection_evaluate(run.loaded, voc, voc_test or voc[:1], train_set, test_set, iterations,
                                     batch_size, lr, min_size, max_size, norm, "reinit" if reinit_stem else "refuse", seed,
                                     run.device, detector_options=options,
                                     on_step=lambda step, loss: bar.update(
                                         task, completed=step, description=f"fine-tuning (loss {loss:.3f})"))
    path = run.write("detect", {"voc": [str(v) for v in voc], **result})
    _table(f"detection ({iterations} iterations)", ["AP", "AP50", "AP75"],
           [[result["AP"], result["AP50"], result["AP75"]]], path)


@evaluation_command("invariance")
def eval_invariance(
    run: Evaluation,
    split: str = typer.Option("test", help="Split whose images are perturbed."),
    limit: int = typer.Option(1000, help="Images used (the first N of the split)."),
    probe: Optional[list[str]] = typer.Option(None, help="Probes (repeatable; default all): occlusion | background | "
                                                        "background_noise | pattern | brightness | gamma."),
    strength: Optional[list[float]] = typer.Option(None, help="Strengths in [0, 1] (repeatable; default 0 .25 .5 .75)."),
    seed: int = SeedOpt,
) -> None:
    """Mean cosine similarity of embeddings of images and their perturbed versions, per probe and strength."""
    from sempairs.eval.invariance import PROBES, invariance

    loaded, store = run.loaded, run.load(split)
    images = store.subset(range(min(limit, len(store)))).tensor()
    strengths = strength or [0.0, 0.25, 0.5, 0.75]
    result = invariance(loaded.module, images, loaded.size, loaded.mean, loaded.std, probe or list(PROBES),
                         strengths, seed)
    path = run.write("invariance", {"dataset": run.dataset, "split": split, "images": len(images), "probes": result})
    keys = list(next(iter(result.values())))
    _table(f"invariance (mean cosine similarity, {len(images)} images)", ["probe", *keys],
           [[name, *(f"{per[key]:.4f}" for key in keys)] for name, per in result.items()], path)


SHIFT_SUMMARY = ("clean", "mean_corruption", "drop", "occlusion")


def _or_dash(value):
    return "-" if value is None else value


def _run_name(checkpoint: Path) -> str:
    """A checkpoint's short name: its run directory for ``last.ckpt``, else its file stem."""
    return checkpoint.parent.name if checkpoint.name == "last.ckpt" else checkpoint.stem


@evaluation_command("shift")
def eval_shift(
    run: Evaluation,
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
) -> None:
    """Accuracy under corruption shift (CIFAR-10-C protocol + occlusion): per corruption x severity, mean, drop."""
    from rich.progress import Progress

    from sempairs.eval.corruptions import SEVERITIES
    from sempairs.eval.shift import shift_evaluate
    from sempairs.eval.shift_plots import shift_heatmap

    dataset, train, test = run.dataset, run.load(train_split), run.load(test_split)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("corrupted test sets", total=None)
        result = shift_evaluate(run.loaded, train, test, corruptions=corruption, severities=severity or SEVERITIES,
                                 limit=limit, seed=seed, knn_k=k, knn_temperature=temperature, linear=linear, l2=l2,
                                 use_cache=cache, on_set=lambda done, total, label: bar.update(
                                     task, completed=done, total=total, description=f"corrupted test sets ({label})"))
    path = run.write("shift", {"dataset": dataset, "split": test_split, **result})
    png = shift_heatmap(result, path.parent, path.stem, f"Accuracy under corruption: {_run_name(run.loaded.path)} on "
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


def _shift_json(path: Path) -> Path:
    """The shift results of ``path``: a JSON file, a run directory (its last.ckpt) or a checkpoint file."""
    from sempairs.eval.results import result_path

    if path.suffix == ".json":
        return path
    return result_path(path / "last.ckpt" if path.is_dir() else path, "shift")


def _read_shift(path: Path) -> dict:
    """The ``eval shift`` results in the JSON file ``path`` (InputError if it is not one)."""
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a JSON file of shift results ({exc}). "
                         "Fix: give the eval/shift.json that sempairs eval shift wrote") from None


SHIFT_COMPARE = "shift_compare"  # the name of the files shift-compare writes


@app.command("shift-compare")
def eval_shift_compare(
    results: list[Path] = typer.Argument(..., help="Shift results: eval/shift.json files, run directories or checkpoints."),
    out: Path = typer.Option(..., help="Folder for shift_compare.png and shift_compare.csv."),
    label: Optional[list[str]] = typer.Option(None, help="Legend labels, one per result (default: the run names)."),
    metric: str = typer.Option("knn", help="knn | linear"),
    force: bool = ForceOpt,
) -> None:
    """Grouped bars of several checkpoints' accuracy per corruption (from their ``eval shift`` results)."""
    from sempairs.eval.shift_plots import shift_comparison

    files = [_shift_json(p) for p in results]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no shift results at {', '.join(missing)}. Fix: run sempairs eval shift on those checkpoints first")
    for written in (out / f"{SHIFT_COMPARE}.png", out / f"{SHIFT_COMPARE}.csv"):
        check_output(written, *files, force=force)
    if label and len(label) != len(files):
        fail(f"give one --label per result ({len(files)}), got {len(label)}")
    loaded = [_read_shift(f) for f in files]
    names = label or [_run_name(Path(r["checkpoint"])) if "checkpoint" in r else f.stem for r, f in zip(loaded, files)]
    if len(set(names)) < len(names):
        names = [str(f) for f in files]
    png = shift_comparison(loaded, names, out, metric, SHIFT_COMPARE)
    rows = [[n, *(_or_dash(r["summary"].get(f"{metric}_{key}")) for key in SHIFT_SUMMARY)] for n, r in zip(names, loaded)]
    _table(f"{metric} top-1 % under corruption", ["checkpoint", "clean %", "mean corrupted %", "drop", "occlusion %"], rows)
    console.print(f"plot: {png} (numbers: {png.with_suffix('.csv')})")
