"""Corruption shift: the CIFAR-10-C corruptions (+ occlusion) on real CIFAR-10 images, their cache, the shift
report, ``sempairs eval shift`` / ``shift-compare``, and the grid's evaluators (one tiny grid run with all of them)."""

from __future__ import annotations

import colorsys
import csv
import importlib.util
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from typer.testing import CliRunner

from bench.corruption_reference import DETERMINISTIC, SAME_PARAMETERS, change, package_corrupt
from sempairs.cli import app
from sempairs.config import ConfigError
from sempairs.errors import MissingPackage
from sempairs.data.sources import read_image_zip
from sempairs.data.store import ImageStore
from sempairs.eval import corruptions as corruptions_module
from sempairs.trained.loading import LoadedBackbone
from sempairs.eval.corruptions import (
    CORRUPTIONS,
    FROST_FILES,
    RANDOM_CORRUPTIONS,
    STANDARD_CORRUPTIONS,
    corrupt,
    corrupted_store,
    plasma_fractal,
)
from sempairs.eval.shift import shift_evaluate
from sempairs.experiments import evaluations, grid
from sempairs.experiments.grid import ExperimentConfig, expand, run_grid


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cifar(tiny_cifar_zip) -> np.ndarray:
    """The 100 test images of the tiny CIFAR-10 slice at their native 32 px (read directly: no cache)."""
    return read_image_zip(tiny_cifar_zip, "test").images


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the Pearson correlation of their pixel values."""
    return float(np.mean([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]))


# --------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_changes_the_image_keeps_its_form_and_is_seeded(cifar, name):
    images = cifar[:24]
    for severity in (1, 3, 5):
        out = corrupt(images, name, severity, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert not np.array_equal(out, images), severity
        assert np.array_equal(corrupt(images, name, severity, seed=0), out), "same seed, same result"
        other = corrupt(images, name, severity, seed=1)
        assert np.array_equal(other, out) == (name not in RANDOM_CORRUPTIONS), "a new seed changes only random ones"
    zero = corrupt(images, name, 0, seed=0)
    assert np.array_equal(zero, images) and zero is not images


def test_corruptions_grow_with_severity(cifar):
    """Mean absolute difference to the clean image grows strictly from severity 1 to 5, except where the
    reference's own CIFAR table does not make it grow; those follow their tables instead."""
    out = {name: [corrupt(cifar, name, s, seed=0) for s in range(1, 6)] for name in CORRUPTIONS}
    diff = {name: [mad(o, cifar) for o in outs] for name, outs in out.items()}
    table_shaped = {"motion_blur", "frost", "glass_blur", "elastic_transform"}
    for name in set(CORRUPTIONS) - table_shaped:
        assert all(np.diff(diff[name]) > 0), (name, diff[name])
    # motion blur: (radius, sigma) = (6, 2) and (8, 2) at severities 3 and 4; the extra taps weigh < 0.3 %
    d = diff["motion_blur"]
    assert d[0] < d[1] < d[2] <= d[3] < d[4] and d[3] - d[2] < 0.01 * d[2], d
    # frost: a x + b F with b / a = .2 .3 .44 .47 .6; a's fall from .9 to .85 (severity 3 to 4) lowers the
    # difference to x, but the frost's share grows, so the correlation with the clean image falls
    corr = [correlation(o, cifar) for o in out["frost"]]
    assert all(np.diff(corr) < 0), corr
    # glass blur: severities 4 and 5 are 2 and 3 (same blur) with a second pass of pixel moves
    d = diff["glass_blur"]
    assert d[3] > 1.2 * d[1] and d[4] > 1.2 * d[2], d
    # elastic: the affine's point moves shrink (.08 -> .03 of the side) as the fine displacement grows
    assert all(np.diff(diff["elastic_transform"]) < 0), diff["elastic_transform"]


