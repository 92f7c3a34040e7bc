"""``sempairs experiment``: run a grid of pretraining runs, then write its results table, report and plots."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sempairs.cli.common import console, fail


def _table(title: str, headers: list[str], body: list[list[str]]) -> Table:
    """A table whose headers wrap at word boundaries and whose values are never cut; stopped runs in red."""
    table = Table(title=title)
    for i, header in enumerate(headers):
        widest = max((len(line[i]) for line in body), default=1)
        table.add_column(header.replace("_", " "), overflow="fold", min_width=max(widest, 4))
    for line in body:
        table.add_row(*line, style="red" if "stopped" in line else None)
    return table


def results_tables(exp, rows: list[dict[str, str]]) -> list[Table]:
    """The grid's results rows as two tables: the metrics of each cell, then what each cell cost."""
    metrics = list(exp.metrics())

    def number(row: dict[str, str], key: str, digits: int) -> str:
        return "stopped" if row.get("error") else f"{float(row[key]):.{digits}f}" if row.get(key) else "–"

    axes = [[row[a] for a in exp.labels] for row in rows]
    scores = [[*ax, number(row, "epochs", 0), *(number(row, m, 2) for m in metrics)] for ax, row in zip(axes, rows)]
    costs = [[*ax, number(row, "num_pairs", 0), number(row, "final_loss", 3), number(row, "images_per_s", 0),
              number(row, "seconds", 0), row.get("device", "")] for ax, row in zip(axes, rows)]
    return [_table(f"{exp.name}: {len(rows)} runs", [*exp.labels, "epochs", *metrics], scores),
            _table("training cost", [*exp.labels, "pairs trained", "final loss", "images/s", "seconds", "device"], costs)]


def experiment(
    config: Path = typer.Argument(..., help="Experiment YAML: name, out_dir, base (run config or path), axes."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip finished cells and continue half-trained ones "
                                "(--no-resume refuses a folder that already holds results)."),
    only_report: bool = typer.Option(False, "--only-report", help="Train nothing: rewrite the report and plots from results.csv."),
) -> None:
    """Run a grid of pretraining runs (cartesian product of the axes), then write results.csv, report.md and plots."""
    from sempairs.experiments.grid import grid_rows, load_experiment, run_grid
    from sempairs.experiments.plots import make_plots
    from sempairs.experiments.report import write_report

    exp = load_experiment(config)
    if not only_report:
        run_grid(exp, resume=resume, log=console.print)
    rows = grid_rows(exp)
    if not rows:
        fail(f"no results for the grid's current settings in {exp.results_path} yet: run the experiment without --only-report")
    report = write_report(exp, rows=rows)
    plots = make_plots(exp, rows=rows)
    for table in results_tables(exp, rows):
        console.print(table)
    lines = [f"results: {exp.results_path}", f"report:  {report}", *(f"plot:    {p}" for p in plots)]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
