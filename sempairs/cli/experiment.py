"""``sempairs experiment``: run a grid of pretraining runs, then write its results table, report and plots."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sempairs.cli.common import console, fail


def results_table(exp, rows: list[dict[str, str]]) -> Table:
    """The grid's results rows as a rich table: axis values, epochs, pairs, metrics, loss, speed, time."""
    metrics = exp.metrics()
    table = Table(*exp.axes, "epochs", "pairs trained", *metrics, "final loss", "images/s", "seconds",
                  title=f"{exp.name}: {len(rows)} runs")

    def number(row: dict[str, str], key: str, digits: int) -> str:
        return f"{float(row[key]):.{digits}f}" if row.get(key) else "–"

    for row in rows:
        if row.get("error"):
            table.add_row(*(row[a] for a in exp.axes), "[red]stopped[/]", *[""] * (len(metrics) + 4))
            continue
        table.add_row(*(row[a] for a in exp.axes), row["epochs"], row["num_pairs"], *(number(row, m, 2) for m in metrics),
                      number(row, "final_loss", 3), number(row, "images_per_s", 0), number(row, "seconds", 0))
    return table


def experiment(
    config: Path = typer.Argument(..., help="Experiment YAML: name, out_dir, base (run config or path), axes."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip finished cells and continue half-trained ones "
                                "(--no-resume refuses a folder that already holds results)."),
    only_report: bool = typer.Option(False, "--only-report", help="Train nothing: rewrite the report and plots from results.csv."),
) -> None:
    """Run a grid of pretraining runs (cartesian product of the axes), then write results.csv, report.md and plots."""
    from sempairs.config import ConfigError
    from sempairs.experiments.grid import grid_rows, load_experiment, run_grid
    from sempairs.experiments.plots import make_plots
    from sempairs.experiments.report import write_report

    try:
        exp = load_experiment(config)
        if not only_report:
            run_grid(exp, resume=resume, log=console.print)
        rows = grid_rows(exp)
        if not rows:
            fail(f"no results in {exp.results_path} yet: run the experiment without --only-report")
        report = write_report(exp, rows=rows)
        plots = make_plots(exp, rows=rows)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(results_table(exp, rows))
    lines = [f"results: {exp.results_path}", f"report:  {report}", *(f"plot:    {p}" for p in plots)]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
