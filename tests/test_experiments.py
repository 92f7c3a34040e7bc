"""Experiment grids: cells and their ids, a resumable 2x2 grid with its results, report and plots, the shipped configs."""

from __future__ import annotations

import csv
import statistics
from contextlib import contextmanager
from pathlib import Path

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
from sempairs.experiments.grid import ExperimentConfig, cell_dirname, cell_hash, expand, load_experiment, run_grid
from sempairs.experiments.plots import balanced_subset, embedding_map, make_plots
from sempairs.experiments.report import write_report

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PUBLISHED = {"exp_method_comparison.yaml": 18, "exp_long_training.yaml": 12, "exp_transform_ablation.yaml": 18,
             "exp_images_per_class.yaml": 12, "exp_sepp_id.yaml": 6}
SHORT = {"exp_methods_short.yaml": 8}  # not a published comparison: a short budget per method
CPU = {"exp_cpu_study.yaml": 18, "exp_cpu_recipe.yaml": 8, "exp_cpu_recipe_budget.yaml": 8,
       "exp_cpu_recipe_steps.yaml": 8,
       "exp_cpu_recipe_stem.yaml": 4}  # sized for the 2-core CPU (docs/results.md)


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
    assert "done, skipped" in log[0] and "done, skipped" in log[1]
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
    assert "Smoke scale" in report and "not self-supervised" in report and "`train.seed`" in report

    plots = make_plots(exp)
    assert {p.name for p in plots} == {"pairs_bars.png", "accuracy_vs_epoch.png", "embedding_tsne.png"}
    for png in plots:
        assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".csv").stat().st_size > 0
    bars = read_csv(exp.directory / "plots" / "pairs_bars.csv")
    assert len(bars) == 4
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
    assert {p.name for p in plots} == {"pairs_bars.png", "transforms.png", "accuracy_vs_pairs_per_class.png"}
    change = {(r["pairs"], r["pairs.per_class"], r["transforms"], r["metric"]): float(r["change_vs_first"])
              for r in read_csv(exp.directory / "plots" / "transforms.csv")}
    # cell index = 8 transforms + 4 pairs + 2 per_class + seed; sp/157/crop_only has only seed 0 (cell 14)
    assert change[("sp", "157", "crop_only", "knn_top1")] == pytest.approx(top1[14] - (top1[6] + top1[7]) / 2)
    assert change[("sp", "157", "simclr", "knn_top1")] == 0


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
    assert {p.name for p in CONFIGS.glob("exp_*.yaml")} == set(PUBLISHED) | set(SHORT) | set(CPU)


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


def test_the_cpu_study_trains_with_the_quickstart_recipe():
    """Same network, method, augmentation, optimiser, batch and classes. The study keeps the first recipe's
    budget (500 pairs x 6 epochs per class); the quickstart trains 1,000 pairs x 4 epochs, chosen later on
    held-out images (configs/exp_cpu_recipe_budget.yaml, configs/exp_cpu_recipe_steps.yaml)."""
    from sempairs.experiments.quickstart import default_config_path

    study = load_experiment(CONFIGS / "exp_cpu_study.yaml").base
    quick = load_experiment(default_config_path()).base
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
    with pytest.raises(ConfigError, match="add ap to the pairs axis"):
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
