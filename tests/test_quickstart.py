"""The README's main job through the command line: every arm and seed, the table, the reading, quickstart.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.config import load_config
from sempairs.eval.protocol import Selection, knn_evaluate
from sempairs.eval.results import read_result
from sempairs.experiments.grid import load_experiment
from sempairs.experiments.quickstart import default_config_path, reading
from sempairs.models import build_backbone

QUICK_BACKBONE = load_experiment(default_config_path()).base["backbone"]  # the quickstart's own network
TINY = ["data.limit_per_class=16", "data.test_limit_per_class=8", "pairs.per_class=4", "train.epochs=2",
        "train.batch_size=10", "knn.k=5", "train.compile=false"]


@pytest.fixture(scope="module")
def quickstart_run(tiny_cifar_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "quickstart"
    result = CliRunner().invoke(app, ["quickstart", "--out-dir", str(out), "--dataset", str(tiny_cifar_zip), *TINY])
    return out, result


def test_quickstart_reports_every_arm_and_seed(quickstart_run):
    out, result = quickstart_run
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "quickstart.json").read_text())
    assert list(summary["arms"]) == ["SP", "AP", "AP+SP", "random init"]
    pairs = {arm: entry["settings"]["pairs"] for arm, entry in summary["arms"].items()}
    assert pairs == {"SP": 20, "AP": 20, "AP+SP": 20, "random init": 0}  # 5 seen classes x 4 pairs; AP+SP: 2 + 2
    epochs = {arm: entry["settings"]["epochs"] for arm, entry in summary["arms"].items()}
    assert epochs == {"SP": 2, "AP": 2, "AP+SP": 2, "random init": 0}
    runs = {"SP": "pairs=sp,pairs.per_class=4,train.seed=0", "AP+SP": "pairs=ap+sp,pairs.per_class=2,train.seed=0"}
    last_steps = [max(int(row["step"]) for row in csv.DictReader((out / "runs" / run / "logs" / "metrics.csv").open()))
                  for run in runs.values()]
    assert last_steps[0] == last_steps[1] == 3  # 20 pairs / batch 10 x 2 epochs: the same 4 steps
    with (out / "runs" / runs["AP+SP"] / "pairs.csv").open() as f:
        sources = [row["source"] for row in csv.DictReader(line for line in f if not line.startswith("#"))]
    assert sorted(set(sources)) == ["augmented", "labels"] and sources.count("augmented") == sources.count("labels") == 10
    for arm, entry in summary["arms"].items():
        assert sorted(entry["seeds"]) == ["0", "1"], arm
        for values in entry["seeds"].values():
            assert set(values) == {"seen", "unseen"} and all(0 <= v <= 100 for v in values.values())
        seen = [v["seen"] for v in entry["seeds"].values()]
        assert entry["seen"]["mean"] == pytest.approx(sum(seen) / 2)
        assert entry["seen"]["spread"] == pytest.approx(abs(seen[0] - seen[1]) / 2**0.5)
    assert summary["seen_classes"] == ["airplane", "automobile", "bird", "cat", "deer"]
    for word in ("SP", "AP+SP", "random init", "Seen classes: SP - AP"):
        assert word in result.output
    assert "When semantic pairs help" in " ".join(result.output.split())  # the closing lines point to the map
    assert "## When semantic pairs help" in (Path(__file__).parents[1] / "docs" / "results.md").read_text()


def test_quickstart_numbers_match_the_runs_and_an_independent_random_init(quickstart_run, tiny_cifar_zip):
    out, _ = quickstart_run
    summary = json.loads((out / "quickstart.json").read_text())
    # the SP arm's seen-class number is the kNN its run measured after training
    run = out / "runs" / "pairs=sp,pairs.per_class=4,train.seed=1"
    trained = read_result(run, "knn", Selection.of_run(load_config(run / "config.yaml")).key)
    assert summary["arms"]["SP"]["seeds"]["1"]["seen"] == pytest.approx(trained["knn_top1"])
    # random init, seed 0, seen classes: an untrained backbone built here, evaluated with the same protocol
    cfg = load_config(None, [f"data.dataset={tiny_cifar_zip}", "data.classes=[airplane,automobile,bird,cat,deer]",
                             *TINY[:2], "knn.k=5", *(f"backbone.{k}={v}" for k, v in QUICK_BACKBONE.items())])
    torch.manual_seed(0)
    backbone, _ = build_backbone(cfg.backbone, cfg.data.size)
    expected = knn_evaluate(backbone, Selection.of_run(cfg), (32, cfg.augment.mean, cfg.augment.std))
    assert summary["arms"]["random init"]["seeds"]["0"]["seen"] == pytest.approx(expected["knn_top1"])


def test_quickstart_resumes_without_training_again(quickstart_run, tiny_cifar_zip):
    out, _ = quickstart_run
    before = json.loads((out / "quickstart.json").read_text())["arms"]
    result = CliRunner().invoke(app, ["quickstart", "--out-dir", str(out), "--dataset", str(tiny_cifar_zip), *TINY])
    assert result.exit_code == 0, result.output
    assert result.output.count("done, skipped") == 6
    assert json.loads((out / "quickstart.json").read_text())["arms"] == before


def test_quickstart_refuses_an_odd_number_of_pairs_per_class(tiny_cifar_zip, tmp_path):
    args = ["quickstart", "--out-dir", str(tmp_path / "q"), "--dataset", str(tiny_cifar_zip), *TINY, "pairs.per_class=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "pairs.per_class=3" in result.output and "even number" in result.output
    assert not (tmp_path / "q").exists()


def test_reading_says_when_a_difference_is_noise_and_when_sp_loses():
    def arm(seen):
        return {"seeds": {str(i): {"seen": v} for i, v in enumerate(seen)},
                "seen": {"mean": sum(seen) / len(seen), "spread": (max(seen) - min(seen)) / 2**0.5}}

    noisy = reading({"arms": {"SP": arm([40, 44]), "AP": arm([41, 42])}})
    assert any("within the seed-to-seed noise" in line for line in noisy)
    loses = reading({"arms": {"SP": arm([35.0, 35.2]), "AP": arm([40.0, 40.2])}})
    assert any("AP beats SP" in line and "-5.0" in line for line in loses)
