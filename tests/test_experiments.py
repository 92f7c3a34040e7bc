"""Experiment grids: cells and their ids, a resumable 2x2 grid with its results, report and plots, the shipped configs."""

from __future__ import annotations

import csv
import json
import statistics
from contextlib import contextmanager
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.config import ConfigError
from sempairs.csvio import write_rows
from sempairs.experiments import grid
from sempairs.experiments.axes import AXES
from sempairs.experiments.evaluations import EVALUATORS, Evaluator
from sempairs.experiments.grid import ExperimentConfig, cell_dirname, cell_hash, expand, grid_rows, load_experiment, run_grid
from sempairs.experiments.plots import balanced_subset, embedding_map, make_plots
from sempairs.experiments.report import write_report

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PUBLISHED = {"exp_method_comparison.yaml": 18, "exp_long_training.yaml": 12, "exp_transform_ablation.yaml": 18,
             "exp_images_per_class.yaml": 12, "exp_sepp_id.yaml": 6}
SHORT = {"exp_methods_short.yaml": 8}  # not a published comparison: a short budget per method
CPU = {"exp_cpu_study.yaml": 18, "exp_cpu_recipe.yaml": 8, "exp_cpu_recipe_budget.yaml": 8,
       "exp_cpu_recipe_steps.yaml": 8,
       "exp_cpu_recipe_stem.yaml": 8}  # sized for the 2-core CPU (docs/results.md)
MAP = {"exp_cpu_map_negatives.yaml": 24, "exp_cpu_map_augment.yaml": 12, "exp_cpu_map_epochs.yaml": 20,
       "exp_cpu_map_precision.yaml": 16, "exp_cpu_map_sepp.yaml": 12}  # each under an hour on the 2-core CPU


def tiny_base(zip_path) -> dict:
    """A run config that trains in seconds on the tiny slice: 40 pairs, one step per epoch."""
    return {"data": {"dataset": str(zip_path), "size": 16}, "pairs": {"per_class": 4},
            "backbone": {"small_stem": False}, "optim": {"warmup_epochs": 0, "lr": 0.6},
            "train": {"epochs": 2, "batch_size": 40, "log_every": 1}, "knn": {"k": 10, "every": 1}}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Interrupt(Exception):
    pass


@contextmanager
def registered(registry, name, entry):
    """``entry`` registered under ``name`` for the block, unregistered afterwards."""
    registry.register(name, entry)
    try:
        yield entry
    finally:
        registry.unregister(name)


