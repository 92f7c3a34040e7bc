"""``report.md`` of an experiment: settings, how to read the numbers, mean ± std over seeds per metric."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from sempairs.atomic import write_text
from sempairs.experiments.axes.pairs import PAIRS_AXIS, split_pair_terms
from sempairs.experiments.grid import Cell, ExperimentConfig, expand, format_value, grid_rows

# Below these a grid is called smoke-scale in the report.
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


def metric_table(exp: ExperimentConfig, rows: Sequence[dict[str, str]], metric: str) -> list[str]:
    """Markdown lines of one metric's table; with a ``pairs`` axis, one column per pair set and the differences."""
    seeds = seed_count(exp)
    keys = exp.group_axes
    if PAIRS_AXIS not in keys:
        stats = summarise(rows, keys, metric)
        return _table([*keys, "mean ± std"], [[*k, format_stats(s, seeds)] for k, s in stats.items()])
    others = [a for a in keys if a != PAIRS_AXIS]
    arms = [format_value(v) for v in exp.axes[PAIRS_AXIS]]
    stats = summarise(rows, [*others, PAIRS_AXIS], metric)
    body = []
    for key in dict.fromkeys(k[:-1] for k in stats):
        cells = [stats.get((*key, arm)) for arm in arms]
        deltas = [f"{c.mean - cells[0].mean:+.2f}" if c and cells[0] else "–" for c in cells[1:]]
        body.append([*key, *(format_stats(c, seeds) for c in cells), *deltas])
    return _table([*others, *arms, *(f"{arm} − {arms[0]}" for arm in arms[1:])], body)


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
    """Pairs trained per pair set, as recorded in the rows."""
    if PAIRS_AXIS not in exp.axes:
        return f"{_column(rows, 'num_pairs')} pairs"
    arms = dict.fromkeys(r[PAIRS_AXIS] for r in rows)
    return "; ".join(f"{arm}: {_column([r for r in rows if r[PAIRS_AXIS] == arm], 'num_pairs')} pairs" for arm in arms)


def _pair_terms(exp: ExperimentConfig, dumps: list[dict]) -> set[str]:
    if PAIRS_AXIS in exp.axes:
        return {term.split(":")[0] for v in exp.axes[PAIRS_AXIS] for term in split_pair_terms(format_value(v))}
    return {{"augmented": "ap", "labels": "sp", "file": "file"}[d["pairs"]["source"]] for d in dumps}


def settings_lines(exp: ExperimentConfig, cells: Sequence[Cell], rows: Sequence[dict[str, str]]) -> list[str]:
    """The settings every number of the report depends on, and whether this is smoke or real scale."""
    dumps = [c.config.model_dump(mode="json") for c in cells]

    def v(key: str) -> str:
        return _values(dumps, key)

    seeds = v(exp.seed_axis) if exp.seed_axis in exp.axes else v("train.seed")
    hours = sum(float(r["seconds"]) for r in rows if r.get("seconds")) / 3600
    axes = " × ".join(f"{a} ({len(vals)})" for a, vals in exp.axes.items())
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
    if epochs < REAL_SCALE_EPOCHS or small:
        lines.append(f"**Smoke scale** ({epochs} epochs at most, {_column(rows, 'train_images')} training images): these "
                     "numbers show that the pipeline runs end to end; they are no evidence for or against semantic "
                     f"pairs. For reference, {STUDY}.")
    else:
        lines.append(f"**Real scale for this dataset**, but not a reproduction: {STUDY}; compare the direction and size "
                     "of the differences, not the numbers.")
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
                     "differences smaller than the spread are not meaningful. `(n=k)` marks a group with another number "
                     "of finished runs.")
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
    for metric, label in exp.metrics().items():
        lines += [f"## {label}", "", *metric_table(exp, rows, metric)]
    metrics = list(exp.metrics())
    lines += ["## Runs", "", *_table(
        ["cell", "epochs", "pairs trained", *metrics, "final loss", "images/s", "seconds", "run dir"],
        [[r["cell"], r.get("epochs", ""), r.get("num_pairs", ""), *(_number(r.get(m), 2) for m in metrics),
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
