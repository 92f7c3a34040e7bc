"""The README's main job: SP, matched AP, AP+SP and an untrained backbone, over seeds, with a reading.

The quickstart is an experiment grid (``sempairs/configs/quickstart.yaml``: its named arms x seed) run
through :func:`sempairs.experiments.grid.run_grid`, so a killed quickstart resumes. AP+SP trains on
half of each set (``pairs.per_class / 2`` augmented and as many semantic pairs per class): the same
pair count and optimiser steps as SP and AP, so its difference from them is what the pairs hold,
not more training. Each arm
pretrains on half of the classes; kNN on those (seen) and on the other half (unseen) tells what
each kind of pair teaches and how far it carries. The table, the reading and
``<out-dir>/quickstart.json`` (per arm: settings and per-seed kNN top-1) are made from the grid's
results rows; the reading applies :mod:`sempairs.experiments.evidence`, as ``report.md`` does.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sempairs.atomic import write_text
from sempairs.config import ConfigError, merge, read_yaml_mapping
from sempairs.experiments.evidence import difference
from sempairs.experiments.grid import ARM, ExperimentConfig, expand, run_grid

ARMS = ("SP", "AP", "AP+SP")  # the config's arms, SP the baseline
PER_CLASS = "pairs.per_class"
RANDOM = "random init"
METRICS = {"seen": ("knn_top1", "random_init_knn_top1"),
           "unseen": ("unseen_knn_top1", "random_init_unseen_knn_top1")}  # (trained column, untrained column)
LEGEND = ("SP: semantic pairs, two different images of one class, drawn from the labels (so SP is not a "
          "self-supervised result). AP: the matched augmented pairs, two views of one image, same images per class "
          "and pair count. AP+SP: half of each set, so the same pair count and optimiser steps as SP and AP. Random "
          "init: the same backbone untrained.")


def default_config_path() -> Path:
    return Path(str(resources.files("sempairs") / "configs" / "quickstart.yaml"))


def quickstart_experiment(out_dir: Path, dataset: str, download: bool, overrides: dict | None = None,
                          seeds: int | None = None) -> ExperimentConfig:
    """The embedded quickstart grid at ``out_dir`` on ``dataset``; ``overrides`` (a nested dict) merge into its base,
    ``seeds`` (None: the config's) sets the seeds ``0 .. seeds - 1``."""
    tree = read_yaml_mapping(default_config_path(), "experiment", "name, base, axes")
    reference = tree["base"]["pairs"]["per_class"]
    tree["base"] = merge(merge(tree["base"], {"data": {"dataset": dataset, "download": download}}), overrides or {})
    if seeds is not None:
        tree["axes"]["train.seed"] = list(range(seeds))
    per_class = tree["base"]["pairs"]["per_class"]
    if per_class != reference:
        tree["arms"] = [_scaled(arm, per_class, reference) for arm in tree["arms"]]
    out_dir = Path(out_dir)
    return ExperimentConfig.model_validate({**tree, "name": out_dir.name, "out_dir": str(out_dir.parent)})


def _scaled(arm: dict, per_class: object, reference: int) -> dict:
    """``arm`` with its pairs per class scaled by ``per_class / reference`` (AP+SP keeps half of each set)."""
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class <= 0:
        raise ConfigError(f"pairs.per_class={per_class}: the quickstart's arms need a whole number of pairs per class")
    scaled = arm[PER_CLASS] * per_class / reference
    if scaled != int(scaled):
        raise ConfigError(f"pairs.per_class={per_class}: the quickstart trains {arm['name']} on {arm[PER_CLASS]} of "
                          f"{reference} pairs per class, {scaled:g} here; give an even number of pairs per class")
    return {**arm, PER_CLASS: int(scaled)}


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def summarise(exp: ExperimentConfig, rows: list[dict[str, str]]) -> dict:
    """Per arm: settings and, per seed, kNN top-1 on the seen and the unseen classes; mean and spread (sample std)."""
    cells = {c.id: c for c in expand(exp)}
    arms: dict[str, dict] = {}
    for arm in (*ARMS, RANDOM):
        mine = [r for r in rows if r[ARM] == (ARMS[0] if arm == RANDOM else arm) and not r.get("error")]
        if not mine:
            continue
        cfg = cells[mine[0]["cell"]].config
        column = 1 if arm == RANDOM else 0
        seeds = {r["train.seed"]: {group: float(r[cols[column]]) for group, cols in METRICS.items() if r.get(cols[column])}
                 for r in mine}
        settings = {"pairs": 0 if arm == RANDOM else int(mine[0]["num_pairs"]), "epochs": 0 if arm == RANDOM else cfg.train.epochs,
                    "method": cfg.method.name, "backbone": cfg.backbone.name, "small_stem": cfg.backbone.small_stem,
                    "width": cfg.backbone.width, "stem_width": cfg.backbone.stem_width or 64,
                    "image_size": cfg.data.size, "batch_size": cfg.train.batch_size, "optimizer": cfg.optim.name,
                    "lr": cfg.optim.lr, "augment": mine[0]["pairs"] if arm != RANDOM else None}
        groups = {g: [s[g] for s in seeds.values() if g in s] for g in METRICS}
        arms[arm] = {"settings": settings, "seeds": seeds,
                     **{g: {"mean": statistics.fmean(v), "spread": _spread(v)} for g, v in groups.items() if v}}
    some = next(iter(cells.values())).config
    return {"dataset": some.data.dataset, "seen_classes": some.data.classes, "knn_k": some.knn.k,
            "test_images_per_class": some.data.test_limit_per_class, "arms": arms}


def _difference(summary: dict, a: str, b: str, group: str):
    """The :func:`sempairs.experiments.evidence.difference` of arm ``a`` over ``b`` on ``group`` (None: not measured)."""
    arms = summary["arms"]
    if a not in arms or b not in arms:
        return None
    per_seed = [{seed: values[group] for seed, values in arms[arm]["seeds"].items() if group in values} for arm in (a, b)]
    return difference(*per_seed)


def reading(summary: dict) -> list[str]:
    """What the numbers show, in sentences built from them (including where SP loses, and what is within noise)."""
    lines = []
    arms = summary["arms"]
    if RANDOM in arms:
        gains = [f"{arm} {arms[arm]['seen']['mean'] - arms[RANDOM]['seen']['mean']:+.1f}" for arm in ARMS if arm in arms]
        lines.append(f"Pretraining vs the untrained backbone, seen classes: {', '.join(gains)} points.")
    for group in ("seen", "unseen"):
        diff = _difference(summary, "SP", "AP", group)
        if diff is None:
            continue
        lines.append(f"{group.capitalize()} classes: SP - AP = {diff.mean:+.1f} ± {diff.spread:.1f} points: "
                     f"{diff.sentence('SP', 'AP')}.")
    both = [_difference(summary, "AP+SP", arm, g) for arm in ("SP", "AP") for g in ("seen", "unseen")]
    if all(both):
        lines.append("AP+SP vs SP / AP: seen {:+.1f} / {:+.1f}, unseen {:+.1f} / {:+.1f} points.".format(
            both[0].mean, both[2].mean, both[1].mean, both[3].mean))
    return lines


def _cell(stats: dict | None) -> str:
    if not stats:
        return "–"
    spread = f" ± {stats['spread']:.1f}" if stats["spread"] == stats["spread"] else ""
    return f"{stats['mean']:.1f}{spread}"


WHERE_NEXT = ("When do semantic pairs help? The measured map (classes, augmentation, training length, pair precision, "
              "SePP-ID at matched steps; configs/exp_cpu_map_*.yaml): docs/results.md, \"When semantic pairs help\".")


def print_summary(summary: dict, seconds: float, out_dir: Path, console: Console) -> None:
    """The table (mean ± spread, the sample std over seeds), the reading and where things are."""
    arms = summary["arms"]
    seen = ", ".join(summary["seen_classes"] or [])
    seeds = max(len(entry["seeds"]) for entry in arms.values())
    table = Table("arm", "pairs", "epochs", "seen classes", "unseen classes",
                  title=f"kNN top-1 % (k={summary['knn_k']}) on {summary['dataset']} test images, mean ± std over {seeds} seeds")
    for arm, entry in arms.items():
        table.add_row(arm, str(entry["settings"]["pairs"]), str(entry["settings"]["epochs"]),
                      _cell(entry.get("seen")), _cell(entry.get("unseen")))
    console.print(table)
    console.print(f"Pretrained on {seen} (seen); unseen: the other classes. " + LEGEND, soft_wrap=True)
    for line in reading(summary):
        console.print(line, soft_wrap=True)
    console.print(f"A CPU-scale comparison, not a reproduction of the study. {seconds / 60:.1f} min. Runs and "
                  f"results.csv: {out_dir}; table: {out_dir / 'quickstart.json'}", soft_wrap=True)
    console.print(WHERE_NEXT, soft_wrap=True)


def run_quickstart(out_dir: Path, dataset: str, download: bool, console: Console, overrides: dict | None = None,
                   seeds: int | None = None) -> dict:
    """Train every arm and seed (resuming what a previous call left unfinished), print the table, write quickstart.json."""
    started = time.perf_counter()
    exp = quickstart_experiment(out_dir, dataset, download, overrides, seeds)
    rows = run_grid(exp, log=console.print)
    summary = summarise(exp, rows)
    devices = sorted({r["device"] for r in rows if r.get("device")})
    summary.update({"date": time.strftime("%Y-%m-%d"), "device": f"{', '.join(devices)} ({os.cpu_count()} CPUs)",
                    "minutes": (time.perf_counter() - started) / 60, "reading": reading(summary),
                    "experiment": exp.model_dump(mode="json")})
    write_text(exp.directory / "quickstart.json", json.dumps(summary, indent=1))
    print_summary(summary, time.perf_counter() - started, exp.directory, console)
    return summary
