"""``sempairs pairs``: build, check and summarise pair files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sempairs.cli.common import DatasetArg, DownloadOpt, RootOpt, SplitOpt, console, fail, load

app = typer.Typer(help="Build, check and summarise pair files.", no_args_is_help=True)


@app.command("from-labels")
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

    store = load(dataset, split, root, download)
    if store.labels is None:
        fail(f"{store.source} ({split}) has no labels; use `pairs mine` or a curated pair file")
    try:
        sp = pairs_from_labels(store.labels, per_class, seed=seed, meta={"dataset": dataset, "split": split})
    except ValueError as exc:
        fail(str(exc))
    sp.save(out, ids=store.ids, class_names=store.class_names)
    console.print(f"wrote {len(sp)} semantic pairs ({len(sp.images())} images) to {out}")
    if match:
        ap = matched_augmented(sp)
        ap.save(match, ids=store.ids, class_names=store.class_names)
        console.print(f"wrote the matched augmented set ({len(ap)} pairs, same classes and counts) to {match}")


@app.command("augmented")
def pairs_augmented_cmd(
    dataset: str = DatasetArg,
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the pairs."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
) -> None:
    """Augmented pairs: two views of every image of the split."""
    from sempairs.pairs import augmented_pairs

    store = load(dataset, split, root, download)
    pairs = augmented_pairs(len(store), labels=store.labels, meta={"dataset": dataset, "split": split})
    pairs.save(out, ids=store.ids, class_names=store.class_names)
    console.print(f"wrote {len(pairs)} augmented pairs to {out}")


@app.command("check")
def pairs_check_cmd(
    file: Path = typer.Argument(..., help="Pair CSV file."),
    data: str = typer.Option(..., "--data", help="Dataset the pairs refer to."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Validate a pair file against a dataset; every problem names its line and the fix."""
    from sempairs.pairs import check_pairs

    store = load(data, split, root, False)
    pairs, problems = check_pairs(file, store)
    for problem in problems:
        console.print(f"{file}:{problem}", highlight=False)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/]; {0 if pairs is None else len(pairs)} usable pairs")
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {len(pairs)} pairs, {len(pairs.images())} images, sources {pairs.sources}")


@app.command("stats")
def pairs_stats_cmd(
    file: Path = typer.Argument(..., help="Pair CSV file."),
    data: str = typer.Option(..., "--data", help="Dataset the pairs refer to."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Counts per source and class, images used, score range and (with labels) semantic precision."""
    from sempairs.pairs import PairFileError, load_pairs, pair_stats

    store = load(data, split, root, False)
    try:
        pairs = load_pairs(file, store)
    except PairFileError as exc:
        fail(f"{exc}\nrun `sempairs pairs check` for details")
    console.print_json(json.dumps(pair_stats(pairs, store.labels, store.class_names)))
