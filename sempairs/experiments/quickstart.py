"""The README's main job: SP vs matched AP SimCLR runs on the embedded default, with kNN."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sempairs.config import load_config
from sempairs.train import train
from sempairs.train.checkpoint import LAST

ARMS = {"SP (semantic pairs from labels)": "labels", "AP (matched augmented pairs)": "augmented"}


def default_config_path() -> Path:
    return Path(str(resources.files("sempairs") / "configs" / "quickstart.yaml"))


def run_quickstart(out_dir: Path, dataset: str, download: bool, console: Console, overrides: list[str] | None = None) -> dict[str, dict]:
    """Train both arms (resuming any that a previous call left unfinished) and print their kNN accuracy."""
    results = {}
    for label, source in ARMS.items():
        cfg = load_config(default_config_path(), [
            f"out_dir={out_dir}", f"name={source}", f"pairs.source={source}", f"data.dataset={dataset}",
            f"data.download={download}", *(overrides or []),
        ])
        console.print(f"[bold]{label}[/]: {cfg.train.epochs} epochs, {cfg.backbone.name}, {cfg.data.size} px -> {cfg.run_dir}")
        result = train(cfg, resume=(cfg.run_dir / LAST).exists())
        results[label] = {"knn": result.knn, "history": result.history, "pairs": result.pairs}
    table = Table("pairs", "pairs trained", "epochs", "final loss", "kNN top-1 (%)", "kNN top-5 (%)",
                  title=f"SimCLR on {dataset}: semantic vs augmented pairs (kNN k={cfg.knn.k} on {result.knn['test_images']} test images)")
    for label, res in results.items():
        hist = res["history"][-1]
        table.add_row(label, str(res["pairs"]), str(hist["epoch"]),
                      f"{hist['loss']:.3f}", f"{res['knn']['knn_top1']:.2f}", f"{res['knn']['knn_top5']:.2f}")
    console.print(table)
    console.print("SP pairs come from the labels: the SP arm is not a self-supervised result. "
                  "A smoke-scale run, not a reproduction of the study.")
    return results
