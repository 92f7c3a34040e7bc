"""The command line as a user runs it: pairs, check, stats, train with overrides, eval knn."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sempairs.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_pairs_commands(tiny_cifar_zip, tmp_path):
    sp, ap = tmp_path / "sp.csv", tmp_path / "ap.csv"
    code, out = invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 5, "--seed", 1, "--out", sp, "--match", ap)
    assert code == 0, out
    assert "wrote 50 semantic pairs" in out and "matched augmented set (50 pairs" in out
    code, out = invoke("pairs", "check", sp, "--data", tiny_cifar_zip)
    assert code == 0 and "ok" in out and "50 pairs" in out, out
    code, out = invoke("pairs", "stats", ap, "--data", tiny_cifar_zip)
    stats = json.loads(out)
    assert stats["pairs"] == 50 and stats["self_pairs"] == 50 and set(stats["per_class"].values()) == {5}


def test_pairs_check_reports_bad_rows(tiny_cifar_zip, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("anchor,positive\ntrain/cat/0000.jpg,train/cat/0000.jpg\n0,99999\n")
    code, out = invoke("pairs", "check", bad, "--data", tiny_cifar_zip)
    assert code == 1
    assert "line 2" in out and "with itself" in out and "line 3" in out and "out of range" in out and "fix:" in out


def test_missing_dataset_is_a_clear_error(tmp_path):
    code, out = invoke("pairs", "from-labels", "cifar100", "--out", tmp_path / "x.csv")
    assert code == 2 and "--download" in out


def test_train_then_eval_knn(tiny_cifar_zip, tmp_path):
    code, out = invoke("train", f"data.dataset={tiny_cifar_zip}", "data.size=16", f"out_dir={tmp_path}", "name=cli",
                       "train.epochs=1", "train.batch_size=50", "backbone.small_stem=false", "knn.k=5")
    assert code == 0, out
    assert "kNN top-1" in out
    code, out = invoke("eval", "knn", tmp_path / "cli", "--k", 5)
    assert code == 0, out
    result = json.loads((tmp_path / "cli" / "knn.json").read_text())
    assert result["knn_k"] == 5 and result["test_images"] == 100


def test_train_config_error_names_the_key(tmp_path):
    code, out = invoke("train", "train.epochz=1")
    assert code == 2 and "train.epochz: unknown key" in out


def test_datasets_lists_local_copies(tiny_cifar_zip, tmp_path, monkeypatch):
    (tmp_path / "cifar10-jpeg.zip").symlink_to(tiny_cifar_zip)
    monkeypatch.setenv("SEMPAIRS_DATA", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    code, out = invoke("datasets")
    assert code == 0
    row = next(line for line in out.splitlines() if "cifar10 " in line)
    assert "cifar10-jpeg.zip" in row
    assert "not found" in next(line for line in out.splitlines() if "stl10" in line)
