"""``report.md`` of an experiment: settings, how to read the numbers, the reading of each arm's difference from
the baseline (:mod:`sempairs.experiments.evidence`, as the quickstart reads it), mean ± std over seeds per metric."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from sempairs.atomic import write_text
from sempairs.experiments.axes.pairs import PAIRS_AXIS, split_pair_terms
from sempairs.experiments.comparison import Shown, differences, per_seed, shown_metrics
from sempairs.experiments.evidence import MIN_SEEDS, RULE, Difference, is_smoke
from sempairs.experiments.grid import Cell, ExperimentConfig, expand, format_value, grid_rows

# Below these a grid is a short-schedule comparison, not one at the scale of the dataset.
REAL_SCALE_EPOCHS = 100
REAL_SCALE_TRAIN_IMAGES = 10_000
STUDY = ("the study (arXiv 2510.08722) pretrained ResNet-50 at 64 px on 187 ImageNet classes (29,359 pairs) "
         "for 200-800 epochs and reported linear evaluation")


class Stats(NamedTuple):
    """Mean, sample standard deviation (NaN for one value) and count of a metric over a group's runs."""

    mean: float
    std: float
    n: int


def finished(rows: Sequence[dict[str, str]], metric: str) -> list[dict[str, str]]:
    """The rows that hold a value of ``metric`` (runs that stopped, or were not evaluated, left out)."""
    return [r for r in rows if not r.get("error") and r.get(metric) not in (None, "")]


