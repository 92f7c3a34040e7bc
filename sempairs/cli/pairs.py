"""``sempairs pairs``: build, check and summarise pair files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from sempairs.cli.common import DatasetArg, DownloadOpt, ForceOpt, RootOpt, SplitOpt, check_output, console, fail, load
from sempairs.errors import InputError

app = typer.Typer(help="Build, check, mine and summarise pair files.", no_args_is_help=True)

PairFileArg = typer.Argument(..., help="Pair CSV file.")
PairDataOpt = typer.Option(..., "--data", help="Dataset the pairs refer to.")


def _pair_file(file: Path, data: str, split: str, root: Optional[str]):
    """The dataset split and the pair file read against it; a bad file ends the command with its first problem."""
    from sempairs.pairs import PairFileError, load_pairs

    store = load(data, split, root, False)
    try:
        return store, load_pairs(file, store)
    except PairFileError as exc:
        fail(f"{exc}\nrun `sempairs pairs check` for details")


@app.command("from-labels")
def pairs_from_labels_cmd(
    dataset: str = DatasetArg,
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the semantic pairs."),
    per_class: Optional[int] = typer.Option(None, help="Pairs per class (default: every image once)."),
    seed: int = typer.Option(0, help="Random seed."),
    precision: float = typer.Option(1.0, help="Share of same-class pairs; the rest (1 - P) get a positive of another class, seeded."),
    match: Optional[Path] = typer.Option(None, help="Also write the matched augmented-pair (AP) set here."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    force: bool = ForceOpt,
) -> None:
    """Semantic pairs of two different images of one class, from the dataset's labels."""
    from sempairs.pairs import matched_augmented, pairs_from_labels

    if match is not None and os.path.realpath(match) == os.path.realpath(out):
        raise InputError(f"--match {match} is the --out file. Fix: give the matched set its own file")
    check_output(out, dataset, force=force)
    check_output(match, dataset, force=force)
    store = load(dataset, split, root, download)
    if store.labels is None:
        fail(f"{store.source} ({split}) has no labels; use `pairs mine` or a curated pair file")
    sp = pairs_from_labels(store.labels, per_class, seed=seed, meta={"dataset": dataset, "split": split}, precision=precision)
    sp.save(out, store=store)
    shown = f", precision {sp.meta['precision']:.4f} (asked {precision:g})" if "precision" in sp.meta else ""
    console.print(f"wrote {len(sp)} semantic pairs ({len(sp.images())} images{shown}) to {out}")
    if match:
        ap = matched_augmented(sp)
        ap.save(match, store=store)
        console.print(f"wrote the matched augmented set ({len(ap)} pairs, same classes and counts) to {match}")


@app.command("augmented")
def pairs_augmented_cmd(
    dataset: str = DatasetArg,
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the pairs."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    force: bool = ForceOpt,
) -> None:
    """Augmented pairs: two views of every image of the split."""
    from sempairs.pairs import augmented_pairs

    check_output(out, dataset, force=force)
    store = load(dataset, split, root, download)
    pairs = augmented_pairs(len(store), labels=store.labels, meta={"dataset": dataset, "split": split})
    pairs.save(out, store=store)
    console.print(f"wrote {len(pairs)} augmented pairs to {out}")


