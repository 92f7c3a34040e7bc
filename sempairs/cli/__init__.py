"""The ``sempairs`` command line: datasets, pairs, train, eval, export, quickstart, config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sempairs.cli import config as config_commands
from sempairs.cli import eval as eval_commands
from sempairs.cli import experiment as experiment_commands
from sempairs.cli import export as export_commands
from sempairs.cli import pairs as pairs_commands
from sempairs.cli import review as review_commands
from sempairs.cli.common import DownloadOpt, ErrorReportingGroup, console, error_console, fail

app = typer.Typer(help="Self-supervised learning with semantic positive pairs.", no_args_is_help=True, add_completion=False,
                  cls=ErrorReportingGroup)
app.add_typer(pairs_commands.app, name="pairs")
app.add_typer(eval_commands.app, name="eval")
app.add_typer(review_commands.app, name="review")
app.add_typer(config_commands.app, name="config")
app.command()(experiment_commands.experiment)
app.command()(export_commands.export)


@app.command()
def datasets() -> None:
    """List the named datasets and where local copies were found (one line each, paths never wrapped)."""
    from sempairs.data.registry import list_datasets

    lines = [f"{'name':<9} {'classes':>7}  {'splits':<24} found at"]
    for row in list_datasets():
        found = row["found"] or "not found (set SEMPAIRS_DATA or use --download)"
        lines.append(f"{row['name']:<9} {row['num_classes']:>7}  {', '.join(row['splits']):<24} {found}")
    console.print("\n".join(lines), highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config (defaults if omitted)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint; start it if it has "
                                "none. --resume auto (or train.resume=auto) says the same."),
) -> None:
    """Pretrain: sempairs train CONFIG.yaml section.key=value ... (overrides optional).

    After SIGUSR1 or SIGTERM (a preemption) the run writes a checkpoint where it is and exits with status 75;
    the same command with --resume auto continues it.
    """
    from sempairs.config import load_config
    from sempairs.train import TrainingStopped
    from sempairs.train import train as run_training
    from sempairs.train.preemption import PREEMPTED_STATUS, Preempted

    overrides = list(ctx.args)
    if resume and str(config) == "auto" and not config.exists():
        config = None  # --resume auto without a config: the word is --resume's
    elif resume and "auto" in overrides:
        overrides.remove("auto")
    if config is not None and "=" in str(config) and not config.exists():
        overrides.insert(0, str(config))  # no config file, only overrides
        config = None
    cfg = load_config(config, overrides)
    try:
        result = run_training(cfg, resume=True if resume else None)  # None: train.resume decides
    except TrainingStopped as exc:
        if exc.rank:  # every process stopped at the same step; process 0 reports it and sets the exit status
            raise typer.Exit(0) from None
        fail(str(exc))
    except Preempted as exc:  # every process stopped after the same step, with the same status
        if not exc.rank:
            error_console.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(PREEMPTED_STATUS) from None
    if result.knn and result.rank == 0:
        console.print(f"kNN top-1 {result.knn['knn_top1']:.2f}%  top-5 {result.knn['knn_top5']:.2f}%  ({result.run_dir})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def quickstart(
    ctx: typer.Context,
    out_dir: Path = typer.Option(Path("runs/quickstart"), help="Where the runs go."),
    dataset: str = typer.Option("cifar10", help="Labelled dataset (found locally, or --download)."),
    download: bool = DownloadOpt,
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per arm (default: the embedded config's, 2)."),
) -> None:
    """SP vs matched AP vs AP+SP vs random init over seeds, kNN on seen and unseen classes. Extra key=value
    arguments change the embedded run settings (e.g. train.epochs=30)."""
    from sempairs.config import parse_overrides
    from sempairs.experiments.quickstart import run_quickstart

    run_quickstart(out_dir, dataset, download, console, parse_overrides(list(ctx.args)), seeds)
