"""Plots of an experiment (PNG, each beside the CSV of the numbers drawn), only those its axes support.

- ``arms`` (with ``arms``) or ``pairs_bars`` (a ``pairs`` axis): every metric per arm, grouped by the
  other axes (e.g. method), with the metric's reference (the untrained backbone) as a dashed line.
- ``differences``: each arm's difference from the first arm (the baseline) with its spread, per metric,
  and a zero line; filled where the difference counts (:mod:`sempairs.experiments.evidence`).
- ``differences_vs_<axis>``: for each numeric axis (a number, or a list counted by its length, e.g.
  ``data.classes``), each arm's difference from the baseline with its spread as a line over the axis.
- ``differences_vs_precision``: each arm's difference from the baseline against the measured precision
  of its semantic pairs (``mined_precision``, else ``pairs.precision``), one labelled point per arm (not joined),
  with the untrained backbone's.
- ``transforms``: every metric per augmentation preset (``transforms`` axis), change vs the first preset.
- ``accuracy_vs_epoch``: metrics measured during training (``knn.every``, the run's ``history.csv``) and after it.
- ``accuracy_vs_pairs_per_class``: metrics over the ``pairs.per_class`` axis.
- ``embedding_tsne`` / ``embedding_umap``: t-SNE or UMAP maps (the grid's ``embedding_method``,
  :mod:`sempairs.experiments.embedding_maps`) of the test-split backbone features of chosen runs,
  on a class-balanced subset of at most ``MAP_POINTS`` images, coloured by class.
- ``pairs_<file>.calibration``: for each pair file of a ``mined:``/``curated:`` term of the
  ``pairs`` axis, precision vs similarity score and threshold (:mod:`sempairs.pairs.report`).

Points are means over the seed axis; error bars are the sample standard deviation. Only metrics that
carry information are drawn (:func:`sempairs.experiments.comparison.shown_metrics`), and value axes
span the values drawn, not 0 to the top, so that differences of a few points stay visible.
"""

from __future__ import annotations

import math
import json
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sempairs.csvio import read_rows
from sempairs.plotting import save_plot
from sempairs.trained.features import extract_features
from sempairs.experiments.axes.pairs import PAIR_FILE_KINDS, PAIRS_AXIS, split_pair_terms
from sempairs.experiments.axes.transforms import TRANSFORMS_AXIS
from sempairs.experiments.comparison import differences, per_seed, shown_metrics
from sempairs.experiments.evidence import DIFFERENCE, NOISE_FACTOR
from sempairs.experiments.grid import ARM, Cell, ExperimentConfig, expand, format_value, grid_rows
from sempairs.experiments.embedding_maps import METHOD_NAMES, METHOD_SETTINGS, embed_2d
from sempairs.experiments.report import Stats, finished, seed_count, stats_of, summarise
from sempairs.trained.loading import load_backbone
from sempairs.train.data import load_split
from sempairs.train.loop import HISTORY

EPOCHS_AXIS, PER_CLASS_AXIS = "train.epochs", "pairs.per_class"
PANELS_PER_ROW = 3
ROW_WIDTH = 20  # inches: wider panels (many groups along x) go one or two per row
MAP_POINTS = 2000  # images per map


def _parsed(value: str):
    """``value`` read as JSON (an axis's list or mapping value), None when it is not JSON."""
    try:
        return json.loads(value)
    except ValueError:
        return None


def _short(value: str) -> str:
    """A list value (JSON) as its first and last items and its length, ``airplane, …, truck (10)``; any other as it is."""
    parsed = _parsed(value)
    if not isinstance(parsed, list):
        return value
    items = [v if isinstance(v, str) else json.dumps(v) for v in parsed]
    shown = items if len(items) <= 2 else [items[0], "…", items[-1]]
    return f"{', '.join(shown)} ({len(items)})"


def _label(keys: Sequence[str], values: Sequence[str], sep: str = ", ") -> str:
    """How a group is named in legends: its value for one key, ``key=value, ...`` for several (lists shortened)."""
    values = [_short(v) for v in values]
    if len(keys) == 1:
        return values[0]
    return sep.join(f"{k}={v}" for k, v in zip(keys, values))


