"""The ``sempairs`` command line: datasets, pairs, train, eval, quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sempairs.cli import eval as eval_commands
from sempairs.cli import experiment as experiment_commands
from sempairs.cli import pairs as pairs_commands
from sempairs.cli.common import DownloadOpt, console, fail

app = typer.Typer(help="Self-supervised learning with semantic positive pairs.", no_args_is_help=True, add_completion=False)
app.add_typer(pairs_commands.app, name="pairs")
app.add_typer(eval_commands.app, name="eval")
app.command()(experiment_commands.experiment)


@app.command()
def datasets() -> None:
    """List the named datasets and where local copies were found."""
    from sempairs.data.registry import list_datasets

    table = Table("name", "classes", "splits", "found at")
    table.columns[3].overflow = "fold"
    for row in list_datasets():
        table.add_row(str(row["name"]), str(row["num_classes"]), ", ".join(row["splits"]),
                      str(row["found"] or "not found (set SEMPAIRS_DATA or use --download)"))
    console.print(table)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config (defaults if omitted)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
) -> None:
    """Pretrain: sempairs train CONFIG.yaml section.key=value ... (overrides optional)."""
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
        fail(str(exc))
    try:
        result = run_training(cfg, resume=resume)
    except (TrainingStopped, FileExistsError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if result.knn:
        console.print(f"kNN top-1 {result.knn['knn_top1']:.2f}%  top-5 {result.knn['knn_top5']:.2f}%  ({result.run_dir})")


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
        fail(str(exc))
