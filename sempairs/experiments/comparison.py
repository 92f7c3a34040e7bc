"""What an experiment's report and plots compare: the metrics that carry information, their reference
values, and each arm's difference from the baseline arm read by :mod:`sempairs.experiments.evidence`.

Decided from the results rows, not from metric names: a metric that is 100 in every run (top-5 with
5 classes or fewer) is left out; one equal in every run to an earlier one (kNN top-1 and kNN on
the seen classes) is shown once under both labels; a column an evaluation declares a reference
(:attr:`sempairs.experiments.evaluations.Evaluator.references`, e.g. the untrained backbone) is
drawn beside the metrics it is the reference for, not as a metric of its own.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sempairs.experiments.evaluations import EVALUATORS
from sempairs.experiments.evidence import Difference, difference
from sempairs.experiments.grid import ExperimentConfig

CEILING = 100.0  # a percentage that is this in every run tells nothing


@dataclass(frozen=True)
class Reference:
    """A reference column for a metric (e.g. the untrained backbone's kNN) and how it is named."""

    column: str
    label: str


@dataclass(frozen=True)
class Shown:
    """The metrics to show (column -> label), each metric's reference, and why other metrics are left out."""

    metrics: dict[str, str]
    references: dict[str, Reference]
    left_out: list[str]


def _values(rows: Sequence[dict[str, str]], column: str) -> dict[str, float]:
    """``column`` of the finished rows that hold it, by cell."""
    return {r["cell"]: float(r[column]) for r in rows if not r.get("error") and r.get(column) not in (None, "")}


def shown_metrics(exp: ExperimentConfig, rows: Sequence[dict[str, str]]) -> Shown:
    """The metrics of ``exp`` worth a table and a plot panel, given its results ``rows``."""
    reference_of = {metric: Reference(column, EVALUATORS[name].reference_label or name.replace("_", " "))
                    for name in exp.evaluations for column, metrics in EVALUATORS[name].references.items()
                    for metric in metrics if _values(rows, column)}
    references = {r.column for r in reference_of.values()}
    metrics: dict[str, str] = {}
    left_out = []
    for column, label in exp.metrics().items():
        values = _values(rows, column)
        if not values or column in references:
            continue
        if all(v == CEILING for v in values.values()):
            left_out.append(f"{label}: {CEILING:g} in every run (as many classes as it counts or fewer), no information")
            continue
        same = next((m for m in metrics if _values(rows, m) == values), None)
        if same is not None:
            metrics[same] += f" = {label}"
            continue
        metrics[column] = label
    return Shown(metrics, {m: reference_of[m] for m in metrics if m in reference_of}, left_out)


def per_seed(rows: Sequence[dict[str, str]], column: str, seed_axis: str) -> dict[str, float]:
    """``column`` of the finished rows by their seed (the mean where several rows share one, as a reference does)."""
    seeds: dict[str, list[float]] = {}
    for row in rows:
        if not row.get("error") and row.get(column) not in (None, ""):
            seeds.setdefault(row.get(seed_axis, ""), []).append(float(row[column]))
    return {seed: statistics.fmean(values) for seed, values in seeds.items()}


@dataclass(frozen=True)
class ArmDifference:
    """One arm's difference from the baseline arm within one setting of the other axes."""

    key: tuple[str, ...]
    arm: str
    baseline: str
    difference: Difference


def differences(exp: ExperimentConfig, rows: Sequence[dict[str, str]], metric: str) -> list[ArmDifference]:
    """Each compared value's difference from the first (the baseline) on ``metric``, per setting of the other axes."""
    if exp.compared is None:
        return []
    arms = exp.compared_values()
    others = [a for a in exp.group_axes if a != exp.compared]
    keys = dict.fromkeys(tuple(r[a] for a in others) for r in rows)
    found = []
    for key in keys:
        mine = [r for r in rows if tuple(r[a] for a in others) == key]
        base = per_seed([r for r in mine if r[exp.compared] == arms[0]], metric, exp.seed_axis)
        for arm in arms[1:]:
            diff = difference(per_seed([r for r in mine if r[exp.compared] == arm], metric, exp.seed_axis), base)
            if diff is not None:
                found.append(ArmDifference(key, arm, arms[0], diff))
    return found