def _tick(keys: Sequence[str], values: Sequence[str]) -> str:
    """A short x tick label: one ``name=value`` line per key (the axis label gives the full keys); a section
    axis's value (a JSON mapping) one ``key=value`` line per entry."""
    names = [k.rsplit(".", 1)[-1] for k in keys]
    lines = [_mapping_lines(_short(v)) for v in values]
    if len(keys) == 1:
        return lines[0]
    return "\n".join(f"{k}:\n{v}" if "\n" in v else f"{k}={v}" for k, v in zip(names, lines))


def _mapping_lines(value: str) -> str:
    """``{"a":1,"b":true}`` -> ``a=1`` and ``b=true`` on two lines; any other value as it is."""
    parsed = _parsed(value)
    if not isinstance(parsed, dict):
        return value
    return "\n".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in parsed.items())


def _figure(panels: int, panel_width: float = 5.2, height: float = 4.2, legend_entries: int = 0) -> tuple[Figure, list]:
    """A figure of ``panels`` in rows of at most ``PANELS_PER_ROW`` (fewer where they would exceed ``ROW_WIDTH``), taller by one line per row of a bottom legend
    (4 entries a row); returns the ``panels`` axes in reading order (unused grid cells are hidden)."""
    cols = min(panels, PANELS_PER_ROW, max(1, int(ROW_WIDTH // panel_width)))
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(1.5 + panel_width * cols, height * rows + 0.3 * math.ceil(legend_entries / 4)), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(rows, cols)).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _stat_row(keys: Sequence[str], values: Sequence[str], metric: str, stats: Stats) -> dict:
    return {**dict(zip(keys, values)), "metric": metric, "mean": stats.mean, "std": stats.std, "n": stats.n}


def _spread_note(exp: ExperimentConfig) -> str:
    seeds = seed_count(exp)
    return f"mean ± std over {seeds} seeds" if seeds > 1 else "one run each"


def grouped_bars(exp: ExperimentConfig, rows, x_axis: str, out_dir: Path, name: str, title: str, delta: bool) -> Path | None:
    """Every shown metric as points with error bars, grouped along the x axis, one colour per setting of the remaining axes.

    For the compared column (``arm`` or ``pairs``) the groups are the other axes' settings (e.g. methods)
    and the colours the arms; otherwise (or without other axes) the groups are ``x_axis``'s values. With
    ``delta`` each point is annotated with its change from the first group's point of its colour. A
    metric's reference (the untrained backbone) is a dashed line at its mean over seeds.
    """
    others = [a for a in exp.group_axes if a != x_axis]
    group_keys, bar_keys = (others, [x_axis]) if x_axis == exp.compared and others else ([x_axis], others)
    shown = shown_metrics(exp, rows)
    metrics = shown.metrics
    if not metrics:
        return None
    drawn = summarise(rows, [*group_keys, *bar_keys], next(iter(metrics)))
    groups_drawn = list(dict.fromkeys(k[: len(group_keys)] for k in drawn))
    widest = max(len(line) for g in groups_drawn for line in _tick(group_keys, g).split("\n"))
    per_group = max(0.6 * len(drawn) / len(groups_drawn), 0.09 * widest)  # inches: room for the points and the tick label
    colours = len(dict.fromkeys(k[len(group_keys):] for k in drawn))
    fig, axes = _figure(len(metrics), panel_width=max(5.2, 1 + per_group * len(groups_drawn)), legend_entries=colours + 1)
    table, handles = [], []
    for ax, (metric, label) in zip(axes, metrics.items()):
        stats = summarise(rows, [*group_keys, *bar_keys], metric)
        groups = list(dict.fromkeys(k[: len(group_keys)] for k in stats))
        bars = list(dict.fromkeys(k[len(group_keys):] for k in stats))
        width = 0.8 / len(bars)
        for j, bar in enumerate(bars):
            xs, means, stds = [], [], []
            for i, group in enumerate(groups):
                s = stats.get((*group, *bar))
                if s is None:
                    continue
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                means.append(s.mean)
                stds.append(0.0 if math.isnan(s.std) else s.std)
                first = stats.get((*groups[0], *bar))
                change = s.mean - first.mean if delta and first else None
                table.append({**_stat_row([*group_keys, *bar_keys], [*group, *bar], metric, s),
                              **({"change_vs_first": change} if delta else {})})
                note = f"{s.mean:.1f}" if change is None or i == 0 else f"{s.mean:.1f}\n({change:+.1f})"
                ax.annotate(note, (xs[-1], s.mean + stds[-1]), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 3), textcoords="offset points")
            handle = ax.errorbar(xs, means, yerr=stds, fmt="o", markersize=7, capsize=4, label=_label(bar_keys, bar),
                                 color=f"C{j}")
            if ax is axes[0] and bar_keys:
                handles.append(handle)
        reference = shown.references.get(metric)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        if reference is not None:
            line = _reference_levels(ax, exp, rows, reference, group_keys, groups, bar_keys, metric, table)
            if ax is axes[0]:
                handles.append(line)
        ax.set_xticks(range(len(groups)), [_tick(group_keys, g) for g in groups])
        ax.set_xlabel(", ".join(group_keys))
        ax.set_ylabel(textwrap.fill(label.split(" = ")[0], 40))
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.12 * (high - low))  # room for the annotations
        ax.set_title(textwrap.fill(label, 50), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if handles:
        fig.legend(handles=handles, title=", ".join(bar_keys), loc="outside lower center", ncols=min(4, len(handles)))
    fig.suptitle(f"{title} ({_spread_note(exp)}; the value axis spans the values)")
    return save_plot(fig, table, out_dir, name)


def difference_plot(exp: ExperimentConfig, rows, out_dir: Path) -> Path | None:
    """Dot-and-whisker plot of each arm's difference from the baseline arm, per shown metric, with a zero line.

    The whisker is the difference's spread (:mod:`sempairs.experiments.evidence`); a filled dot is a
    difference (more than ``NOISE_FACTOR`` spreads from zero), a hollow one is within noise or has too few seeds.
    """
    shown = shown_metrics(exp, rows)
    found = {metric: differences(exp, rows, metric) for metric in shown.metrics}
    found = {m: d for m, d in found.items() if d}
    if not found:
        return None
    others = [a for a in exp.group_axes if a != exp.compared]
    rows_drawn = max(len(d) for d in found.values())
    tick_lines = 1 + len(others)  # "arm − baseline", then a line per other axis
    fig, axes = _figure(len(found), height=1.6 + rows_drawn * max(0.45, 0.2 * tick_lines))
    table, labelled = [], None
    for ax, (metric, diffs) in zip(axes, found.items()):
        for y, d in enumerate(diffs):
            diff = d.difference
            spread = 0.0 if math.isnan(diff.spread) else diff.spread
            counts = diff.verdict == DIFFERENCE
            colour = "C0" if counts else "0.45"
            ax.errorbar([diff.mean], [y], xerr=[NOISE_FACTOR * spread], fmt="none", capsize=4, color=colour, linewidth=1)
            ax.errorbar([diff.mean], [y], xerr=[spread], fmt="o", markersize=8, color=colour, linewidth=4,
                        markerfacecolor=colour if counts else "white")
            ax.annotate(f"{diff.mean:+.1f} ± {spread:.1f}\n{diff.verdict}", (diff.mean, y), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 6), textcoords="offset points")
            table.append({**dict(zip(others, d.key)), exp.compared: d.arm, "baseline": d.baseline, "metric": metric,
                          "difference": diff.mean, "spread": diff.spread, "seeds": diff.seeds, "verdict": diff.verdict})
        ax.axvline(0, color="0.3", linewidth=1)
        ticks = [f"{d.arm} − {d.baseline}" + (f"\n{_tick(others, d.key)}" if others else "") for d in diffs]
        left = ax.get_subplotspec().is_first_col() or ticks != labelled
        ax.set_yticks(range(len(diffs)), ticks if left else [])  # a row's panels share the labels of its first
        labelled = ticks
        ends = [d.difference.mean + sign * NOISE_FACTOR * (0 if math.isnan(d.difference.spread) else d.difference.spread)
                for d in diffs for sign in (-1, 1)]
        low, high = min(0.0, *ends), max(0.0, *ends)
        pad = 0.15 * (high - low) + 0.2
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(len(diffs) - 0.4, -0.9)  # the first arm on top, room for the labels
        ax.set_xlabel(f"difference, points of {shown.metrics[metric].split(' = ')[0]}")
        ax.set_title(textwrap.fill(shown.metrics[metric], 50), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(textwrap.fill(f"Difference from {exp.compared_values()[0]}: mean over seeds, thick bar ± its spread "
                               f"sqrt(sd_a² + sd_b²), whisker ± {NOISE_FACTOR:g} spreads; filled: the whisker clears 0 "
                               "(a difference), hollow: within noise or too few seeds", 110), fontsize=10)
    return save_plot(fig, table, out_dir, "differences")


def factor_value(value: str) -> float | None:
    """An axis value as a number for a line plot: the number, or the length of a list (``data.classes``); else None."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if isinstance(parsed, list):
        return float(len(parsed))
    return float(parsed) if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) else None


def pair_precision_of(row: dict[str, str]) -> float | None:
    """The share of same-class pairs among a run's semantic pairs: measured for mined pairs, else ``pairs.precision``
    for pairs from the labels (1 when not set); None for a run on augmented pairs only."""
    if row.get("mined_precision"):
        return float(row["mined_precision"]) / 100
    if "sp" in split_pair_terms(row.get(PAIRS_AXIS, "")):
        return float(row.get("pairs.precision") or 1.0)
    return None


def _reference_levels(ax, exp: ExperimentConfig, rows, reference, group_keys, groups, bar_keys, metric: str, table: list):
    """The reference (the untrained backbone) as a dashed line: across the panel when every group has the same value,
    otherwise a segment over each group at its own value (e.g. a class-count axis changes the untrained accuracy)."""
    levels = {}
    for i, group in enumerate(groups):
        values = list(per_seed([r for r in rows if tuple(r[k] for k in group_keys) == group], reference.column,
                               exp.seed_axis).values())
        if values:
            levels[i] = (group, stats_of(values))
    style = dict(color="0.4", linestyle="--", linewidth=1.2, label=f"{reference.label} (reference)")
    if len({round(s.mean, 1) for _, s in levels.values()}) <= 1:
        s = stats_of(list(per_seed(rows, reference.column, exp.seed_axis).values()))
        levels = {None: (("",) * len(group_keys), s)}
        line = ax.axhline(s.mean, **style)
    for i, (group, s) in levels.items():
        if i is not None:
            line = ax.hlines(s.mean, i - 0.45, i + 0.45, **style)
        ax.annotate(f"{reference.label} {s.mean:.1f}", (ax.get_xlim()[0] if i is None else i - 0.45, s.mean), fontsize=8,
                    color="0.3", xytext=(3, 3), textcoords="offset points")
        table.append({**dict(zip(group_keys, group)), **dict.fromkeys(bar_keys, ""), "metric": metric,
                      "reference": reference.column, "mean": s.mean, "std": s.std, "n": s.n})
    return line


def _difference_lines(exp: ExperimentConfig, rows, out_dir: Path, name: str, xlabel: str, line_of, x_of,
                      per_arm: bool = False) -> Path | None:
    """Each compared value's difference from the baseline as lines over x, per shown metric, ± the spread.

    ``line_of(difference)`` names the line a difference belongs to, ``x_of(difference, rows of its arm)`` its x
    (None: not drawn). Made only when some line has points at two x values or more. With ``per_arm`` (x a property
    of each arm, such as its pairs' precision, not a setting swept along a line) the points are not joined and
    each is labelled with its arm. With a reference column (the untrained backbone), a dashed line shows the
    reference minus the baseline, so both gains read off the plot.
    """
    shown = shown_metrics(exp, rows)
    others = [a for a in exp.group_axes if a != exp.compared]
    series: dict[str, dict[str, list]] = {}
    for metric in shown.metrics:
        for d in differences(exp, rows, metric):
            mine = [r for r in rows if r[exp.compared] == d.arm and tuple(r[a] for a in others) == d.key]
            x = x_of(d, mine)
            if x is not None:
                series.setdefault(metric, {}).setdefault(line_of(d), []).append((x, d))
    series = {m: lines for m, lines in series.items() if any(len({x for x, _ in points}) > 1 for points in lines.values())}
    if not series:
        return None
    fig, axes = _figure(len(series), legend_entries=max(len(lines) for lines in series.values()))
    table = []
    for ax, (metric, lines) in zip(axes, series.items()):
        for j, (line, points) in enumerate(lines.items()):
            points.sort(key=lambda p: p[0])
            spreads = [0.0 if math.isnan(d.difference.spread) else d.difference.spread for _, d in points]
            ax.errorbar([x for x, _ in points], [d.difference.mean for _, d in points], yerr=spreads, marker="o", capsize=3,
                        color=f"C{j}", label=line, linestyle="none" if per_arm else "-")
            for x, d in points if per_arm else []:
                ax.annotate(d.arm, (x, d.difference.mean), fontsize=8, xytext=(6, 0), textcoords="offset points",
                            va="center", color=f"C{j}")
            table += [{**dict(zip(others, d.key)), exp.compared: d.arm, "baseline": d.baseline, "x": x, "metric": metric,
                       "difference": d.difference.mean, "spread": d.difference.spread, "seeds": d.difference.seeds,
                       "verdict": d.difference.verdict} for x, d in points]
        reference = shown.references.get(metric)
        if reference is not None:
            gaps = _reference_gaps(exp, rows, metric, reference.column, others, [p for ps in lines.values() for p in ps])
            if gaps:
                xs = sorted(gaps)
                ax.plot(xs, [statistics.fmean(gaps[x]) for x in xs], color="0.4", linestyle="--",
                        label=f"{reference.label} − {exp.compared_values()[0]}")
                table += [{exp.compared: reference.label, "baseline": exp.compared_values()[0], "x": x, "metric": metric,
                           "reference": reference.column, "difference": statistics.fmean(gaps[x])} for x in xs]
        ax.axhline(0, color="0.3", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"difference from {exp.compared_values()[0]}, points")
        ax.set_title(textwrap.fill(shown.metrics[metric], 50), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)))
    fig.suptitle(textwrap.fill(f"Difference from {exp.compared_values()[0]} against {xlabel}: mean over seeds ± its spread "
                               "sqrt(sd_a² + sd_b²)", 110), fontsize=10)
    return save_plot(fig, table, out_dir, name)


def _reference_gaps(exp: ExperimentConfig, rows, metric: str, column: str, others, points) -> dict[float, list[float]]:
    """Per x: the reference minus the baseline arm's mean, within each drawn difference's setting of the other axes."""
    gaps: dict[float, list[float]] = {}
    measured = finished(rows, metric)
    for x, d in points:
        mine = [r for r in measured if tuple(r[a] for a in others) == d.key]
        base = [float(r[metric]) for r in mine if r[exp.compared] == d.baseline]
        refs = [float(r[column]) for r in mine if r.get(column)]
        if base and refs:
            gaps.setdefault(x, []).append(statistics.fmean(refs) - statistics.fmean(base))
    return gaps


def differences_vs_factors(exp: ExperimentConfig, rows, out_dir: Path) -> list[Path]:
    """``differences_vs_<axis>`` for each numeric axis, and ``differences_vs_precision`` (see the module doc)."""
    others = [a for a in exp.group_axes if a != exp.compared]
    made = []
    for axis in others:
        if all(factor_value(format_value(v)) is not None for v in exp.values_of(axis)):
            rest = [i for i, a in enumerate(others) if a != axis]
            made.append(_difference_lines(
                exp, rows, out_dir, f"differences_vs_{axis}",
                f"{axis} (a list: its length)" if any(isinstance(v, list) for v in exp.values_of(axis)) else axis,
                lambda d: _label([exp.compared, *(others[i] for i in rest)], [d.arm, *(d.key[i] for i in rest)]),
                lambda d, mine, at=others.index(axis): factor_value(d.key[at])))
    made.append(_difference_lines(
        exp, rows, out_dir, "differences_vs_precision", "precision of the semantic pairs (share of same-class pairs)",
        lambda d: _label(others, d.key) if others else "arms",
        lambda d, mine: statistics.fmean(p) if (p := [v for r in mine if (v := pair_precision_of(r)) is not None]) else None,
        per_arm=True))
    return [p for p in made if p is not None]


def _metric_lines(exp: ExperimentConfig, rows, x_column: str, across: str | None, points_of, out_dir: Path, name: str,
                  title: str, xlabel: str) -> Path | None:
    """Lines of every metric over x: ``points_of(row, metric)`` gives a run's (x, value) points.

    One line per setting of the grid's axes other than the seed axis and the axis ``across``
    (whose runs form one line); points are means over the runs that have them, with the standard
    deviation as error bar. Made only when some line has two points or more.
    """
    keys = [a for a in exp.group_axes if a != across]
    metrics = shown_metrics(exp, rows).metrics
    series = {}
    for metric in metrics:
        lines: dict[tuple, dict[float, list[float]]] = {}
        for row in finished(rows, metric):
            for x, value in points_of(row, metric):
                lines.setdefault(tuple(row[k] for k in keys), {}).setdefault(x, []).append(value)
        series[metric] = lines
    if not any(len(points) > 1 for lines in series.values() for points in lines.values()):
        return None
    fig, axes = _figure(len(metrics), legend_entries=max(len(lines) for lines in series.values()))
    table = []
    for ax, (metric, label) in zip(axes, metrics.items()):
        for j, (line, points) in enumerate(series[metric].items()):
            xs = sorted(points)
            stats = [stats_of(points[x]) for x in xs]
            stds = [0.0 if math.isnan(s.std) else s.std for s in stats]
            ax.errorbar(xs, [s.mean for s in stats], yerr=stds, marker="o", capsize=3, color=f"C{j}",
                        label=_label(keys, line))
            table += [_stat_row([*keys, x_column], [*line, x], metric, s) for x, s in zip(xs, stats)]
        ax.set_xlabel(xlabel)
        xs = sorted({x for points in series[metric].values() for x in points})
        if len(xs) <= 8:
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if keys:
        fig.legend(handles, labels, title=", ".join(keys), loc="outside lower center", ncols=min(4, len(handles)))
    fig.suptitle(f"{title} ({_spread_note(exp)})")
    return save_plot(fig, table, out_dir, name)


def _logged_points(row: dict[str, str], metric: str) -> list[tuple[float, float]]:
    """(epoch, value) of ``metric`` from the run's history (``knn.every``) and its results row (after the last epoch)."""
    points = {}
    history = Path(row["run_dir"]) / HISTORY
    if history.exists():
        points = {float(h["epoch"]): float(h[metric]) for h in read_rows(history) if h.get(metric)}
    points[float(row["epochs"])] = float(row[metric])
    return sorted(points.items())


def accuracy_vs_epoch(exp: ExperimentConfig, rows, out_dir: Path) -> Path | None:
    """Metrics over training epochs: values logged every ``knn.every`` epochs plus each run's final one."""
    logged_during = any(len(_logged_points(r, m)) > 1 for m in exp.metrics() for r in finished(rows, m))
    across = None if logged_during else EPOCHS_AXIS  # runs of different lengths are separate lines when curves exist
    return _metric_lines(exp, rows, "epoch", across, _logged_points, out_dir, "accuracy_vs_epoch",
                         "Accuracy over training", "epoch")


def accuracy_vs_pairs_per_class(exp: ExperimentConfig, rows, out_dir: Path) -> Path | None:
    """Metrics over the ``pairs.per_class`` axis (SP: two images per pair; matched AP: one)."""
    return _metric_lines(exp, rows, PER_CLASS_AXIS, PER_CLASS_AXIS, lambda row, m: [(float(row[PER_CLASS_AXIS]), float(row[m]))],
                         out_dir, "accuracy_vs_pairs_per_class", "Accuracy vs pairs per class",
                         "pairs per class (pairs.per_class)")


def balanced_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` images, the first ones of each class, as many per class as fit."""
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes]))


def embedding_cells(exp: ExperimentConfig, cells: Sequence[Cell], rows) -> list[Cell]:
    """The cells to map: ``exp.embedding``, else the first finished cell of each arm and pair set (or the first finished cell)."""
    done = {r["cell"] for r in finished(rows, "epochs")}
    if exp.embedding is not None:
        return [c for c in cells if c.id in exp.embedding and c.id in done]
    firsts = {}
    for c in cells:
        if c.id in done:
            firsts.setdefault((c.arm, c.values.get(PAIRS_AXIS)), c)
    return list(firsts.values())


def embedding_map(exp: ExperimentConfig, cells: Sequence[Cell], rows, out_dir: Path) -> Path | None:
    """2-D maps (``exp.embedding_method``) of the test-split backbone features of the chosen runs, coloured by class."""
    chosen = [c for c in embedding_cells(exp, cells, rows) if c.config.data.test_split]
    if not chosen:
        return None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    method = exp.embedding_method
    title = METHOD_NAMES[method]
    fig, axes = _figure(len(chosen), height=4.8)
    table = []
    for ax, cell in zip(axes, chosen):
        loaded = load_backbone(cell.run_dir)
        cfg = loaded.config
        store = load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class)
        store = store.subset(balanced_subset(store.labels, MAP_POINTS))
        feats = extract_features(loaded.module.to(device), store.tensor(), loaded.size, loaded.mean, loaded.std,
                                 batch_size=cfg.features.batch_size)
        xy = embed_2d(feats, method)
        n = len(store.class_names)
        colours = colormaps["tab10"] if n <= 10 else colormaps["turbo"].resampled(n)
        for k, name in enumerate(store.class_names):
            pick = store.labels == k
            ax.scatter(xy[pick, 0], xy[pick, 1], s=6, alpha=0.7, color=colours(k), label=name)
        ax.set(xlabel=f"{title} 1", ylabel=f"{title} 2", xticks=[], yticks=[])
        ax.set_title(textwrap.fill(cell.id, 45), fontsize=9)
        table += [{"cell": cell.id, "image": image_id, f"{method}1": x, f"{method}2": y, "label": int(lab), "class": store.class_names[lab]}
                  for image_id, (x, y), lab in zip(store.ids, xy.tolist(), store.labels)]
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="class", loc="outside right upper", markerscale=2.5)
    fig.suptitle(f"{title} ({METHOD_SETTINGS[method]}) of backbone features: {Path(cfg.data.dataset).name} split "
                 f"{cfg.data.test_split}, {len(store)} images (class-balanced)", fontsize=10)
    return save_plot(fig, table, out_dir, f"embedding_{method}")


def pair_file_calibrations(exp: ExperimentConfig, out_dir: Path) -> list[Path]:
    """Precision-vs-score plots of the pair files with scores (mined pairs): those named in the ``pairs`` axis
    (``mined:<file>``, ...) and those the grid mined itself for its ``+mined`` cells."""
    from sempairs.pairs import load_pairs
    from sempairs.pairs.report import plot_calibration, precision_report

    named = [Path(file) for value in exp.values_of(PAIRS_AXIS) for term in split_pair_terms(str(value))
             for kind, _, file in [term.partition(":")] if file and kind in PAIR_FILE_KINDS]
    cells = expand(exp)
    mined = [cell.mined for cell in cells if cell.mined is not None]
    files = [file for file in dict.fromkeys([*named, *mined]) if file.exists()]
    if not files:
        return []
    cfg = cells[0].config
    store = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)  # the images the runs train on, read once
    if store.labels is None:
        return []
    made = []
    for file in files:
        report = precision_report(load_pairs(file, store), store.labels, store.class_names)
        if not report["calibration"]:  # no score column: nothing to calibrate
            continue
        name = file.stem if file in named else f"{file.parent.name}_{file.stem}"  # one mined file per cell
        made.append(plot_calibration(report, out_dir / f"pairs_{name}.calibration.png", title=name)[0])
    return made


def make_plots(exp: ExperimentConfig, cells: Sequence[Cell] | None = None, rows=None) -> list[Path]:
    """Draw every plot the grid's axes support into ``<experiment>/plots/``; return the PNG paths."""
    cells = cells if cells is not None else expand(exp)
    rows = rows if rows is not None else grid_rows(exp, cells)
    out = exp.directory / "plots"
    made = []
    if exp.compared is not None:
        name = "arms" if exp.compared == ARM else "pairs_bars"
        made.append(grouped_bars(exp, rows, exp.compared, out, name, f"Accuracy per {exp.compared}", delta=False))
        made.append(difference_plot(exp, rows, out))
        made += differences_vs_factors(exp, rows, out)
    if TRANSFORMS_AXIS in exp.axes:
        first = exp.axes[TRANSFORMS_AXIS][0]
        made.append(grouped_bars(exp, rows, TRANSFORMS_AXIS, out, "transforms",
                                 f"Accuracy per augmentation preset, in brackets the change vs {first}", delta=True))
    made.append(accuracy_vs_epoch(exp, rows, out))
    if PER_CLASS_AXIS in exp.axes:
        made.append(accuracy_vs_pairs_per_class(exp, rows, out))
    made.append(embedding_map(exp, cells, rows, out))
    made += pair_file_calibrations(exp, out)
    return [p for p in made if p is not None]