def test_grid_resumes_after_a_kill_and_writes_results_report_and_plots(tiny_cifar_zip, tmp_path, monkeypatch):
    exp = ExperimentConfig(name="grid", out_dir=str(tmp_path), base=tiny_base(tiny_cifar_zip),
                           axes={"pairs": ["ap", "sp"], "train.seed": [0, 1]})
    cells = expand(exp)
    calls = []

    def counting_train(cfg, resume=False, **kwargs):
        calls.append((cfg.name, resume))
        return real_train(cfg, resume=resume, **kwargs)

    real_train = grid.train
    monkeypatch.setattr(grid, "train", counting_train)
    epochs = []

    def kill_in_third_cell(epoch, metrics):
        epochs.append(epoch)
        if len(epochs) == 5:  # cells 1 and 2 trained 2 epochs each; cell 3 dies after its first
            raise Interrupt

    with pytest.raises(Interrupt):
        run_grid(exp, callbacks=[kill_in_third_cell], progress=False, log=lambda line: None)
    assert [r["cell"] for r in read_csv(exp.results_path)] == ["pairs=ap,train.seed=0", "pairs=ap,train.seed=1"]
    assert (cells[2].run_dir / "last.ckpt").exists()

    calls.clear()
    epochs.clear()
    log = []
    rows = run_grid(exp, callbacks=[lambda epoch, metrics: epochs.append(epoch)], progress=False, log=log.append)
    assert calls == [(cells[2].run_dir.name, True), (cells[3].run_dir.name, False)]  # finished cells not retrained
    assert epochs == [1, 0, 1]  # the killed cell resumed after its first epoch
    cell_lines = [line for line in log if line.startswith("[")]  # after the note that base sets the optimiser
    assert "done, skipped" in cell_lines[0] and "done, skipped" in cell_lines[1]
    assert read_csv(exp.results_path) == rows and [r["cell"] for r in rows] == [c.id for c in cells]
    for row, cell in zip(rows, cells):
        assert (row["pairs"], row["train.seed"]) == (cell.values["pairs"], cell.values["train.seed"])
        assert row["epochs"] == "2" and row["num_pairs"] == "40" and row["error"] == "" and row["device"] == "cpu"
        assert 0 <= float(row["knn_top1"]) <= float(row["knn_top5"]) <= 100 and float(row["images_per_s"]) > 0
        assert Path(row["run_dir"]) == cell.run_dir and row["test_images"] == "100"

    report = write_report(exp).read_text()
    for metric in ("knn_top1", "knn_top5"):
        for arm in ("ap", "sp"):
            values = [float(r[metric]) for r in rows if r["pairs"] == arm]
            assert f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" in report
    assert "Read against the seed spread** (2 seeds" in report and "not self-supervised" in report and "`train.seed`" in report

    plots = make_plots(exp)
    assert {p.name for p in plots} == {"pairs_bars.png", "differences.png", "accuracy_vs_epoch.png", "embedding_tsne.png"}
    for png in plots:
        assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".csv").stat().st_size > 0
    bars = read_csv(exp.directory / "plots" / "pairs_bars.csv")
    assert len(bars) == 4 or {b["metric"] for b in bars} == {"knn_top1"}  # top-5 left out when 100 in every run
    for bar in bars:
        values = [float(r[bar["metric"]]) for r in rows if r["pairs"] == bar["pairs"]]
        assert float(bar["mean"]) == pytest.approx(statistics.fmean(values))
        assert float(bar["std"]) == pytest.approx(statistics.stdev(values)) and bar["n"] == "2"
    curve = read_csv(exp.directory / "plots" / "accuracy_vs_epoch.csv")
    assert {(c["pairs"], c["epoch"], c["n"]) for c in curve} == {(arm, e, "2") for arm in ("ap", "sp") for e in ("1.0", "2.0")}
    tsne_map = read_csv(exp.directory / "plots" / "embedding_tsne.csv")
    assert {p["cell"] for p in tsne_map} == {cells[0].id, cells[2].id} and len(tsne_map) == 200
    umap_png = embedding_map(exp.model_copy(update={"embedding_method": "umap"}), cells, rows, exp.directory / "plots")
    umap_map = read_csv(umap_png.with_suffix(".csv"))  # a file per method: the t-SNE map stays
    assert umap_png.name == "embedding_umap.png" and (exp.directory / "plots" / "embedding_tsne.png").exists()
    assert [(p["cell"], p["image"]) for p in umap_map] == [(p["cell"], p["image"]) for p in tsne_map]
    assert {"umap1", "umap2"} <= set(umap_map[0]) and "tsne1" in tsne_map[0]

    calls.clear()
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(exp.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 0, result.output
    assert calls == [] and "report:" in result.output and "pairs_bars.png" in result.output
    result = CliRunner().invoke(app, ["experiment", str(config), "--no-resume"])
    assert result.exit_code == 2 and "already holds" in result.output


def test_cell_ids_are_stable_readable_and_distinct(tmp_path):
    axes = {"pairs": ["sp", "ap", "ap+sp", "curated:a/b.csv", "curated:a_b.csv"], "method.name": ["simclr", "byol"],
            "train.seed": [0, 1]}
    exp = ExperimentConfig(name="ids", out_dir=str(tmp_path), axes=axes)
    cells = expand(exp)
    assert len(cells) == 20 and cells[0].id == "pairs=sp,method.name=simclr,train.seed=0"
    assert [c.id for c in cells] == [c.id for c in expand(ExperimentConfig(name="ids", out_dir=str(tmp_path), axes=axes))]
    assert len({c.id for c in cells}) == len({c.run_dir for c in cells}) == 20
    assert cells[0].run_dir == tmp_path / "ids" / "runs" / cells[0].id  # a safe id is its own directory name
    assert all("/" not in c.run_dir.name and ":" not in c.run_dir.name for c in cells)
    assert cell_dirname("pairs=curated:a/b.csv") != cell_dirname("pairs=curated:a_b.csv")


def test_named_axes_map_to_run_settings(tmp_path):
    exp = ExperimentConfig(name="named", out_dir=str(tmp_path), base={"pairs": {"per_class": 5}},
                           axes={"pairs": ["ap", "sp", "ap+sp", "curated:c.csv", "ap+mined:m.csv"],
                                 "transforms": ["simclr", "no_grayscale", "crop_only"]})
    by_id = {c.id: c for c in expand(exp)}
    pairs = {c.values["pairs"]: c.config.pairs for c in by_id.values()}
    assert (pairs["ap"].source, pairs["ap"].per_class, pairs["ap"].add_files) == ("augmented", 5, [])
    assert pairs["sp"].source == "labels"
    both = by_id["pairs=ap+sp,transforms=simclr"]
    assert both.config.pairs.source == "augmented" and both.config.pairs.add_files == [str(both.added_sp)]
    assert both.added_sp.parent == both.run_dir
    assert (pairs["curated:c.csv"].source, pairs["curated:c.csv"].file) == ("file", "c.csv")
    assert (pairs["ap+mined:m.csv"].source, pairs["ap+mined:m.csv"].add_files) == ("augmented", ["m.csv"])
    augment = {c.values["transforms"]: c.config.augment for c in by_id.values()}
    assert augment["simclr"].grayscale_p == 0.2 and augment["no_grayscale"].grayscale_p == 0.0
    assert augment["crop_only"].crop and augment["crop_only"].jitter_p == augment["crop_only"].flip_p == 0.0
    for axes, message in [({"pairs": ["sp+ap"]}, "put ap first"), ({"pairs": ["xp"]}, "unknown term"),
                          ({"transforms": ["sepia"]}, "unknown preset"),
                          ({"pairs": ["ap"], "pairs.source": ["labels"]}, "another axis sets too"),
                          ({"train.epochz": [1]}, "train.epochz: unknown key")]:
        with pytest.raises(ConfigError, match=message):
            expand(ExperimentConfig(name="bad", out_dir=str(tmp_path), axes=axes))
    with pytest.raises(ValueError, match="repeats a value"):
        ExperimentConfig(name="bad", axes={"train.seed": [0, 0]})


def test_pair_precision_axis_sets_the_share_of_same_class_pairs(tmp_path, tiny_cifar_zip):
    from sempairs.train.data import build_pairs, load_split

    exp = ExperimentConfig(name="prec", out_dir=str(tmp_path), base=tiny_base(tiny_cifar_zip),
                           axes={"pair_precision": [1.0, 0.6], "pairs": ["sp", "ap+sp"]})
    cells = {c.id: c for c in expand(exp)}
    assert [c.config.pairs.precision for c in cells.values()] == [1.0, 1.0, 0.6, 0.6]
    store = load_split(cells["pair_precision=0.6,pairs=sp"].config.data, "train", None)
    sp = build_pairs(cells["pair_precision=0.6,pairs=sp"].config.pairs, store)
    assert (store.labels[sp.anchor] == store.labels[sp.positive]).sum() == 24  # 0.6 x 40 pairs
    both = cells["pair_precision=0.6,pairs=ap+sp"]
    grid.write_added_sp(both.config, both.added_sp)
    from sempairs.pairs import load_pairs

    added = load_pairs(both.added_sp, store)
    assert added.meta["precision"] == 0.6 and np.array_equal(added.positive, sp.positive)
    with pytest.raises(ConfigError, match="from 0 to 1"):
        expand(ExperimentConfig(name="bad", out_dir=str(tmp_path), axes={"pair_precision": [1.2]}))


def test_report_and_plots_from_results_alone(tmp_path):
    """Transforms and pairs-per-class charts, missing and stopped runs, from a results.csv (no training)."""
    exp = ExperimentConfig(name="synthetic", out_dir=str(tmp_path), embedding=[],
                           axes={"transforms": ["simclr", "crop_only"], "pairs": ["ap", "sp"],
                                 "pairs.per_class": [50, 157], "train.seed": [0, 1]})
    cells = expand(exp)
    rows = []
    top1 = [10.0 + i for i in range(len(cells))]
    for i, cell in enumerate(cells[:-1]):  # the last cell has not run
        rows.append({"cell": cell.id, **cell.values, "epochs": "100", "num_pairs": "500", "knn_top1": top1[i],
                     "knn_top5": top1[i] + 50, "seconds": "60", "run_dir": str(cell.run_dir), "error": "",
                     "config_hash": cell_hash(cell)})
    rows[0].update(knn_top1="", knn_top5="", error="the loss became nan in epoch 3")
    exp.directory.mkdir(parents=True)
    write_rows(exp.results_path, rows)
    report = write_report(exp).read_text()
    assert "(n=1)" in report and "the loss became nan" in report and "1 of 16 cells have no results" in report
    plots = make_plots(exp)
    assert {p.name for p in plots} == {"pairs_bars.png", "differences.png", "transforms.png", "accuracy_vs_pairs_per_class.png",
                                       "differences_vs_pairs.per_class.png"}
    change = {(r["pairs"], r["pairs.per_class"], r["transforms"], r["metric"]): float(r["change_vs_first"])
              for r in read_csv(exp.directory / "plots" / "transforms.csv")}
    # cell index = 8 transforms + 4 pairs + 2 per_class + seed; sp/157/crop_only has only seed 0 (cell 14)
    assert change[("sp", "157", "crop_only", "knn_top1")] == pytest.approx(top1[14] - (top1[6] + top1[7]) / 2)
    assert change[("sp", "157", "simclr", "knn_top1")] == 0


def test_differences_against_a_numeric_axis_and_against_pair_precision(tmp_path):
    """SP − AP with its spread as lines over epochs, classes (a list: its length) and the pairs' precision."""
    exp = ExperimentConfig(name="factors", out_dir=str(tmp_path), embedding=[], evaluations=["knn", "random_init"],
                           arms=[{"name": "AP", "pairs": "ap"}, {"name": "SP", "pairs": "sp"},
                                 {"name": "SP80", "pairs": "sp", "pairs.precision": 0.8},
                                 {"name": "SePP", "pairs": "ap+mined"}],
                           axes={"train.epochs": [5, 20], "data.classes": [["cat", "dog"], ["cat", "dog", "ship"]],
                                 "train.seed": [0, 1]})
    cells = expand(exp)
    rng = np.random.default_rng(0)
    rows = [{"cell": c.id, **c.values, "arm": c.arm, "epochs": c.values["train.epochs"], "knn_top1": float(rng.uniform(20, 60)),
             "random_init_knn_top1": 15.0, "mined_precision": 70.0 if c.arm == "SePP" else "", "run_dir": str(c.run_dir),
             "error": "", "config_hash": cell_hash(c)} for c in cells]
    made = {p.name for p in make_plots(exp, cells, rows)}
    assert {"differences_vs_train.epochs.png", "differences_vs_data.classes.png", "differences_vs_precision.png"} <= made
    value = {(r["arm"], r["train.epochs"], r["data.classes"], r["train.seed"]): r["knn_top1"] for r in rows}
    two, three = '["cat","dog"]', '["cat","dog","ship"]'
    lines = read_csv(exp.directory / "plots" / "differences_vs_train.epochs.csv")
    got = {(r["arm"], r["data.classes"], r["x"]): float(r["difference"]) for r in lines if r["metric"] == "knn_top1"}
    for epochs in ("5", "20"):
        expected = statistics.fmean(value[("SP", epochs, three, s)] - value[("AP", epochs, three, s)] for s in ("0", "1"))
        assert got[("SP", three, f"{float(epochs)}")] == pytest.approx(expected)
    classes = read_csv(exp.directory / "plots" / "differences_vs_data.classes.csv")
    assert {r["x"] for r in classes} == {"2.0", "3.0"}
    precision = read_csv(exp.directory / "plots" / "differences_vs_precision.csv")
    assert {(r["arm"], r["x"]) for r in precision if not r["reference"]} == {("SP", "1.0"), ("SP80", "0.8"), ("SePP", "0.7")}
    exp = exp.model_copy(update={"name": "all_sp", "arms": [{"name": "AP", "pairs": "ap"}, {"name": "SP", "pairs": "sp"},
                                                           {"name": "SP masked", "pairs": "sp", "method.mask_same_class": True}]})
    cells = expand(exp)
    rows = [{"cell": c.id, **c.values, "arm": c.arm, "epochs": c.values["train.epochs"], "knn_top1": float(rng.uniform(20, 60)),
             "random_init_knn_top1": 15.0, "mined_precision": "", "run_dir": str(c.run_dir), "error": "",
             "config_hash": cell_hash(c)} for c in cells]
    made = {p.name for p in make_plots(exp, cells, rows)}  # every semantic arm at precision 1: no line to draw
    assert "differences_vs_train.epochs.png" in made and "differences_vs_precision.png" not in made


def test_map_subset_is_class_balanced():
    labels = np.repeat(np.arange(4), [50, 3, 50, 50])
    picked = balanced_subset(labels, 40)
    assert np.all(np.diff(picked) > 0)
    assert np.bincount(labels[picked]).tolist() == [10, 3, 10, 10]
    assert picked[:10].tolist() == list(range(10))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_comparison_configs_expand(name):
    exp = load_experiment(CONFIGS / name)
    cells = expand(exp)
    assert len(cells) == PUBLISHED[name] and len({c.id for c in cells}) == len(cells)
    text = (CONFIGS / name).read_text()
    assert text.startswith("#") and "arXiv" in text and "CIFAR-10" in text
    for cell in cells:
        cfg = cell.config
        assert (cfg.data.dataset, cfg.data.size, cfg.backbone.name) == ("cifar10", 32, "resnet18")
        assert cfg.train.epochs >= 100 and cfg.train.batch_size == (250 if "images_per_class" in name else 512)


def test_every_shipped_experiment_config_is_checked():
    assert {p.name for p in CONFIGS.glob("exp_*.yaml")} == set(PUBLISHED) | set(SHORT) | set(CPU) | set(MAP)


@pytest.mark.parametrize("name", sorted(CPU))
def test_cpu_configs_expand_and_the_recipe_is_chosen_on_held_out_training_images(name):
    cells = expand(load_experiment(CONFIGS / name))
    assert len(cells) == CPU[name] and len({c.id for c in cells}) == len(cells)
    for cell in cells:
        cfg = cell.config
        assert (cfg.backbone.name, cfg.data.size, len(cfg.data.classes)) == ("resnet18", 32, 5)
        assert cfg.data.test_split == ("heldout" if "recipe" in name else "test")
        if cell.mined is not None:  # SePP-ID mines with the checkpoint of the same seed's ap cell
            assert cell.encoder.values["pairs"] == "ap"
            assert cell.encoder.values["train.seed"] == cell.values["train.seed"]


@pytest.mark.parametrize("name", sorted(MAP))
def test_map_configs_expand_read_held_out_images_and_match_sepp_steps(name):
    exp = load_experiment(CONFIGS / name)
    cells = expand(exp)
    assert len(cells) == MAP[name] and len(exp.values_of("train.seed")) >= 2
    pairs = {}
    for cell in cells:
        cfg = cell.config
        assert cfg.data.test_split == "heldout" and (cfg.backbone.name, cfg.data.size) == ("resnet18", 32)
        classes = len(cfg.data.classes)
        pairs[cell.id] = cfg.pairs.per_class * classes * (2 if cfg.pairs.add_files else 1)
        if cell.mined is not None:  # matched steps: half AP, as many mined, as many pairs as the same seed's AP cell
            assert exp.mining.matched and cell.encoder.arm == "AP"
            assert cell.encoder.values["train.seed"] == cell.values["train.seed"]
            assert pairs.get(cell.encoder.id, cell.encoder.config.pairs.per_class * classes) == pairs[cell.id]


def test_the_cpu_study_trains_with_the_quickstart_recipe():
    """Same network, method, augmentation, optimiser, batch and classes. The study keeps the first recipe's
    budget (500 pairs x 6 epochs per class) and torchvision's 64-channel stem, with which its numbers were
    recorded; the quickstart trains 1,000 pairs x 5 epochs and, since 2026-12-05, a 16-channel stem, both
    chosen later on held-out images (configs/exp_cpu_recipe_budget.yaml, configs/exp_cpu_recipe_steps.yaml,
    configs/exp_cpu_recipe_stem.yaml)."""
    from sempairs.experiments.quickstart import default_config_path

    study = load_experiment(CONFIGS / "exp_cpu_study.yaml").base
    quick = load_experiment(default_config_path()).base
    assert (study["backbone"].get("stem_width"), quick["backbone"].pop("stem_width")) == (None, 16)
    for section in ("backbone", "method", "augment", "optim"):
        assert study[section] == quick[section], section
    assert study["train"]["batch_size"] == quick["train"]["batch_size"]
    assert {k: study["data"][k] for k in ("classes", "limit_per_class")} == {k: quick["data"][k] for k in ("classes", "limit_per_class")}


@pytest.mark.parametrize("name", sorted(SHORT))
def test_short_budget_configs_expand(name):
    cells = expand(load_experiment(CONFIGS / name))
    assert len(cells) == SHORT[name] and len({c.config.method.name for c in cells}) == len(cells)


def test_base_may_be_a_run_yaml_beside_the_experiment(tmp_path):
    (tmp_path / "run.yaml").write_text("train: {epochs: 7}\nmethod: {name: byol}\n")
    (tmp_path / "exp.yaml").write_text(f"name: e\nout_dir: {tmp_path}\nbase: run.yaml\naxes: {{train.seed: [0, 1]}}\n")
    cells = expand(load_experiment(tmp_path / "exp.yaml"))
    assert [(c.config.train.epochs, c.config.method.name, c.config.train.seed) for c in cells] == [(7, "byol", 0), (7, "byol", 1)]
    (tmp_path / "typo.yaml").write_text("name: e\naxis: {train.seed: [0]}\n")
    with pytest.raises(ConfigError, match="axis: unknown key"):
        load_experiment(tmp_path / "typo.yaml")


def test_a_stopped_cell_is_recorded_and_not_retried(tiny_cifar_zip, tmp_path, monkeypatch):
    exp = ExperimentConfig(name="stop", out_dir=str(tmp_path), base=tiny_base(tiny_cifar_zip),
                           axes={"train.collapse_std": [100.0]})
    [row] = run_grid(exp, progress=False, log=lambda line: None)
    assert "collapsed" in row["error"] and row["knn_top1"] == ""
    monkeypatch.setattr(grid, "train", lambda *a, **k: pytest.fail("a stopped cell was trained again"))
    assert run_grid(exp, progress=False, log=lambda line: None) == [row]
    report = write_report(exp).read_text()
    assert "## Stopped runs" in report and "collapsed" in report


def test_skip_rules_drop_cells_and_sepp_cells_link_their_ap_encoder(tmp_path):
    exp = ExperimentConfig(name="sepp", out_dir=str(tmp_path), base={"pairs": {"per_class": 5}},
                           axes={"transforms": ["simclr", "crop_only"], "pairs": ["ap+mined", "ap", "sp"], "train.seed": [0, 1]},
                           skip=[{"transforms": "crop_only", "pairs": "ap+mined"}])
    cells = {c.id: c for c in expand(exp)}
    assert len(cells) == 2 * 3 * 2 - 2 and not any("crop_only,pairs=ap+mined" in i for i in cells)
    mined = cells["transforms=simclr,pairs=ap+mined,train.seed=1"]
    assert mined.encoder is cells["transforms=simclr,pairs=ap,train.seed=1"]
    assert mined.config.pairs.source == "augmented" and mined.config.pairs.add_files == [str(mined.mined)]
    assert mined.mined.parent == mined.run_dir and mined.added_sp is None
    assert cell_hash(mined) != cell_hash(mined, grid.MiningSettings(k=2))  # how it mines is part of what it is
    with pytest.raises(ConfigError, match="the grid has 0"):
        expand(ExperimentConfig(name="x", out_dir=str(tmp_path), axes={"pairs": ["ap+mined", "sp"]}))
    with pytest.raises(ConfigError, match="use ap\\+mined"):
        expand(ExperimentConfig(name="x", out_dir=str(tmp_path), axes={"pairs": ["sp+mined", "ap"]}))
    with pytest.raises(ValueError, match="must name axes of the grid"):
        ExperimentConfig(name="x", axes={"pairs": ["ap"]}, skip=[{"transform": "crop_only"}])


def test_sepp_cell_mines_nearest_neighbours_of_the_ap_checkpoint(tiny_cifar_zip, tmp_path, monkeypatch):
    import torch

    from sempairs.trained.loading import load_backbone
    from sempairs.pairs import load_pairs
    from sempairs.pairs.mine import embed
    from sempairs.train.data import load_split

    base = tiny_base(tiny_cifar_zip)
    base["knn"]["every"] = 0
    exp = ExperimentConfig(name="sepp", out_dir=str(tmp_path), base=base, axes={"pairs": ["ap+mined", "ap"]},
                           mining={"k": 1, "duplicate_threshold": None})
    order = []
    real_train = grid.train
    monkeypatch.setattr(grid, "train", lambda cfg, **kw: order.append(cfg.name) or real_train(cfg, **kw))
    rows = {r["pairs"]: r for r in run_grid(exp, progress=False, log=lambda _: None)}
    assert order == ["pairs=ap", "pairs=ap+mined"]  # the encoder trains first, whatever the axis order
    cells = {c.values["pairs"]: c for c in expand(exp)}
    cfg = cells["ap+mined"].config
    store = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    mined = load_pairs(cells["ap+mined"].mined, store)
    # independent check: each anchor's partner is its most cosine-similar other image under the AP checkpoint
    encoder = load_backbone(cells["ap"].run_dir)
    feats = torch.nn.functional.normalize(embed(store, encoder, encoder.size, encoder.mean, encoder.std), dim=1)
    sim = feats @ feats.T
    sim.fill_diagonal_(-2)
    best = sim.argmax(dim=1).numpy()
    assert all(best[a] == p or best[p] == a for a, p in zip(mined.anchor, mined.positive))
    same = float(np.mean(store.labels[mined.anchor] == store.labels[mined.positive]))
    assert float(rows["ap+mined"]["mined_precision"]) == pytest.approx(100 * same)
    assert int(rows["ap+mined"]["mined_pairs"]) == len(mined) and int(rows["ap+mined"]["num_pairs"]) == 40 + len(mined)
    from sempairs.experiments.plots import make_plots

    plots = [p.name for p in make_plots(exp)]  # the grid's own mined file gets its calibration plot
    assert f"pairs_{cells['ap+mined'].mined.parent.name}_{cells['ap+mined'].mined.stem}.calibration.png" in plots


def test_matched_ap_mined_arm_trains_as_many_pairs_and_steps_as_ap(tiny_cifar_zip, tmp_path):
    import torch

    from sempairs.experiments.generated import _matched_count
    from sempairs.trained.checkpoint import LAST

    base = tiny_base(tiny_cifar_zip)
    base["knn"]["every"] = 0
    base["train"].update(epochs=1, batch_size=10)
    exp = ExperimentConfig(name="matched", out_dir=str(tmp_path), base=base, mining={"matched": True},
                           arms=[{"name": "AP", "pairs": "ap"}, {"name": "SePP-ID", "pairs": "ap+mined", "pairs.per_class": 2}])
    rows = {r["arm"]: r for r in run_grid(exp, progress=False, log=lambda _: None)}
    assert rows["AP"]["num_pairs"] == rows["SePP-ID"]["num_pairs"] == "40" and rows["SePP-ID"]["mined_pairs"] == "20"
    steps = {arm: torch.load(Path(r["run_dir"]) / LAST, weights_only=False)["step"] for arm, r in rows.items()}
    assert steps == {"AP": 4, "SePP-ID": 4}  # 40 pairs in batches of 10, one epoch
    unmatched = exp.model_copy(update={"mining": grid.MiningSettings()})
    assert [cell_hash(c, unmatched.mining) for c in expand(unmatched)][1] != rows["SePP-ID"]["config_hash"]
    thresholds = ExperimentConfig(name="t", out_dir=str(tmp_path), axes={"pairs": ["ap", "ap+mined@0.8", "ap+mined@0.5"]})
    cells = expand(thresholds)
    assert [grid.cell_mining(c).threshold for c in cells] == [None, 0.8, 0.5] and cells[1].encoder is cells[0]
    assert len({cell_hash(c) for c in cells}) == 3
    with pytest.raises(ConfigError, match="threshold from -1 to 1"):
        expand(ExperimentConfig(name="t", out_dir=str(tmp_path), axes={"pairs": ["ap", "ap+mined@1.5"]}))
    from sempairs.pairs import PairSet
    with pytest.raises(ValueError, match="3 pairs mined .* 5 needed"):
        _matched_count(PairSet.build([0, 1, 2], [3, 4, 5]), 5, seed=0)


def test_a_section_axis_sets_several_keys_of_one_cell(tmp_path):
    exp = ExperimentConfig(name="arch", out_dir=str(tmp_path), axes={
        "backbone": [{"small_stem": False}, {"small_stem": True, "width": 0.25}], "train.seed": [0]})
    backbones = [c.config.backbone for c in expand(exp)]
    assert [(b.small_stem, b.width) for b in backbones] == [(False, 1.0), (True, 0.25)]
    with pytest.raises(ValueError, match="each value is a mapping"):
        ExperimentConfig(name="x", axes={"backbone": ["resnet50"]})
    with pytest.raises(ConfigError, match="another axis sets too"):
        expand(ExperimentConfig(name="x", out_dir=str(tmp_path), axes={"backbone": [{"width": 0.5}], "backbone.width": [1.0]}))


def test_a_section_axis_value_is_a_readable_tick_label():
    from sempairs.experiments.plots import _tick

    value = '{"name":"resnet18","small_stem":true,"width":0.25}'
    assert _tick(["backbone"], [value]) == "name=resnet18\nsmall_stem=true\nwidth=0.25"
    assert _tick(["backbone", "train.batch_size"], [value, "128"]) == \
        "backbone:\nname=resnet18\nsmall_stem=true\nwidth=0.25\nbatch_size=128"
    assert _tick(["pairs", "train.seed"], ["ap+sp", "1"]) == "pairs=ap+sp\nseed=1"


def test_an_evaluation_registered_from_outside_fills_its_column_of_a_tiny_grid(tiny_cifar_zip, tmp_path):
    seen = []

    def epochs_times_ten(result, cfg):
        seen.append(cfg.name)
        return {"toy_score": 10.0 * len(result.history), "toy_setting": "tiny"}

    toy = Evaluator({"toy_score": "toy score (epochs x 10)"}, epochs_times_ten)
    with registered(EVALUATORS, "toy_eval", toy):
        exp = ExperimentConfig(name="toy", out_dir=str(tmp_path), base=tiny_base(tiny_cifar_zip), axes={"train.seed": [0]},
                               evaluations=["knn", "toy_eval"], embedding=[])
        assert exp.metrics() == {"knn_top1": "kNN top-1 accuracy (%)", "knn_top5": "kNN top-5 accuracy (%)",
                                 "toy_score": "toy score (epochs x 10)"}
        [row] = run_grid(exp, progress=False, log=lambda line: None)
        report = write_report(exp).read_text()
    assert seen == [Path(row["run_dir"]).name]  # evaluated once, the cell it trained
    assert (row["toy_score"], row["toy_setting"]) == ("20.0", "tiny") and row["knn_top1"] != ""
    assert read_csv(exp.results_path)[0]["toy_score"] == "20.0"
    assert "## toy score (epochs x 10)" in report and "20.00" in report
    with pytest.raises(ValueError, match="unknown evaluation"):  # gone once unregistered
        ExperimentConfig(name="toy", axes={"train.seed": [0]}, evaluations=["toy_eval"])


def test_a_named_axis_registered_from_outside_sets_the_cells_configs(tmp_path):
    def lr_scale(value, run_dir):
        return ({"optim.lr": 0.1 * float(value), "pairs.add_files": [str(run_dir / "toy.csv")]},
                {"sp": run_dir / "toy.csv"})

    with registered(AXES, "lr_scale", lr_scale):
        exp = ExperimentConfig(name="toy", out_dir=str(tmp_path), axes={"lr_scale": [1, 5], "train.seed": [0]})
        cells = expand(exp)
        with pytest.raises(ConfigError, match="another axis sets too"):
            expand(ExperimentConfig(name="x", out_dir=str(tmp_path), axes={"lr_scale": [1], "optim.lr": [0.2]}))
    assert [c.id for c in cells] == ["lr_scale=1,train.seed=0", "lr_scale=5,train.seed=0"]
    assert [c.config.optim.lr for c in cells] == [pytest.approx(0.1), pytest.approx(0.5)]
    for cell in cells:
        assert cell.config.pairs.add_files == [str(cell.run_dir / "toy.csv")] and cell.added_sp == cell.run_dir / "toy.csv"
    with pytest.raises(ValueError, match="neither a dotted config key"):  # gone once unregistered
        ExperimentConfig(name="toy", axes={"lr_scale": [1]})


def test_two_grids_of_one_name_at_once_lose_no_row_and_keep_experiment_yaml(tmp_path, monkeypatch):
    import os

    from sempairs.experiments.grid import read_results

    a = ExperimentConfig(name="same", out_dir=str(tmp_path), axes={"train.seed": [0, 1]})
    (tmp_path / "b.yaml").write_text(f"name: same\nout_dir: {tmp_path}\naxes: {{optim.lr: [0.1]}}\n")
    seen = {}

    def fake_cell(exp, cell, *args):
        """Grid a's cells: while the first runs, grid b (same name, other axes) starts; before the second is
        written, another writer adds a row to results.csv (as a grid on a file system without flock would)."""
        if cell.config.train.seed == 0:
            seen["b"] = CliRunner().invoke(app, ["experiment", str(tmp_path / "b.yaml")])
        else:
            write_rows(a.results_path, [*read_results(a.results_path).values(), {"cell": "other", "error": ""}])
        return {"cell": cell.id, **cell.values, "error": "", "config_hash": cell_hash(cell)}

    monkeypatch.setattr(grid, "run_cell", fake_cell)
    rows = run_grid(a, log=lambda line: None)
    assert seen["b"].exit_code == 2, seen["b"].output
    assert f"is in use by another sempairs run (pid {os.getpid()}" in " ".join(seen["b"].output.split())
    assert [r["cell"] for r in rows] == [c.id for c in expand(a)]
    assert list(read_results(a.results_path)) == [*(c.id for c in expand(a)), "other"]   # no row lost
    assert yaml.safe_load((a.directory / "experiment.yaml").read_text())["axes"] == {"train.seed": [0, 1]}

# The afternoon quickstart's numbers per seed (docs/results.md): (seen, unseen) kNN top-1 of seeds 0 and 1.
QUICKSTART_SEEDS = {"SP": [(53.0, 56.3), (52.6, 55.8)], "AP": [(57.5, 60.6), (57.7, 63.0)],
                    "AP+SP": [(55.0, 58.7), (55.9, 59.6)], "random": [(43.6, 46.5), (44.2, 47.6)]}


def quickstart_rows(exp) -> list[dict]:
    """Results rows of the quickstart's grid holding QUICKSTART_SEEDS, as the evaluations write them (5 classes: top-5 100)."""
    rows = []
    for cell in expand(exp):
        seed = int(cell.values["train.seed"])
        (seen, unseen), (random_seen, random_unseen) = QUICKSTART_SEEDS[cell.arm][seed], QUICKSTART_SEEDS["random"][seed]
        rows.append({"cell": cell.id, "arm": cell.arm, **cell.values, "epochs": "5", "num_pairs": "5000",
                     "knn_top1": seen, "knn_top5": 100.0, "unseen_knn_top1": unseen,
                     "random_init_knn_top1": random_seen, "random_init_unseen_knn_top1": random_unseen,
                     "train_images": "5000", "seconds": "60", "run_dir": str(cell.run_dir), "error": "",
                     "config_hash": cell_hash(cell)})
    return rows


def test_a_quickstart_grid_and_its_report_agree_with_the_quickstart_reading(tiny_cifar_zip, tmp_path):
    from sempairs.experiments.quickstart import quickstart_experiment, reading, summarise

    exp = quickstart_experiment(tmp_path / "qs", str(tiny_cifar_zip), False)
    assert [c.id for c in expand(exp)][:2] == ["pairs=sp,pairs.per_class=1000,train.seed=0",  # the ids before arms
                                               "pairs=sp,pairs.per_class=1000,train.seed=1"]
    exp.directory.mkdir(parents=True)
    write_rows(exp.results_path, quickstart_rows(exp))
    report = write_report(exp).read_text()
    said = reading(summarise(exp, grid_rows(exp)))
    assert "Seen classes: SP - AP = -4.8 ± 0.3 points: AP beats SP by more than twice the seed spread." in said
    assert "Unseen classes: SP - AP = -5.8 ± 1.7 points: AP beats SP by more than twice the seed spread." in said
    assert "AP − SP = +4.80 ± 0.32 points: AP beats SP by more than twice the seed spread." in report
    assert "AP − SP = +5.75 ± 1.73 points: AP beats SP by more than twice the seed spread." in report
    assert "Smoke" not in report and "no evidence" not in report and "Read against the seed spread** (2 seeds" in report
    # one table for kNN top-1 (the seen classes); top-5 (100 % with 5 classes) and random init not tables of their own
    assert [line for line in report.splitlines() if line.startswith("## ")] == [
        "## How to read it", "## Reading: each arm against SP",
        "## kNN top-1 accuracy (%)",
        "## kNN top-1, classes not seen in pretraining (%)", "## Runs"]
    assert "Left out: kNN top-5" in report
    assert "| SP | AP | AP+SP | AP − SP | AP+SP − SP | random init (reference) |" in report
    assert "| 52.80 ± 0.28 | 57.60 ± 0.14 | 55.45 ± 0.64 | +4.80 ± 0.32 (difference) | +2.65 ± 0.70 (difference) | 43.90 ± 0.42 |" in report
    assert "pairs.per_class" not in report.split("## Runs")[0].split("## Reading")[1]  # no column of dashes

    plots = make_plots(exp)
    assert {p.name for p in plots} == {"arms.png", "differences.png"}
    diffs = {(d["arm"], d["metric"]): d for d in read_csv(exp.directory / "plots" / "differences.csv")}
    assert set(diffs) == {(arm, m) for arm in ("AP", "AP+SP") for m in ("knn_top1", "unseen_knn_top1")}
    unseen = diffs[("AP", "unseen_knn_top1")]
    ap, sp = [[QUICKSTART_SEEDS[a][s][1] for s in (0, 1)] for a in ("AP", "SP")]
    assert float(unseen["difference"]) == pytest.approx(statistics.fmean(ap) - statistics.fmean(sp))
    assert float(unseen["spread"]) == pytest.approx((statistics.stdev(ap) ** 2 + statistics.stdev(sp) ** 2) ** 0.5)
    assert (unseen["baseline"], unseen["seeds"], unseen["verdict"]) == ("SP", "2", "difference")
    panels = read_csv(exp.directory / "plots" / "arms.csv")
    reference = [p for p in panels if p.get("reference")]
    assert [(p["metric"], p["reference"]) for p in reference] == [("knn_top1", "random_init_knn_top1"),
                                                                  ("unseen_knn_top1", "random_init_unseen_knn_top1")]
    assert float(reference[0]["mean"]) == pytest.approx(43.9) and reference[0]["n"] == "2"  # one value per seed


def test_arms_cross_the_axes_keep_their_cells_and_are_checked(tmp_path):
    matched = ExperimentConfig(name="m", out_dir=str(tmp_path), axes={"pairs.per_class": [500, 1000], "train.epochs": [6, 3],
                                                                       "pairs": ["ap", "sp"], "train.seed": [0, 1]},
                               skip=[{"pairs.per_class": 500, "train.epochs": 3}, {"pairs.per_class": 1000, "train.epochs": 6}])
    arms = ExperimentConfig(name="m", out_dir=str(tmp_path), axes={"pairs": ["ap", "sp"], "train.seed": [0, 1]},
                            arms=[{"name": "long", "pairs.per_class": 500, "train.epochs": 6},
                                  {"name": "wide", "pairs.per_class": 1000, "train.epochs": 3}])
    cells = expand(arms)
    assert [c.id for c in cells] == [c.id for c in expand(matched)]  # the same cells, so the same run folders
    assert [cell_hash(c) for c in cells] == [cell_hash(c) for c in expand(matched)]
    assert [c.arm for c in cells] == ["long"] * 4 + ["wide"] * 4
    assert (cells[6].config.pairs.per_class, cells[6].config.train.epochs, cells[6].config.pairs.source) == (1000, 3, "labels")
    assert arms.columns == ["arm", "pairs.per_class", "train.epochs", "pairs", "train.seed"]
    assert arms.group_axes == ["arm", "pairs"] and arms.compared == "arm" and arms.compared_values() == ["long", "wide"]
    assert len(expand(arms.model_copy(update={"skip": [{"arm": "wide", "pairs": "sp"}]}))) == 6
    for bad, message in [({"arms": [{"pairs": "sp"}]}, "give each arm a name"),
                         ({"arms": [{"name": "a", "pairs": "sp"}, {"name": "a", "pairs": "ap"}]}, "same name"),
                         ({"arms": [{"name": "a", "pairs": "sp"}, {"name": "b", "pairs": "sp"}]}, "same settings"),
                         ({"arms": [{"name": "a", "train.seed": 1}], "axes": {"train.seed": [0]}}, "both the arms and the axes"),
                         ({"arms": [{"name": "a", "colour": "red"}]}, "neither a dotted config key"),
                         ({"axes": {}}, "at least one axis")]:
        with pytest.raises(ValueError, match=message):
            ExperimentConfig.model_validate({"name": "x", **bad})


def test_plots_of_a_class_count_axis_keep_each_groups_reference_and_a_readable_width(tmp_path):
    """The untrained backbone's accuracy changes with the class count: each group gets its own reference level
    (not one line at the mean of all), the lines' reference follows the x axis, and long class lists are shortened
    in the labels so the figure stays within a readable width."""
    classes = [["airplane", "automobile"], ["airplane", "automobile", "bird", "cat", "deer"],
               ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]]
    exp = ExperimentConfig(name="classes", out_dir=str(tmp_path), embedding=[], evaluations=["knn", "random_init"],
                           arms=[{"name": "AP", "pairs": "ap"}, {"name": "SP", "pairs": "sp"}],
                           axes={"data.classes": classes, "method.mask_same_class": [False, True], "train.seed": [0, 1]})
    cells = expand(exp)
    untrained = {2: 75.0, 5: 42.0, 10: 27.0}
    rows = [{"cell": c.id, **c.values, "arm": c.arm, "epochs": "20", "run_dir": str(c.run_dir), "error": "",
             "knn_top1": untrained[len(json.loads(c.values["data.classes"]))] + (10.0 if c.arm == "AP" else 8.0) + int(c.values["train.seed"]),
             "random_init_knn_top1": untrained[len(json.loads(c.values["data.classes"]))], "config_hash": cell_hash(c)}
            for c in cells]
    made = {p.name: p for p in make_plots(exp, cells, rows)}
    levels = {r["data.classes"]: float(r["mean"]) for r in read_csv(exp.directory / "plots" / "arms.csv")
              if r.get("reference") == "random_init_knn_top1"}
    assert {len(json.loads(k)): v for k, v in levels.items()} == untrained
    lines = read_csv(exp.directory / "plots" / "differences_vs_data.classes.csv")
    gaps = {r["x"]: float(r["difference"]) for r in lines if r["arm"] == "random init"}
    assert gaps == {"2.0": -10.5, "5.0": -10.5, "10.0": -10.5}  # random init - AP within each class count
    for name in ("arms.png", "differences.png"):
        width = matplotlib.image.imread(made[name]).shape[1]
        assert width <= 21 * 120, f"{name} is {width} px wide"
