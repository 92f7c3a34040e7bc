"""The ``sempairs`` command line: datasets, pairs, train, eval, quickstart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Self-supervised learning with semantic positive pairs.", no_args_is_help=True, add_completion=False)
pairs_app = typer.Typer(help="Build, check and summarise pair files.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a pretrained checkpoint.", no_args_is_help=True)
app.add_typer(pairs_app, name="pairs")
app.add_typer(eval_app, name="eval")
console = Console()


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _load(dataset: str, split: str, root: Optional[str], download: bool, size: Optional[int] = None):
    from sempairs.data.registry import load_dataset

    try:
        return load_dataset(dataset, split=split, size=size, download=download, root=root)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


DatasetArg = typer.Argument(..., help="cifar10 | cifar100 | stl10 | image folder | zip of one | .npz")
SplitOpt = typer.Option("train", help="Split of the dataset the pairs index.")
RootOpt = typer.Option(None, help="Folder holding (or to receive) the dataset.")
DownloadOpt = typer.Option(False, "--download", help="Download torchvision datasets if not found locally.")


@app.command()
def datasets() -> None:
    """List the named datasets and where local copies were found."""
    from sempairs.data.registry import list_datasets

    table = Table("name", "classes", "splits", "found at", "description")
    for row in list_datasets():
        table.add_row(str(row["name"]), str(row.get("num_classes", "")), ", ".join(row.get("splits", [])),
                      str(row.get("found") or "not found (set SEMPAIRS_DATA or use --download)"), str(row.get("description", "")))
    console.print(table)


@pairs_app.command("from-labels")
def pairs_from_labels_cmd(
    dataset: str = DatasetArg,
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the semantic pairs."),
    per_class: Optional[int] = typer.Option(None, help="Pairs per class (default: every image once)."),
    seed: int = typer.Option(0, help="Random seed."),
    match: Optional[Path] = typer.Option(None, help="Also write the matched augmented-pair (AP) set here."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
) -> None:
    """Semantic pairs of two different images of one class, from the dataset's labels."""
    from sempairs.pairs import matched_augmented, pairs_from_labels

    store = _load(dataset, split, root, download)
    if store.labels is None:
        _fail(f"{store.source} ({split}) has no labels; use `pairs mine` or a curated pair file")
    try:
        sp = pairs_from_labels(store.labels, per_class, seed=seed, meta={"dataset": dataset, "split": split})
    except ValueError as exc:
        _fail(str(exc))
    sp.save(out, ids=store.ids, class_names=store.class_names)
    console.print(f"wrote {len(sp)} semantic pairs ({len(sp.images())} images) to {out}")
    if match:
        ap = matched_augmented(sp)
        ap.save(match, ids=store.ids, class_names=store.class_names)
        console.print(f"wrote the matched augmented set ({len(ap)} pairs, same classes and counts) to {match}")


@pairs_app.command("augmented")
def pairs_augmented_cmd(
    dataset: str = DatasetArg,
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the pairs."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
) -> None:
    """Augmented pairs: two views of every image of the split."""
    from sempairs.pairs import augmented_pairs

    store = _load(dataset, split, root, download)
    pairs = augmented_pairs(len(store), labels=store.labels, meta={"dataset": dataset, "split": split})
    pairs.save(out, ids=store.ids, class_names=store.class_names)
    console.print(f"wrote {len(pairs)} augmented pairs to {out}")


@pairs_app.command("check")
def pairs_check_cmd(
    file: Path = typer.Argument(..., help="Pair CSV file."),
    data: str = typer.Option(..., "--data", help="Dataset the pairs refer to."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Validate a pair file against a dataset; every problem names its line and the fix."""
    from sempairs.pairs import check_pairs

    store = _load(data, split, root, False)
    pairs, problems = check_pairs(file, store)
    for problem in problems:
        console.print(f"{file}:{problem}", highlight=False)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/]; {0 if pairs is None else len(pairs)} usable pairs")
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {len(pairs)} pairs, {len(pairs.images())} images, sources {pairs.sources}")


@pairs_app.command("stats")
def pairs_stats_cmd(
    file: Path = typer.Argument(..., help="Pair CSV file."),
    data: str = typer.Option(..., "--data", help="Dataset the pairs refer to."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Counts per source and class, images used, score range and (with labels) semantic precision."""
    from sempairs.pairs import PairFileError, load_pairs, pair_stats

    store = _load(data, split, root, False)
    try:
        pairs = load_pairs(file, store)
    except PairFileError as exc:
        _fail(f"{exc}\nrun `sempairs pairs check` for details")
    console.print_json(json.dumps(pair_stats(pairs, store.labels, store.class_names)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config (defaults if omitted)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
) -> None:
    """Pretrain: sempairs train CONFIG.yaml [section.key=value ...]."""
    from sempairs.config import ConfigError, load_config
    from sempairs.train import TrainingStopped
    from sempairs.train import train as run_training

    overrides = list(ctx.args)
    if config is not None and "=" in str(config) and not config.exists():
        overrides.insert(0, str(config))  # no config file, only overrides
        config = None
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    try:
        result = run_training(cfg, resume=resume)
    except (TrainingStopped, FileExistsError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if result.knn:
        console.print(f"kNN top-1 {result.knn['knn_top1']:.2f}%  top-5 {result.knn['knn_top5']:.2f}%  ({result.run_dir})")


@eval_app.command("knn")
def eval_knn(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file or a run directory."),
    data: Optional[str] = typer.Option(None, help="Labelled dataset (default: the run's)."),
    k: int = typer.Option(200, help="Neighbours."),
    temperature: float = typer.Option(0.1, help="Vote temperature."),
    train_split: str = typer.Option("train", help="Memory split."),
    test_split: str = typer.Option("test", help="Query split."),
    device: str = typer.Option("auto", help="cpu | cuda | auto"),
) -> None:
    """Weighted kNN accuracy of a checkpoint's backbone; writes knn.json beside the checkpoint."""
    import torch

    from sempairs.eval.protocol import knn_evaluate
    from sempairs.train import load_method

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    try:
        method, cfg = load_method(checkpoint, map_location="cpu")
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    dataset = data or cfg.data.dataset
    size = cfg.data.size
    train_store = _load(dataset, train_split, cfg.data.root, False, size)
    test_store = _load(dataset, test_split, cfg.data.root, False, size)
    result = knn_evaluate(method.backbone.to(dev), train_store, test_store, size, cfg.augment.mean, cfg.augment.std,
                          k=k, temperature=temperature, channels_last=dev.type == "cuda")
    result["dataset"] = dataset
    out = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "knn.json"
    out.write_text(json.dumps(result, indent=2))
    console.print(f"kNN (k={k}, t={temperature}) on {dataset}: top-1 {result['knn_top1']:.2f}%  top-5 {result['knn_top5']:.2f}%  -> {out}")


@app.command()
def quickstart(
    out_dir: Path = typer.Option(Path("runs/quickstart"), help="Where the runs go."),
    dataset: str = typer.Option("cifar10", help="Labelled dataset (found locally, or --download)."),
    download: bool = DownloadOpt,
) -> None:
    """A short SimCLR comparison: semantic pairs (from labels) vs matched augmented pairs, kNN on test."""
    from sempairs.config import ConfigError
    from sempairs.experiments.quickstart import run_quickstart

    try:
        run_quickstart(out_dir, dataset, download, console)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


if __name__ == "__main__":
    app()