def test_brightness_and_contrast_match_their_definitions(cifar):
    images = cifar[:4]
    x = images / 255.0
    for severity, c in enumerate([0.05, 0.1, 0.15, 0.2, 0.3], 1):  # HSV value + c, clipped; hue and saturation kept
        expected = np.empty_like(x)
        for idx in np.ndindex(x.shape[:3]):
            h, s, v = colorsys.rgb_to_hsv(*x[idx])
            expected[idx] = colorsys.hsv_to_rgb(h, s, min(v + c, 1.0))
        got = corrupt(images, "brightness", severity)
        assert np.abs(got.astype(int) - np.uint8(np.clip(expected, 0, 1) * 255)).max() <= 1
    for severity, c in enumerate([0.75, 0.5, 0.4, 0.3, 0.15], 1):  # (x - channel mean) c + channel mean
        mean = x.mean(axis=(1, 2), keepdims=True)
        expected = np.uint8(np.clip((x - mean) * c + mean, 0, 1) * 255)
        assert np.abs(corrupt(images, "contrast", severity).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", ["brightness", "contrast", "zoom_blur", "gaussian_noise", "impulse_noise"])
def test_corruptions_equal_imagecorruptions_where_its_parameters_are_cifar_10_c_s(cifar, name):
    """The package's ImageNet-C tables share some parameters with CIFAR-10-C's: there the two definitions agree,
    pixel for pixel within one 8-bit level, float32 vs float64 truncation, on < 10 % of the values (deterministic ones) or in their statistics (random ones)."""
    images = cifar[:20] if name in DETERMINISTIC else cifar  # 100 images: the change's mean to within 2 %
    for package_severity, severity in SAME_PARAMETERS[name].items():
        theirs, ours = package_corrupt(images, name, package_severity), corrupt(images, name, severity)
        if name in DETERMINISTIC:
            diff = np.abs(theirs.astype(int) - ours)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.1, (severity, diff.max(), (diff > 0).mean())
        else:
            (t_mean, t_share), (o_mean, o_share) = change(images, theirs), change(images, ours)
            assert o_mean == pytest.approx(t_mean, rel=0.06) and o_share == pytest.approx(t_share, abs=0.002)


def test_frost_blends_crops_of_the_reference_photographs_read_offline(cifar, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("frost went to the network"))
    corruptions_module.frost_textures.cache_clear()
    photos = []
    for name in FROST_FILES:  # the reference's cv2.resize(fx=0.2): a 5x shrink takes pixel 5 i + 2
        rgb = np.array(Image.open(corruptions_module.frost_directory() / name).convert("RGB"))
        photos.append(rgb[2::5, 2::5][: round(rgb.shape[0] * 0.2), : round(rgb.shape[1] * 0.2)])
    textures = corruptions_module.frost_textures(32)
    assert all(np.array_equal((t * 255).round().permute(1, 2, 0).numpy(), p) for t, p in zip(textures, photos))
    out = corrupt(np.zeros((8, 32, 32, 3), np.uint8), "frost", 1).astype(int)  # (a, b) = (1, .2): 0.2 F
    for image in out:
        found = False
        for photo in photos:
            windows = np.lib.stride_tricks.sliding_window_view(np.floor(0.2 * photo.astype(float)), (32, 32, 3))[:, :, 0]
            corners = np.argwhere((np.abs(windows[:, :, 0, 0] - image[0, 0]) <= 1).all(-1))
            found = found or any(np.abs(windows[r, c] - image).max() <= 1 for r, c in corners)
        assert found, "each frosted image is 0.2 x a 32 x 32 crop of one of the five photographs"


def test_frost_without_imagecorruptions_names_the_pip_command(cifar, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imagecorruptions" else real(name, *a))
    corruptions_module.frost_textures.cache_clear()
    with pytest.raises(MissingPackage, match="pip install imagecorruptions"):
        corrupt(cifar[:2], "frost", 1)
    corruptions_module.frost_textures.cache_clear()


def test_glass_blur_moves_each_pixel_from_an_up_left_neighbour(cifar):
    """At severity 1 the blur (sigma .05) is the identity: what is left is the reference's pixel moves, each
    inner pixel taking the value of itself or its top, left or top-left neighbour; rows/columns 0-1 stay."""
    images = cifar[:8].astype(np.int64)
    out = corrupt(cifar[:8], "glass_blur", 1).astype(np.int64)
    assert np.array_equal(out[:, :2], images[:, :2]) and np.array_equal(out[:, :, :2], images[:, :, :2])
    inner = out[:, 2:, 2:]
    candidates = [images[:, 2 - dy : 32 - dy, 2 - dx : 32 - dx] for dy in (0, 1) for dx in (0, 1)]
    assert all((inner == c).all(-1).any() for c in candidates)
    assert np.logical_or.reduce([(inner == c).all(-1) for c in candidates]).all()


def test_occlusion_covers_a_growing_share_with_grey_or_noise(cifar):
    images = cifar[:40]
    for severity, cells in enumerate([2, 4, 6, 8, 10], 1):
        changed = (corrupt(images, "occlusion", severity) != images).any(-1)
        patches = changed.reshape(40, 4, 8, 4, 8).any((2, 4))  # 8x8 patches of a 4x4 grid
        assert (patches.sum((1, 2)) <= cells).all() and patches.sum((1, 2)).mean() > cells - 0.5


def test_plasma_fractal_is_a_seeded_unit_range_map():
    maps = plasma_fractal(3, 32, 2.0, np.random.default_rng(0))
    assert maps.shape == (3, 32, 32) and maps.min() == 0 and maps.max() == 1
    assert np.array_equal(maps, plasma_fractal(3, 32, 2.0, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(1, 30, 2.0, np.random.default_rng(0))


def test_bad_names_and_severities_are_refused(cifar):
    with pytest.raises(ValueError, match="unknown corruption 'fogg'"):
        corrupt(cifar[:2], "fogg", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(cifar[:2], "fog", 6)


def test_corrupted_sets_are_cached_by_source_split_size_name_severity_and_seed(cifar, tmp_path, monkeypatch):
    store = ImageStore(cifar[:10], np.arange(10) % 3, ["a", "b", "c"], [str(i) for i in range(10)],
                       source=str(tmp_path / "src"), split="test")
    first = corrupted_store(store, "fog", 2, seed=3)
    assert first.split == "test+fog-2-seed3" and first.ids == store.ids and np.array_equal(first.labels, store.labels)
    monkeypatch.setattr(corruptions_module, "corrupt", lambda *a, **k: pytest.fail("regenerated a cached set"))
    again = corrupted_store(store, "fog", 2, seed=3)
    assert np.array_equal(again.images, first.images) and again.split == first.split
    assert corrupted_store(store, "fog", 0) is store
    keys = {corruptions_module.corrupted_key(s, n, v, seed) for s, n, v, seed in
            [(store, "fog", 2, 3), (store, "fog", 2, 4), (store, "fog", 3, 3), (store, "snow", 2, 3),
             (store.subset(range(5)), "fog", 2, 3)]}
    assert len(keys) == 5


# --------------------------------------------------------------------------- the shift report


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, x):
        return self.conv(x).relu().mean((2, 3))


def test_shift_report_has_one_row_per_corruption_and_severity(tiny_cifar_zip, tmp_path):
    weights = tmp_path / "tiny.pt"
    weights.write_bytes(b"fingerprinted for the feature cache")
    backbone = LoadedBackbone(TinyNet().eval(), 32, (0.5,) * 3, (0.25,) * 3, weights, "tiny")
    train, test = (read_image_zip(tiny_cifar_zip, split) for split in ("train", "test"))
    report = shift_evaluate(backbone, train, test, knn_k=10, l2=0.01, limit=60, seed=1)
    assert [(r["corruption"], r["severity"]) for r in report["rows"]] == [(c, s) for c in CORRUPTIONS for s in range(1, 6)]
    assert report["test_images"] == 60 and report["train_images"] == 200
    summary = report["summary"]
    for m in ("knn", "linear"):
        standard = [r[f"{m}_top1"] for r in report["rows"] if r["corruption"] in STANDARD_CORRUPTIONS]
        occluded = [r[f"{m}_top1"] for r in report["rows"] if r["corruption"] == "occlusion"]
        assert len(standard) == 75 and summary[f"{m}_mean_corruption"] == pytest.approx(np.mean(standard))
        assert summary[f"{m}_occlusion"] == pytest.approx(np.mean(occluded))
        assert summary[f"{m}_drop"] == pytest.approx(report["clean"][f"{m}_top1"] - np.mean(standard))
        assert report["per_corruption"]["fog"][f"{m}_top1"] == pytest.approx(
            np.mean([r[f"{m}_top1"] for r in report["rows"] if r["corruption"] == "fog"]))
    part = shift_evaluate(backbone, train, test, ["occlusion"], [2, 4], knn_k=10, linear=False, limit=60, seed=1)
    assert [(r["corruption"], r["severity"]) for r in part["rows"]] == [("occlusion", 2), ("occlusion", 4)]
    assert part["rows"][0]["knn_top1"] == report["rows"][-4]["knn_top1"] and "linear_top1" not in part["rows"][0]
    assert part["summary"]["knn_mean_corruption"] is None and part["corruptions_in_mean"] == []
    with pytest.raises(ValueError, match="severities"):
        shift_evaluate(backbone, train, test, severities=[0])


# --------------------------------------------------------------------------- grid evaluators and the CLI


@pytest.fixture(scope="module")
def evaluated_grid(tiny_cifar_zip, tmp_path_factory):
    """One tiny cell pretrained on 4 classes, evaluated by every registered evaluator (once for this module)."""
    out = tmp_path_factory.mktemp("grid")
    base = {"data": {"dataset": str(tiny_cifar_zip), "size": 16, "classes": ["airplane", "cat", "dog", "ship"]},
            "backbone": {"small_stem": False}, "optim": {"warmup_epochs": 0},
            "train": {"epochs": 1, "batch_size": 40}, "knn": {"k": 10}}
    exp = ExperimentConfig(name="all", out_dir=str(out), base=base, axes={"train.seed": [0]},
                           evaluations=["knn", "random_init", "linear", "unseen_classes", "invariance", "shift"], embedding=[])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMPAIRS_CACHE", str(out / "cache"))
        [row] = run_grid(exp, progress=False, log=lambda line: None)
    return exp, row


def test_grid_cells_are_evaluated_by_every_registered_evaluator(evaluated_grid):
    exp, row = evaluated_grid
    assert grid.EVALUATORS is evaluations.EVALUATORS
    assert set(evaluations.EVALUATORS) >= {"knn", "random_init", "linear", "unseen_classes", "invariance", "shift"}
    assert row["error"] == "" and list(exp.metrics()) == [c for c in row if c in exp.metrics()]
    for column in exp.metrics():
        assert row[column] != "", column
    for column in ("knn_top1", "random_init_knn_top1", "linear_top1", "unseen_knn_top1", "shift_knn_clean",
                   "shift_knn_mean_corruption", "shift_knn_occlusion"):
        assert 0 <= float(row[column]) <= 100, column
    assert all(-1 <= float(row[f"invariance_{p}"]) <= 1 for p in ("occlusion", "gamma", "pattern"))
    assert row["shift_test_images"] == "40"  # the 4 classes x 10 test images of the run's selection
    assert float(row["shift_knn_drop"]) == pytest.approx(float(row["shift_knn_clean"]) - float(row["shift_knn_mean_corruption"]))
    assert grid.read_results(exp.results_path)[row["cell"]]["shift_knn_mean_corruption"] == row["shift_knn_mean_corruption"]


def test_a_grid_an_evaluator_cannot_serve_is_refused_before_training(tmp_path):
    exp = ExperimentConfig(name="t", out_dir=str(tmp_path), axes={"train.seed": [0]}, evaluations=["unseen_classes"])
    with pytest.raises(ConfigError, match="unseen_classes.*data.classes"):
        expand(exp)
    exp = ExperimentConfig(name="t", out_dir=str(tmp_path), base={"data": {"test_split": None}}, axes={"train.seed": [0]},
                           evaluations=["shift"])
    with pytest.raises(ConfigError, match="shift.*data.test_split"):
        expand(exp)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_shift_writes_json_table_heatmap_and_comparison(evaluated_grid, tmp_path):
    exp, row = evaluated_grid
    run_dir = Path(row["run_dir"])
    code, out = invoke("eval", "shift", run_dir, "--k", 5, "--limit", 30, "--l2", 0.01, "--corruption", "fog",
                       "--corruption", "contrast", "--corruption", "occlusion", "--severity", 1, "--severity", 5)
    assert code == 0, out
    result = json.loads((run_dir / "eval" / "shift.json").read_text())
    assert result["protocol"] == "shift" and result["test_images"] == 30 and result["severities"] == [1, 5]
    assert [(r["corruption"], r["severity"]) for r in result["rows"]] == [
        (c, s) for c in ("fog", "contrast", "occlusion") for s in (1, 5)]
    assert set(result["summary"]) >= {"knn_clean", "knn_mean_corruption", "knn_drop", "linear_occlusion"}
    assert "contrast" in out and "mean corrupted" in out and "over 2 CIFAR-10-C corruptions" in out
    png = run_dir / "eval" / "shift.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and len(read_csv(png.with_suffix(".csv"))) == 6

    code, out = invoke("eval", "shift-compare", run_dir, run_dir / "eval" / "shift.json", "--label", "a",
                       "--label", "b", "--metric", "linear", "--out", tmp_path / "cmp")
    assert code == 0, out
    assert (tmp_path / "cmp" / "shift_compare.png").read_bytes()[:4] == b"\x89PNG"
    bars = read_csv(tmp_path / "cmp" / "shift_compare.csv")
    assert {(b["label"], b["group"]) for b in bars} == {
        (label, g) for label in "ab" for g in ("clean", "mean corrupted", "fog", "contrast", "occlusion")}
    code, out = invoke("eval", "shift-compare", tmp_path / "nowhere", "--out", tmp_path / "cmp")
    assert code == 2 and "eval shift" in out
    code, out = invoke("eval", "shift", run_dir, "--corruption", "fogg")
    assert code == 2 and "unknown corruption" in out
