"""One kNN evaluation path: the training loop, the grid and ``sempairs eval knn`` share it; results never collide.

Issue 23 (one evaluation path) and issue 28 (evaluation options validated like the config keys).
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.config import ConfigError, load_config
from sempairs.errors import SempairsWarning
from sempairs.eval.knn import knn_accuracy
from sempairs.eval.protocol import Selection, knn_result
from sempairs.eval.results import read_result, result_path, write_result
from sempairs.experiments import grid
from sempairs.experiments.grid import ExperimentConfig
from sempairs.trained.checkpoint import LAST

SEEN = ["airplane", "cat", "dog", "ship"]


@pytest.fixture(scope="module")
def subset_run(tiny_cifar_zip, tmp_path_factory, train_tiny_run):
    """A 1-epoch run pretrained on 4 classes, 12 memory and 6 query images each, kNN k=20 (trained once)."""
    return train_tiny_run(tmp_path_factory.mktemp("runs"), tiny_cifar_zip, "sub", f"data.classes=[{','.join(SEEN)}]",
                          "data.limit_per_class=12", "data.test_limit_per_class=6", "train.batch_size=16", "knn.k=20")


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_eval_knn_with_other_settings_leaves_the_training_result_and_both_are_readable(subset_run):
    cfg, trained = subset_run
    own = Selection.of_run(cfg)
    training_file = result_path(trained.run_dir / LAST, "knn", own.key)
    before = training_file.read_bytes()
    recorded = json.loads(before)
    assert recorded["selection"]["classes"] == SEEN and recorded["knn_k"] == 20 and recorded["knn_temperature"] == 0.1
    assert (recorded["train_images"], recorded["test_images"]) == (48, 24)  # the run's own selection

    code, out = invoke("eval", "knn", trained.run_dir, "--classes", "all", "--k", 7, "--test-limit-per-class", 0)
    assert code == 0, out
    assert training_file.read_bytes() == before  # not overwritten
    other = Selection.checked({**cfg.data.model_dump(), "classes": None, "test_limit_per_class": None},
                              {"k": 7, "temperature": 0.1}, "test")
    result = read_result(trained.run_dir, "knn", other.key)
    assert read_result(trained.run_dir, "knn", own.key) == recorded
    assert result["selection"]["classes"] is None and result["selection"]["test_limit_per_class"] is None
    assert result["knn_k"] == 7 and (result["train_images"], result["test_images"]) == (120, 100)
    assert result["checkpoint"].endswith(LAST) and str(result_path(trained.run_dir / LAST, "knn", other.key)) in out

    code, out = invoke("eval", "knn", trained.run_dir, "--classes", "unseen")
    assert code == 0, out
    unseen = json.loads(next(p for p in (trained.run_dir / "eval").glob("knn-*.json")
                             if json.loads(p.read_text())["selection"]["classes"] not in (None, SEEN)).read_text())
    assert set(unseen["selection"]["classes"]) == {"automobile", "bird", "deer", "frog", "horse", "truck"}
    assert unseen["knn_k"] == 20 and unseen["train_images"] == 72  # the run's settings and per-class limits


def test_the_same_path_gives_the_training_number(subset_run):
    """The grid's knn_on (used by unseen_classes and random_init) on the run's own selection repeats the
    training loop's final kNN exactly, from the saved weights."""
    from sempairs.experiments.evaluations.base import knn_on, trained_backbone

    cfg, trained = subset_run
    again = knn_on(trained_backbone(trained, cfg).module, cfg)
    assert {k: again[k] for k in ("knn_top1", "knn_top5", "key")} == {k: trained.knn[k] for k in ("knn_top1", "knn_top5", "key")}


@pytest.mark.parametrize("option, value, key", [("--k", 0, "knn.k"), ("--temperature", 0, "knn.temperature"),
                                                ("--temperature", -0.5, "knn.temperature"),
                                                ("--temperature", "nan", "knn.temperature"),
                                                ("--temperature", "inf", "knn.temperature"),
                                                ("--test-split", "train", "data.test_split"),
                                                ("--limit-per-class", -3, "data.limit_per_class")])
def test_eval_knn_refuses_options_the_config_refuses(subset_run, option, value, key):
    _, trained = subset_run
    files = sorted((trained.run_dir / "eval").glob("*.json"))
    code, out = invoke("eval", "knn", trained.run_dir, option, value)
    assert code == 2 and key in out, out
    assert sorted((trained.run_dir / "eval").glob("*.json")) == files  # nothing written


def test_the_config_refuses_queries_from_the_memory_split(tiny_cifar_zip):
    with pytest.raises(ConfigError, match="data.test_split: it is also data.split"):
        load_config(None, [f"data.dataset={tiny_cifar_zip}", "data.test_split=train"])