@app.command("check")
def pairs_check_cmd(
    file: Path = PairFileArg,
    data: str = PairDataOpt,
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
    file: Path = PairFileArg,
    data: str = PairDataOpt,
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Counts per source and class, images used, score range and (with labels) semantic precision."""
    from sempairs.pairs import pair_stats

    store, pairs = _pair_file(file, data, split, root)
    console.print_json(json.dumps(pair_stats(pairs, store.labels, store.class_names)))


def _report(pairs, store, base: Path, title: str) -> dict:
    """Precision report of ``pairs`` written beside ``base`` (.report.json, and .calibration.png with scores)."""
    from sempairs.pairs.report import plot_calibration, precision_report, write_report

    report = precision_report(pairs, store.labels, store.class_names)
    written = [write_report(report, base.with_suffix(".report.json"))]
    if report["calibration"]:
        written += plot_calibration(report, base.with_suffix(".calibration.png"), title=title)
    precision = "n/a (no semantic pairs)" if report["precision"] is None else f"{report['precision']:.3f}"
    console.print(f"precision (same class): {precision} over {report['pairs']} semantic pairs")
    console.print("report: " + ", ".join(str(p) for p in written), highlight=False)
    return report


@app.command("mine")
def pairs_mine_cmd(
    dataset: str = DatasetArg,
    encoder: Path = typer.Option(..., "--encoder", help="sempairs checkpoint (.ckpt or run dir), or a weights file with --arch."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the mined pairs."),
    k: int = typer.Option(1, "--k", help="Neighbours per anchor."),
    threshold: Optional[float] = typer.Option(None, help="Keep pairs with cosine similarity at least this."),
    mutual: bool = typer.Option(False, "--mutual", help="Keep only mutual nearest neighbours."),
    anchors: Optional[int] = typer.Option(None, help="Mine for this many random anchors (default: every image)."),
    seed: int = typer.Option(0, help="Seed for choosing the anchors."),
    duplicate_threshold: float = typer.Option(0.99, help="Skip (and count) neighbours at least this similar, and byte-identical images: near-duplicates."),
    backend: str = typer.Option("auto", help="auto | torch | faiss"),
    arch: Optional[str] = typer.Option(None, help="Architecture of a plain weights file (resnet18, resnet50, timm name)."),
    size: Optional[int] = typer.Option(None, help="Encoder input size in pixels (default: the checkpoint's; 224 or the timm default for plain weights)."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    batch_size: int = typer.Option(256, help="Images per forward pass."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
    download: bool = DownloadOpt,
    force: bool = ForceOpt,
) -> None:
    """SePP-ID semantic sampler: pairs of nearest neighbours in a pretrained encoder's embedding."""
    from sempairs.trained.loading import load_backbone
    from sempairs.pairs.mine import check_similarity, embed, mine_pairs

    if backend not in ("auto", "torch", "faiss"):
        fail(f"--backend {backend}: use auto, torch or faiss")
    check_similarity("--threshold", threshold)
    check_similarity("--duplicate-threshold", duplicate_threshold)
    if arch is not None and encoder.is_dir():
        fail(f"--encoder {encoder} is a run folder, whose checkpoint records its architecture; --arch {arch} names the "
             "architecture of a plain weights file. Fix: drop --arch, or give the weights file")
    check_output(out, dataset, encoder, force=force)
    enc = load_backbone(encoder, arch)
    size = size or enc.size
    store = load(dataset, split, root, download, size)
    emb = embed(store, enc, size, enc.mean, enc.std, device, batch_size)
    try:
        pairs = mine_pairs(emb, k, threshold, mutual, anchors, duplicate_threshold, backend, seed=seed, images=store.images,
                           meta={"encoder": str(encoder), "encoder_arch": enc.arch, "encoder_size": size,
                                 "dataset": dataset, "split": split})
    except ImportError as exc:  # --backend faiss without faiss installed
        fail(str(exc))
    counts = pairs.meta["counts"]
    if not len(pairs):
        fail(f"no pair passed the rules ({pairs.meta['rule']}; counts {counts}): lower --threshold, raise --k or drop --mutual")
    pairs.save(out, store=store)
    console.print(f"wrote {len(pairs)} mined pairs to {out} ({pairs.meta['rule']}; {pairs.meta['backend']} search)")
    console.print(f"anchors covered: {counts['anchors_with_pair']}/{counts['anchors']}; dropped: "
                  f"{counts['below_threshold']} below threshold, {counts['not_mutual']} not mutual, "
                  f"{counts['reversed_duplicates']} reversed duplicates; near-duplicates skipped: "
                  f"{counts['near_duplicate_pairs']} pairs ({counts['anchors_with_near_duplicate']} anchors)")
    if store.labels is not None:
        _report(pairs, store, out, f"{out.name}: {pairs.meta['rule']}")


@app.command("report")
def pairs_report_cmd(
    file: Path = PairFileArg,
    data: str = PairDataOpt,
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Precision of a pair file against the dataset's labels: overall, per class, by score; JSON + PNG beside it.

    The calibration plot needs the file's score column (mined pairs have one).
    """
    store, pairs = _pair_file(file, data, split, root)
    if store.labels is None:
        fail(f"{store.source} ({split}) has no labels: precision needs a labelled dataset")
    report = _report(pairs, store, file, file.name)
    if "precision_requested" in pairs.meta:
        console.print(f"precision asked when built: {pairs.meta['precision_requested']:g} (recorded: {pairs.meta['precision']:.4f})")
    console.print(f"anchors covered: {report['anchors_with_pair']}/{report['anchors']}")
