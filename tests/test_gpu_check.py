"""bench/gpu_check.py's CPU dry run: every section written, numbers that can be checked, resume, short time, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bench import gpu_check
from conftest import REPO

STEPS = ["environment", "training_speed", "quickstart", "mining", "evaluation"]


def _call(out, data, cache, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEMPAIRS_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", "--out", str(out), "--data", str(data), "--dry-run",
                           *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry_run(tiny_cifar_zip, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check")
    done = _call(root / "out", tiny_cifar_zip, root / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", done


def test_dry_run_writes_every_section_with_positive_numbers(dry_run):
    out, done = dry_run
    record = json.loads((out / "gpu_check.json").read_text())
    assert record["mode"] == "cpu dry run" and record["torch"] == torch.__version__
    assert list(record["steps"]) == STEPS and all(s["status"] == "done" for s in record["steps"].values())
    steps = record["steps"]
    assert steps["environment"]["bf16_matmul_tflops"] > 0
    settings = steps["training_speed"]["settings"]
    assert [name.split()[1] for name in settings] == ["resnet18", "resnet50"]
    for setting in settings.values():
        rates = setting["images_per_s"]
        assert len(rates) == 4 and all(v > 0 for v in rates.values())  # bare, sempairs, DataLoader 2 and 1 workers
        assert sum("DataLoader workers" in name for name in rates) == 2
    quick = steps["quickstart"]
    assert quick["epochs"] == quick["target_epochs"] == 2 and quick["calibration"]["epoch_s"] > 0
    assert list(quick["summary"]["arms"]) == ["SP", "AP", "AP+SP", "random init"]
    written = json.loads((out / "quickstart" / "quickstart.json").read_text())  # what the grid itself wrote
    for arm, entry in quick["summary"]["arms"].items():
        assert entry["settings"]["epochs"] == (0 if arm == "random init" else 2)
        assert entry["seeds"] == written["arms"][arm]["seeds"] and list(entry["seeds"]) == ["0"]
        assert all(0 <= v <= 100 for v in entry["seeds"]["0"].values()) and set(entry["seeds"]["0"]) == {"seen", "unseen"}
    evaluation = steps["evaluation"]
    assert evaluation["train_images"] == 80 and evaluation["test_images"] == 40  # 8 and 4 per class of 10
    assert all(v > 0 for v in evaluation["parts_s"].values()) and set(evaluation["parts_s"]) == {"load", "features", "knn", "linear"}
    table = (out / "gpu_check.md").read_text()
    assert table == gpu_check.markdown(record) and "cpu dry run" in table.splitlines()[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["environment"] + ["training_speed"] * 2 + ["quickstart"] * 5 + \
        ["mining"] * 2 + ["evaluation"] * 4
    assert "of the bare step" in rows[1] and "2 DataLoader workers" in rows[1] and "1 DataLoader workers" in rows[1]


def test_mining_figure_matches_a_brute_force_search(dry_run):
    out, _ = dry_run
    mining = json.loads((out / "gpu_check.json").read_text())["steps"]["mining"]
    x = torch.randn(1000, 64, generator=torch.Generator().manual_seed(0)).double()  # the embeddings it searched
    cos = F.normalize(x, dim=1) @ F.normalize(x, dim=1).T
    cos.fill_diagonal_(-2)
    assert mining["float32"]["mean_top1_cosine"] == pytest.approx(cos.max(dim=1).values.mean().item(), abs=1e-5)
    assert mining["bfloat16"]["mean_top1_cosine"] == pytest.approx(cos.max(dim=1).values.mean().item(), abs=1e-2)
    assert all(mining[p]["seconds"] > 0 and mining[p]["n"] == 1000 for p in ("float32", "bfloat16"))


def test_second_call_keeps_finished_steps(dry_run, tiny_cifar_zip):
    out, _ = dry_run
    before = json.loads((out / "gpu_check.json").read_text())
    said = []
    gpu_check.run_check(_check(out, tiny_cifar_zip, 100), log=said.append)
    after = json.loads((out / "gpu_check.json").read_text())
    assert after["steps"] == before["steps"] and len(after["calls"]) == len(before["calls"]) + 1
    assert said == [f"{step}: done by an earlier call, kept" for step in STEPS]


def _check(out, data, budget_s, record=None):
    return gpu_check.Check(gpu_check.DRY, data, out, gpu_check.time.monotonic() + budget_s,
                           record or gpu_check.open_record(out, gpu_check.DRY, "test", budget_s))


def test_no_time_left_skips_every_step_with_a_note(tmp_path, tiny_cifar_zip):
    record = gpu_check.run_check(_check(tmp_path, tiny_cifar_zip, 0), log=lambda line: None)
    assert [s["status"] for s in record["steps"].values()] == ["skipped"] * len(STEPS)
    assert all("time ran short" in s["note"] and "same --out" in s["note"] for s in record["steps"].values())
    assert (tmp_path / "gpu_check.md").read_text().count("| skipped | time ran short") == len(STEPS)


def test_a_failing_step_records_its_error_and_the_rest_are_kept(dry_run, tiny_cifar_zip, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(dry_run[0], out)
    record = json.loads((out / "gpu_check.json").read_text())
    del record["steps"]["mining"]

    def broken(check, state):
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.RUNNERS, "mining", broken)
    result = gpu_check.run_check(_check(out, tiny_cifar_zip, 100, record), log=lambda line: None)
    assert result["steps"]["mining"]["status"] == "failed" and result["steps"]["mining"]["error"] == "RuntimeError: boom"
    assert "raise RuntimeError" in result["steps"]["mining"]["traceback"]
    assert [s["status"] for name, s in result["steps"].items() if name != "mining"] == ["done"] * 4
    assert "| mining | failed | RuntimeError: boom |" in (out / "gpu_check.md").read_text()


def test_a_gpu_folder_is_not_mixed_with_a_dry_run(tmp_path):
    (tmp_path / "gpu_check.json").write_text(json.dumps({"mode": "gpu", "calls": [], "steps": {}}))
    with pytest.raises(gpu_check.InputError, match="give another --out"):
        gpu_check.open_record(tmp_path, gpu_check.DRY, "test", 1)


def test_data_without_cifar10_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(gpu_check.InputError, match=f"--data {tmp_path}: no CIFAR-10 there. Fix: give the cifar10-jpeg.zip"):
        gpu_check.resolve_data(str(tmp_path))
