"""Experiment trackers (W&B offline, MLflow on a local store) and the online linear probe, on a tiny CIFAR-10 slice."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest
import torch

from sempairs.config import ConfigError
from sempairs.train import train
from sempairs.trained.checkpoint import read_checkpoint
from sempairs.trained.loading import load_method
from sempairs.trained.features import extract_features
from sempairs.train.data import load_run_data

from test_train import Interrupt, kill_after, tiny_config

SMALL = ("backbone.width=0.25", "train.precision=32-true")  # seconds per run on a busy 2-core machine


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """W&B offline and silent, its files under the test folder; MLflow's store left to the run folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def wandb_records(path: Path) -> list:
    """The records of a W&B offline run file (``run-<id>.wandb``): LevelDB's log format of protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768  # a record header never straddles a 32 KiB block: the block's tail is padding
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_run(run_dir: Path) -> tuple[set[str], list[dict], dict]:
    """(run ids, history rows, config) of every offline W&B run file under ``run_dir``, in the order written."""
    ids, rows, config = set(), [], {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
            elif kind == "config":
                config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return ids, rows, config


def history(run_dir: Path) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "history.csv")))


def test_wandb_and_mlflow_get_the_history_and_a_resumed_run_continues_them(tiny_cifar_zip, tmp_path, offline_trackers):
    pytest.importorskip("wandb", reason="the .[wandb] extra is not installed")
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="the .[mlflow] extra is not installed").MlflowClient

    cfg = tiny_config(tiny_cifar_zip, tmp_path, *SMALL, "train.loggers=[wandb,mlflow]", "train.epochs=2")
    with pytest.raises(Interrupt):
        train(cfg, callbacks=[kill_after(1)], progress=False)
    first = json.loads((cfg.run_dir / "trackers.json").read_text())
    longer = tiny_config(tiny_cifar_zip, tmp_path, *SMALL, "train.loggers=[wandb,mlflow]", "train.epochs=3")
    train(longer, resume=True, progress=False)
    run_dir, ids = cfg.run_dir, json.loads((cfg.run_dir / "trackers.json").read_text())
    assert ids["wandb"] == first["wandb"] and ids["mlflow"] == first["mlflow"] and ids["attempts"] == 2
    assert not (run_dir / "logs").exists()  # csv was not asked for
    rows = history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]

    wandb_ids, wandb_rows, config = wandb_run(run_dir)
    assert wandb_ids == {ids["wandb"]["id"]}  # two offline files of one run
    epochs = [r for r in wandb_rows if "epoch/loss" in r]
    assert [e["epoch/epoch"] for e in epochs] == [1, 2, 3]  # each epoch once, across the kill
    for logged, row in zip(epochs, rows):
        for key in ("loss", "lr", "embedding_spread"):
            assert logged[f"epoch/{key}"] == float(row[key]), key  # history.csv's repr round-trips exactly
    assert config["train.epochs"] == 2 and config["resume-1/train.epochs"] == 3 and config["name"] == "t"

    client = MlflowClient(ids["mlflow"]["tracking_uri"])
    assert ids["mlflow"]["tracking_uri"] == f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
    run = client.get_run(ids["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "2"
    assert run.data.params["resume-1/train.epochs"] == "3" and run.data.params["data.size"] == "16"
    for key in ("loss", "lr", "embedding_spread"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"epoch/{key}"))
        assert logged == [(step, float(r[key])) for step, r in zip((4, 9, 14), rows)], key  # 200 pairs / 40 a step
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
    assert steps == [0, 2, 4, 5, 7, 9, 10, 12, 14]  # train.log_every=2 and each epoch's last step, of both attempts


def step_losses(run_dir: Path) -> list[str]:
    """Every logged step loss, as written, of the first attempt and any resumes."""
    files = [run_dir / "logs" / "metrics.csv", *sorted((run_dir / "logs").glob("resume-*/metrics.csv"))]
    return [r["loss"] for f in files for r in csv.DictReader(open(f)) if r["loss"]]


def test_the_online_probe_leaves_pretraining_unchanged_and_resumes_exactly(tiny_cifar_zip, tmp_path):
    off = train(tiny_config(tiny_cifar_zip, tmp_path / "off", "backbone.width=0.25", "train.log_every=1"), progress=False)
    on = train(tiny_config(tiny_cifar_zip, tmp_path / "on", "backbone.width=0.25", "train.log_every=1", "train.online_probe=true"), progress=False)
    cfg = tiny_config(tiny_cifar_zip, tmp_path / "killed", "backbone.width=0.25", "train.log_every=1", "train.online_probe=true")
    with pytest.raises(Interrupt):
        train(cfg, callbacks=[kill_after(1)], progress=False)
    resumed = train(cfg, resume=True, progress=False)

    assert len(step_losses(off.run_dir)) == 10
    assert step_losses(on.run_dir) == step_losses(off.run_dir) == step_losses(resumed.run_dir)  # bit for bit
    assert [h["loss"] for h in on.history] == [h["loss"] for h in off.history] == [h["loss"] for h in resumed.history]
    a, b = load_method(off.run_dir)[0].state_dict(), load_method(on.run_dir)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert on.knn == off.knn

    top1 = [float(r["online_linear_top1"]) for r in history(on.run_dir)]
    assert len(top1) == 2 and all(0 <= t <= 100 for t in top1)
    assert "online_linear_top1" not in history(off.run_dir)[0]
    assert [h["online_linear_top1"] for h in resumed.history] == [h["online_linear_top1"] for h in on.history]

    # the last epoch's number, recomputed from the checkpoint's probe: normalise with its running statistics, then the layer
    probe = read_checkpoint(on.run_dir / "last.ckpt")["probe"]
    method, saved = load_method(on.run_dir)
    test = load_run_data(saved).test
    feats = extract_features(method.backbone, test.tensor(), 16, saved.augment.mean, saved.augment.std)
    normed = (feats.double() - probe["0.running_mean"].double()) / (probe["0.running_var"].double() + 1e-5).sqrt()
    logits = normed @ probe["1.weight"].double().T + probe["1.bias"].double()
    expected = (logits.argmax(1).numpy() == test.labels).mean() * 100
    assert top1[-1] == pytest.approx(expected, abs=1e-9)


def test_the_online_probe_needs_a_labelled_test_split(tiny_cifar_zip, tmp_path):
    cfg = tiny_config(tiny_cifar_zip, tmp_path, "train.online_probe=true", "data.test_split=null")
    with pytest.raises(ConfigError, match=r"train.online_probe=true needs .* a labelled test split .*set train.online_probe=false"):
        train(cfg, progress=False)
    assert not (cfg.run_dir / "last.ckpt").exists()


def test_a_logger_whose_package_is_missing_is_named_with_the_fix(tiny_cifar_zip, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)  # as if not installed
    cfg = tiny_config(tiny_cifar_zip, tmp_path, "train.loggers=[csv,tensorboard]")
    with pytest.raises(ConfigError, match="pip install tensorboard, or remove tensorboard from train.loggers"):
        train(cfg, progress=False)
    with pytest.raises(ConfigError, match="name each logger once"):
        tiny_config(tiny_cifar_zip, tmp_path, "train.loggers=[csv,csv]")
    with pytest.raises(ConfigError, match="train.loggers.0"):
        tiny_config(tiny_cifar_zip, tmp_path, "train.loggers=[neptune]")
