"""``sempairs review``: curate a pair file in the browser, export the kept pairs, report reviewed precision.

Review errors (:class:`sempairs.review.store.ReviewError`, a SempairsError) rise to the command
group, which prints them as one line.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Column, Table
from typer.core import TyperGroup

from sempairs.cli.common import ForceOpt, RootOpt, SplitOpt, check_not_input, check_output, console, fail, load

START = "start"


class _StartByDefault(TyperGroup):
    """``sempairs review PAIRS.csv ...`` means ``sempairs review start PAIRS.csv ...``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [START, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_StartByDefault, no_args_is_help=True,
    help="Review pairs in the browser: sempairs review PAIRS.csv --data DATASET; then `review stats DB` and `review export DB`.",
)
DbArg = typer.Argument(..., help="Review database (default of `sempairs review`: PAIRS.csv.review.sqlite).")


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        return "reviewer"


@app.command(START)
def review_start(
    pairs: Path = typer.Argument(..., help="Pair CSV file to review (never modified)."),
    data: str = typer.Option(..., "--data", help="Dataset the pairs refer to."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; any other than 127.0.0.1/localhost needs the printed token."),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Decision database (default: PAIRS.csv.review.sqlite beside the pair file)."),
    reviewer: str = typer.Option(_default_reviewer(), help="Name recorded with each decision."),
    split: str = SplitOpt,
    root: Optional[str] = RootOpt,
) -> None:
    """Start the review page for PAIRS.csv and print its URL; a restart resumes the review."""
    from sempairs.pairs import PairFileError
    from sempairs.review.app import create_app
    from sempairs.review.server import bind, host_names, make_token, serve, url
    from sempairs.review.session import default_db, open_review

    store = load(data, split, root, False)
    db = db or default_db(pairs)
    check_not_input(db, pairs, data)  # an existing database is resumed; never one of the command's inputs
    try:
        session = open_review(pairs, store, db, reviewer, data)
    except PairFileError as exc:
        fail(f"{exc}\nrun `sempairs pairs check` for details")
    sock = bind(host, port)
    token = make_token(host)
    counts = session.decisions.counts()
    console.print(f"reviewing {counts['pairs']} pairs of {pairs} as {reviewer}: {counts['pairs'] - counts['unreviewed']} "
                  f"decided, {counts['unreviewed']} to go; decisions are saved in {db}", highlight=False, soft_wrap=True)
    console.print(f"open {url(sock, host, token)}   (Ctrl+C stops the server)", highlight=False, soft_wrap=True)
    console.file.flush()
    serve(create_app(session, token, host_names(host)), sock)


@app.command("export")
def review_export(
    db: Path = DbArg,
    out: Path = typer.Option(..., "--out", "-o", help="Pair CSV file to write (source `reviewed`)."),
    keep: str = typer.Option("accepted", help="accepted | accepted+unreviewed (skipped pairs count as unreviewed)."),
    force: bool = ForceOpt,
) -> None:
    """Write the kept pairs as a pair file for `pairs check` and `train` (pairs.add_files=[FILE])."""
    from sempairs.review.export import export_review

    check_output(out, db, force=force)
    path, header = export_review(db, out, keep, force)
    c = header["counts"]
    console.print(f"wrote {c['exported']} pairs to {path} (--keep {keep}; of {c['pairs']}: {c['accept']} accepted, "
                  f"{c['reject']} rejected, {c['skip']} skipped, {c['unreviewed']} unreviewed)", highlight=False, soft_wrap=True)


def _precision(row: dict) -> str:
    """``precision (low-high)`` of a stats row, ``-`` without reviewed pairs."""
    if row["precision"] is None:
        return "-"
    return f"{row['precision']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f})"


@app.command("stats")
def review_stats_cmd(
    db: Path = DbArg,
    bins: int = typer.Option(5, min=1, help="Equal-width score bins."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Reviewed precision with 95 % Wilson intervals: overall, per class, per score bin."""
    from sempairs.review.stats import review_stats
    from sempairs.review.store import DecisionStore

    with DecisionStore.existing(db) as store:
        stats = review_stats(store.pairs(), store.decisions(), bins)
    if as_json:
        console.print_json(json.dumps(stats))
        return
    def table(title: str, first: str, counts: tuple[str, ...], *precisions: str) -> Table:
        columns = [Column(c, justify="right") for c in counts] + [Column(p, no_wrap=True) for p in precisions]
        return Table(first, *columns, title=title, box=None, pad_edge=False)

    counts = ("accepted", "rejected", "skipped", "unreviewed")
    for title, rows, name in (("overall", [stats["overall"]], lambda r: "all"), ("per class", stats["per_class"], lambda r: r["class"])):
        out = table(title, "class" if title == "per class" else "", counts, "precision (95% CI)")
        for row in rows:
            out.add_row(name(row), *(str(row[k]) for k in ("accept", "reject", "skip", "unreviewed")), _precision(row))
        console.print(out)
    if stats["per_bin"]:
        out = table("per score bin", "score", counts[:2], "precision (95% CI)", "scores >= from: precision")
        for row in stats["per_bin"]:
            out.add_row(f"{row['score_from']:.3f}-{row['score_to']:.3f}", str(row["accept"]), str(row["reject"]),
                        _precision(row), _precision(row["at_least"]))
        console.print(out)
    console.print("precision = accepted / (accepted + rejected); it estimates the whole file's precision when the "
                  "reviewed pairs are a random sample (order: random).", highlight=False)
