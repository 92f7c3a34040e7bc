"""The command line as a user runs it: pairs, check, stats, train with overrides, eval knn, the options of the
eval commands, which errors are one line."""

from __future__ import annotations

import errno
import json
import time

import pytest
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.errors import InputError

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


def test_pairs_from_labels_precision_is_recorded_and_reported(tiny_cifar_zip, tmp_path):
    sp = tmp_path / "sp80.csv"
    code, out = invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 5, "--precision", 0.8, "--out", sp)
    assert code == 0 and "precision 0.8000 (asked 0.8)" in out, out
    code, out = invoke("pairs", "report", sp, "--data", tiny_cifar_zip)
    assert code == 0 and "precision (same class): 0.800 over 50" in out and "asked when built: 0.8" in out, out
    report = json.loads(sp.with_suffix(".report.json").read_text())
    assert report["precision"] == 0.8 and report["precision_requested"] == 0.8


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
    started = time.perf_counter()
    code, out = invoke("eval", "knn", tmp_path / "cli")  # the run's own selection and settings
    elapsed = time.perf_counter() - started
    assert code == 0, out
    [file] = (tmp_path / "cli" / "eval").glob("knn-*.json")  # the file training wrote, measured again by the same path
    result = json.loads(file.read_text())
    assert result["protocol"] == "knn" and result["knn_k"] == 5 and result["test_images"] == 100
    assert 0 <= result["wall_seconds"] <= elapsed + 0.01  # timed by the command itself
    assert not (tmp_path / "cli" / "knn.json").exists()  # one kNN result file


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


CHECKPOINT_HELP = "A .ckpt file, a run directory, or a plain weights file (with --arch)."
SHARED_HELP = {"--data": "Labelled dataset (default: the run's).",
               "--arch": "Architecture of a plain weights file: resnet18 | resnet50 | a timm model name.",
               "--root": "Folder holding (or to receive) the dataset.",
               "--download": "Download torchvision datasets if not found locally.",
               "--device": "cpu | cuda | auto",
               "--out": "JSON file for the results (default: <run_dir>/eval/<protocol>[-<key>].json).",
               "--force": "Replace the output if it exists (never one of the command's inputs)."}
OWN_HELP = {"knn": ("--classes", "seen (the run's data.classes: default) | unseen"), "linear": ("--augmented", "SGD on flip+crop views"),
            "fewshot": ("--per-class", "Labelled images per class"), "transfer": ("--data", "Datasets (repeatable)"),
            "detect": ("--norm", "frozen | batch: BatchNorm frozen"), "invariance": ("--probe", "Probes (repeatable"),
            "shift": ("--severity", "Severities 1..5")}
NOT_TAKEN = {"transfer": {"--data"}, "detect": {"--data", "--root", "--download"}}  # transfer's --data is its own


@pytest.mark.parametrize("command", list(OWN_HELP))
def test_eval_command_help_lists_the_shared_and_its_own_options(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    code, out = invoke("eval", command, "--help")
    assert code == 0 and CHECKPOINT_HELP in out, out
    lines = out.splitlines()
    own, own_help = OWN_HELP[command]
    assert any(f"{own} " in line and own_help in line for line in lines), out
    for option, text in SHARED_HELP.items():
        shown = any(f"{option} " in line and text in line for line in lines)
        assert shown == (option not in NOT_TAKEN.get(command, set())), (option, out)


def test_detect_checks_norm_before_loading_the_checkpoint(tmp_path):
    code, out = invoke("eval", "detect", tmp_path / "missing.ckpt", "--voc", tmp_path, "--norm", "sync")
    assert code == 2 and "--norm must be frozen or batch, got 'sync'" in out, out


def test_shift_compare_names_a_file_that_is_not_shift_results(tmp_path):
    for name, data in (("binary.json", b"\x81\x8d{"), ("text.json", b"not json")):
        (tmp_path / name).write_bytes(data)
        code, out = invoke("eval", "shift-compare", tmp_path / name, "--out", tmp_path / "cmp")
        assert code == 2 and f"{tmp_path / name} is not a JSON file of shift results" in out, out


@pytest.mark.parametrize("exc, user_error", [
    (InputError("bad value. Fix: another"), True),
    (PermissionError(errno.EACCES, "Permission denied", "/no/access"), True),
    (FileNotFoundError(errno.ENOENT, "No such file", "/no/file"), True),
    (ValueError("a bug"), False),
    (UnicodeDecodeError("utf-8", b"\x81", 0, 1, "invalid start byte"), False),
    (KeyError("a bug"), False),
])
def test_only_user_errors_become_one_line(exc, user_error, monkeypatch):
    def list_datasets():
        raise exc

    monkeypatch.setattr("sempairs.data.registry.list_datasets", list_datasets)
    result = runner.invoke(app, ["datasets"])
    if user_error:
        assert result.exit_code == 2 and result.output.startswith("error:") and len(result.output.splitlines()) == 1
    else:  # a bug: the exception rises with its traceback
        assert result.exit_code == 1 and result.exception is exc and "error:" not in result.output