def stats_of(values: Sequence[float]) -> Stats:
    """Mean, sample standard deviation and count of ``values``."""
    return Stats(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan"), len(values))


def summarise(rows: Sequence[dict[str, str]], keys: Sequence[str], metric: str) -> dict[tuple[str, ...], Stats]:
    """``metric`` over the rows grouped by their values of ``keys`` (groups in first-seen order)."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for row in finished(rows, metric):
        groups.setdefault(tuple(row[k] for k in keys), []).append(float(row[metric]))
    return {key: stats_of(v) for key, v in groups.items()}


def format_stats(stats: Stats | None, seeds: int) -> str:
    """``mean ± std`` (two decimals); ``(n=k)`` added when a group holds other than ``seeds`` runs."""
    if stats is None:
        return "–"
    text = f"{stats.mean:.2f}" if stats.n < 2 else f"{stats.mean:.2f} ± {stats.std:.2f}"
    return text if stats.n == seeds else f"{text} (n={stats.n})"


def seed_count(exp: ExperimentConfig) -> int:
    """Runs per group when the grid is complete: the number of seed-axis values (1 without one)."""
    return len(exp.axes.get(exp.seed_axis, [None]))


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in body), ""]


def _reference(exp: ExperimentConfig, rows: Sequence[dict[str, str]], column: str, seeds: int) -> str:
    """A reference column over ``rows``: mean ± std over its seeds (each seed's value counted once)."""
    values = list(per_seed(rows, column, exp.seed_axis).values())
    return format_stats(stats_of(values), seeds) if values else "–"


def metric_table(exp: ExperimentConfig, rows: Sequence[dict[str, str]], metric: str, shown: Shown) -> list[str]:
    """Markdown lines of one metric's table: with arms (or a ``pairs`` axis), one column per arm, each arm's
    difference from the first with its spread and verdict, and the metric's reference (e.g. the untrained backbone)."""
    seeds = seed_count(exp)
    reference = shown.references.get(metric)
    keys = exp.group_axes
    compared = exp.compared
    others = [a for a in keys if a != compared]
    arms = exp.compared_values() if compared else []
    stats = summarise(rows, [*others, *([compared] if compared else [])], metric)
    found = {(d.key, d.arm): d.difference for d in differences(exp, rows, metric)}
    body = []
    for key in dict.fromkeys(k[: len(others)] for k in stats):
        cells = [format_stats(stats.get((*key, arm)), seeds) for arm in arms] or [format_stats(stats.get(key), seeds)]
        deltas = [_delta(found.get((key, arm))) for arm in arms[1:]]
        mine = [r for r in rows if tuple(r[a] for a in others) == key]
        body.append([*key, *cells, *deltas, *([_reference(exp, mine, reference.column, seeds)] if reference else [])])
    header = [*others, *(arms or ["mean ± std"]), *(f"{arm} − {arms[0]}" for arm in arms[1:]),
              *([f"{reference.label} (reference)"] if reference else [])]
    return _table(header, body)


def _signed(diff: Difference) -> str:
    """A difference with its spread: ``+4.80 ± 0.30`` (no spread with one seed)."""
    return f"{diff.mean:+.2f}" if math.isnan(diff.spread) else f"{diff.mean:+.2f} ± {diff.spread:.2f}"


def _delta(diff: Difference | None) -> str:
    """A difference with its spread and verdict: ``+4.80 ± 0.30 (difference)``."""
    return "–" if diff is None else f"{_signed(diff)} ({diff.verdict})"


def reading_lines(exp: ExperimentConfig, rows: Sequence[dict[str, str]], shown: Shown) -> list[str]:
    """Each arm against the baseline, per shown metric, in the quickstart's words."""
    lines = []
    others = [a for a in exp.group_axes if a != exp.compared]
    for metric, label in shown.metrics.items():
        for d in differences(exp, rows, metric):
            where = f" ({', '.join(f'{a}={v}' for a, v in zip(others, d.key))})" if others else ""
            lines.append(f"- {label}{where}: {d.arm} − {d.baseline} = {_signed(d.difference)} points: "
                         f"{d.difference.sentence(d.arm, d.baseline)}.")
    return [*lines, ""] if lines else []


def _values(dumps: list[dict], key: str) -> str:
    """The distinct values of dotted ``key`` over the cells' configs, comma-separated."""
    found = []
    for tree in dumps:
        for part in key.split("."):
            tree = tree[part]
        found.append("none" if tree is None else format_value(tree))
    return ", ".join(dict.fromkeys(found))


def _column(rows: Sequence[dict[str, str]], key: str) -> str:
    return ", ".join(dict.fromkeys(r[key] for r in rows if r.get(key))) or "not recorded"


def _pair_counts(exp: ExperimentConfig, rows: Sequence[dict[str, str]]) -> str:
    """Pairs trained per arm (or pair set), as recorded in the rows."""
    if exp.compared is None:
        return f"{_column(rows, 'num_pairs')} pairs"
    arms = dict.fromkeys(r[exp.compared] for r in rows)
    return "; ".join(f"{arm}: {_column([r for r in rows if r[exp.compared] == arm], 'num_pairs')} pairs" for arm in arms)


def _pair_terms(exp: ExperimentConfig, dumps: list[dict]) -> set[str]:
    if exp.values_of(PAIRS_AXIS):
        return {term.split(":")[0] for v in exp.values_of(PAIRS_AXIS) for term in split_pair_terms(str(v))}
    return {{"augmented": "ap", "labels": "sp", "file": "file"}[d["pairs"]["source"]] for d in dumps}


def settings_lines(exp: ExperimentConfig, cells: Sequence[Cell], rows: Sequence[dict[str, str]]) -> list[str]:
    """The settings every number of the report depends on, and whether this is smoke or real scale."""
    dumps = [c.config.model_dump(mode="json") for c in cells]

    def v(key: str) -> str:
        return _values(dumps, key)

    seeds = v(exp.seed_axis) if exp.seed_axis in exp.axes else v("train.seed")
    hours = sum(float(r["seconds"]) for r in rows if r.get("seconds")) / 3600
    axes = " × ".join([*([f"arms ({', '.join(exp.compared_values())})"] if exp.arms else []),
                       *(f"{a} ({len(vals)})" for a, vals in exp.axes.items())])
    lines = [
        (f"- **Data**: `{v('data.dataset')}` at {v('data.size')} px; pretraining and kNN memory: split "
         f"`{v('data.split')}` ({_column(rows, 'train_images')} images, limit per class: {v('data.limit_per_class')}); "
         f"kNN queries: split `{v('data.test_split')}` ({_column(rows, 'test_images')} images)."),
        (f"- **Pairs**: {_pair_counts(exp, rows)} (pairs.per_class: {v('pairs.per_class')}, "
         f"pairs.seed: {v('pairs.seed')})."),
        f"- **Model and method**: {v('method.name')} on {v('backbone.name')} (small-image stem: {v('backbone.small_stem')}).",
        (f"- **Training**: {v('train.epochs')} epochs, batch {v('train.batch_size')} pairs, {v('optim.name')} with lr "
         f"{v('optim.lr')} per 256 pairs, seeds ({exp.seed_axis}): {seeds}."),
        f"- **Device**: {_column(rows, 'device')}, precision {_column(rows, 'precision')}; {hours:.2f} h of training in all.",
        (f"- **Grid**: {len(cells)} cells ({axes}); {len(finished(rows, 'epochs'))} finished, "
         f"{sum(1 for r in rows if r.get('error'))} stopped."),
        "",
    ]
    epochs = max(c.config.train.epochs for c in cells)
    train_images = [int(r["train_images"]) for r in rows if r.get("train_images")]
    small = any(c.config.data.limit_per_class for c in cells) or min(train_images, default=REAL_SCALE_TRAIN_IMAGES) < REAL_SCALE_TRAIN_IMAGES
    seeds = min((s.n for s in summarise(rows, exp.group_axes, "epochs").values()), default=0)
    if is_smoke(seeds):
        lines.append(f"**Smoke run** ({seeds} finished seed(s) in the smallest group, fewer than {MIN_SEEDS}): no "
                     "difference here can be told from seed-to-seed noise; these numbers show that the pipeline runs "
                     f"end to end, not evidence for or against semantic pairs. For reference, {STUDY}.")
    else:
        scale = (f"a short-schedule comparison ({epochs} epochs at most, {_column(rows, 'train_images')} training "
                 f"images), not a reproduction: {STUDY}" if epochs < REAL_SCALE_EPOCHS or small else
                 f"real scale for this dataset, but not a reproduction: {STUDY}")
        lines.append(f"**Read against the seed spread** ({seeds} seeds at least per group): {RULE}. The scale: {scale}; "
                     "a difference is evidence about this recipe.")
    return [*lines, ""]


def reading_notes(exp: ExperimentConfig, cells: Sequence[Cell]) -> list[str]:
    """What each pair set and metric means, stated plainly (labels used, protocol, spread over seeds)."""
    dumps = [c.config.model_dump(mode="json") for c in cells]
    terms = _pair_terms(exp, dumps)
    notes = []
    if "ap" in terms:
        notes.append("**AP** (augmented pairs): two augmented views of one image. With `pairs.per_class` set it is the "
                     "matched set: the SP anchors, so the same classes and pair count as SP.")
    if "sp" in terms:
        notes.append("**SP** (semantic pairs) here are built from the dataset's class labels: two different images of one "
                     "class. They use the labels, so SP rows are **not self-supervised results**; they show what correct "
                     "semantic pairs add, as the study's curated pairs do.")
    if "mined" in terms:
        notes.append("**Mined** pairs come from `sempairs pairs mine` (nearest neighbours in a pretrained encoder's "
                     "embedding, no labels: the SePP-ID semantic sampler). How often a mined pair truly shares a class "
                     "decides the gain: check it with `sempairs pairs report`.")
    if "curated" in terms or "file" in terms:
        notes.append("**Curated** pairs are read from the pair file named in the column; their quality is the file's.")
    if "knn" in exp.evaluations:
        notes.append(f"**kNN**: weighted k-nearest-neighbour accuracy (k={_values(dumps, 'knn.k')}, "
                     f"t={_values(dumps, 'knn.temperature')}) of L2-normalised backbone features, train split as memory, "
                     "test split as queries, after the last epoch; not the study's linear evaluation.")
    if seed_count(exp) > 1:
        notes.append(f"Values are mean ± sample standard deviation over the {seed_count(exp)} values of `{exp.seed_axis}`; "
                     "a difference column holds the difference of the means ± its spread and the verdict of the rule "
                     "above. `(n=k)` marks a group with another number of finished runs.")
    else:
        notes.append("Each value is a single run (no seed axis): the spread over seeds is unknown, so small differences "
                     "are not meaningful.")
    return [*(f"- {n}" for n in notes), ""]


def write_report(exp: ExperimentConfig, cells: Sequence[Cell] | None = None, rows: Sequence[dict[str, str]] | None = None) -> Path:
    """Write ``<experiment>/report.md`` from the grid's results rows and return its path."""
    cells = cells if cells is not None else expand(exp)
    rows = rows if rows is not None else grid_rows(exp, cells)
    lines = [f"# Experiment `{exp.name}`", "", *settings_lines(exp, cells, rows), "## How to read it", "",
             *reading_notes(exp, cells)]
    shown = shown_metrics(exp, rows)
    reading = reading_lines(exp, rows, shown)
    if reading:
        lines += [f"## Reading: each arm against {exp.compared_values()[0]}", "", *reading]
    for metric, label in shown.metrics.items():
        lines += [f"## {label}", "", *metric_table(exp, rows, metric, shown)]
    if shown.left_out:
        lines += ["Left out: " + "; ".join(shown.left_out) + " (its values are in the runs table).", ""]
    metrics = list(exp.metrics())
    named = ["arm"] if exp.arms else []
    lines += ["## Runs", "", *_table(
        ["cell", *named, "epochs", "pairs trained", *metrics, "final loss", "images/s", "seconds", "run dir"],
        [[r["cell"], *(r.get(a, "") for a in named), r.get("epochs", ""), r.get("num_pairs", ""), *(_number(r.get(m), 2) for m in metrics),
          _number(r.get("final_loss"), 3), _number(r.get("images_per_s"), 0), _number(r.get("seconds"), 0),
          f"`{r.get('run_dir', '')}`"] for r in rows if not r.get("error")])]
    stopped = [r for r in rows if r.get("error")]
    if stopped:
        lines += ["## Stopped runs", "", "To try a cell again with other settings, delete its row from `results.csv` and its run directory.", "",
                  *(f"- `{r['cell']}`: {r['error']}" for r in stopped), ""]
    missing = len(cells) - len(rows)
    if missing:
        lines += [f"{missing} of {len(cells)} cells have no results yet: run the experiment again to finish them.", ""]
    path = exp.directory / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines))
    return path


def _number(text: str | None, digits: int) -> str:
    return f"{float(text):.{digits}f}" if text not in (None, "") else "–"
