"""``sempairs eval``: evaluate a pretrained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sempairs.cli.common import console, fail, load

app = typer.Typer(help="Evaluate a pretrained checkpoint.", no_args_is_help=True)


@app.command("knn")
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
        fail(str(exc))
    dataset = data or cfg.data.dataset
    size = cfg.data.size
    train_store = load(dataset, train_split, cfg.data.root, False, size)
    test_store = load(dataset, test_split, cfg.data.root, False, size)
    result = knn_evaluate(method.backbone.to(dev), train_store, test_store, size, cfg.augment.mean, cfg.augment.std,
                          k=k, temperature=temperature, channels_last=dev.type == "cuda")
    result["dataset"] = dataset
    out = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "knn.json"
    out.write_text(json.dumps(result, indent=2))
    console.print(f"kNN (k={k}, t={temperature}) on {dataset}: top-1 {result['knn_top1']:.2f}%  top-5 {result['knn_top5']:.2f}%  -> {out}")