def test_a_result_records_the_k_it_used_not_the_k_asked(subset_run):
    features, labels = torch.randn(30, 8), torch.arange(30) % 3
    result = knn_result(features, labels, features[:9], labels[:9], 3, k=500, temperature=0.1)
    assert result["knn_k"] == 30 and result["train_images"] == 30
    assert result["knn_top1"] == knn_accuracy(features, labels, features[:9], labels[:9], 3, 30, 0.1)["knn_top1"]
    _, trained = subset_run
    code, out = invoke("eval", "knn", trained.run_dir, "--k", 5000)
    assert code == 0 and "k=48" in out, out  # the run's memory: 4 classes x 12 images


def test_an_older_eval_knn_json_is_read_for_a_keyed_result_with_a_warning(tmp_path):
    write_result(tmp_path / "eval" / "knn.json", {"knn_top1": 50.0})
    with pytest.warns(SempairsWarning, match="named by their selection"):
        assert read_result(tmp_path, "knn", "0123456789") == {"knn_top1": 50.0}
    assert result_path(tmp_path / "epoch_0002.ckpt", "knn", "ab") == tmp_path / "eval" / "epoch_0002-knn-ab.json"


def test_the_old_grid_evaluation_transfer_and_its_columns_are_read_under_the_new_names(tmp_path):
    with pytest.warns(SempairsWarning, match="'transfer' is now 'unseen_classes'"):
        exp = ExperimentConfig(name="t", out_dir=str(tmp_path), axes={"train.seed": [0]}, evaluations=["knn", "transfer"])
    assert exp.evaluations == ["knn", "unseen_classes"]
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "knn_top1", "transfer_seen_knn_top1", "transfer_unseen_knn_top1", "transfer_unseen_classes"])
        writer.writerow(["c0", "61.0", "61.0", "40.5", "bird cat"])
    with pytest.warns(SempairsWarning, match="before 2026-12"):
        row = grid.read_results(path)["c0"]
    assert row == {"cell": "c0", "knn_top1": "61.0", "unseen_knn_top1": "40.5", "unseen_classes": "bird cat"}
    assert math.isfinite(float(row["unseen_knn_top1"]))


def test_a_class_axis_cell_naming_every_class_has_no_unseen_classes_and_random_init_skips_them(tiny_cifar_zip):
    from sempairs.eval.selection import leaves_classes_out
    from sempairs.experiments.evaluations.random_init import knn_of_random_init

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    data = load_config(None, [f"data.dataset={tiny_cifar_zip}"]).data
    assert [leaves_classes_out(data.model_copy(update={"classes": c})) for c in (None, names, names[:9], names[:8])] \
        == [False, False, False, True]
    cfg = load_config(None, [f"data.dataset={tiny_cifar_zip}", "data.size=16", "backbone.small_stem=false",
                             "backbone.width=0.25", "knn.k=5", f"data.classes=[{','.join(names)}]"])
    assert set(knn_of_random_init(None, cfg)) == {"random_init_knn_top1"}  # a cell of a class-count axis: no error
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"classes": names[:8]})})
    assert set(knn_of_random_init(None, cfg)) == {"random_init_knn_top1", "random_init_unseen_knn_top1"}


def test_the_final_test_split_reading_evaluates_finished_cells_without_training_them_again(tiny_cifar_zip, tmp_path):
    """A grid read on held-out images gets its test-split column by running again with ``test_split`` added;
    the number equals ``sempairs eval knn RUN --test-split test`` (the same memory, the test split as queries)."""
    base = {"data": {"dataset": str(tiny_cifar_zip), "size": 16, "classes": SEEN, "test_split": "heldout",
                     "heldout_per_class": 5, "limit_per_class": 12, "test_limit_per_class": 6},
            "backbone": {"small_stem": False, "width": 0.25}, "train": {"epochs": 1, "batch_size": 16}, "knn": {"k": 5},
            "pairs": {"per_class": 8}}
    exp = ExperimentConfig(name="final", out_dir=str(tmp_path), base=base, axes={"train.seed": [0]}, embedding=[],
                           evaluations=["knn"])
    first = grid.run_grid(exp, progress=False)[0]
    run_dir = grid.expand(exp)[0].run_dir
    weights = (run_dir / LAST).read_bytes()
    again = grid.run_grid(exp.model_copy(update={"evaluations": ["knn", "test_split"]}), progress=False)[0]
    assert (run_dir / LAST).read_bytes() == weights and again["knn_top1"] == first["knn_top1"]  # not trained again
    code, out = invoke("eval", "knn", run_dir, "--test-split", "test")
    assert code == 0, out
    final = next(json.loads(p.read_text()) for p in (run_dir / "eval").glob("knn-*.json")
                 if json.loads(p.read_text())["selection"]["test_split"] == "test")
    assert final["train_images"] == 48 and final["test_images"] == 24  # the training pool; 6 test images per class
    assert float(again["test_knn_top1"]) == pytest.approx(final["knn_top1"])
    assert 0 <= float(again["random_init_test_knn_top1"]) <= 100
    with pytest.raises(ConfigError, match="test_split: heldout"):  # a grid read on the test split has nothing to add
        grid.expand(exp.model_copy(update={"evaluations": ["test_split"],
                                           "base": {**base, "data": {**base["data"], "test_split": "test"}}}))
