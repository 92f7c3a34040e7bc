"""Evaluation protocols: linear probe and its L2 selection, few-label subsets, backbone loading, the
feature cache, transfer class groups, detection (tiny generated VOC set, hand-checked AP),
invariance probes, and the ``sempairs eval`` commands on a 1-epoch checkpoint.

The CIFAR-100 and STL-10 on-disk formats are read by tests/test_data.py
(test_cifar100_torchvision_folder, test_stl10_torchvision_folder)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.data.registry import load_dataset
from sempairs.trained import features as features_module
from sempairs.eval import linear as linear_module
from sempairs.trained.loading import IMAGENET_MEAN, load_backbone
from sempairs.eval.detection import (
    VOCDetection,
    build_detector,
    detection_ap,
    detection_evaluate,
)
from sempairs.trained.features import cached_features
from sempairs.eval.fewshot import fewshot_probe, fewshot_subset
from sempairs.eval.invariance import PROBES, invariance
from sempairs.eval.linear import linear_probe, select_l2, stratified_split
from sempairs.eval.transfer import class_groups, transfer_evaluate
from sempairs.models import BackboneConfig, build_backbone

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
QUICK_DETECTOR = {"rpn_post_nms_top_n_train": 100, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


def clusters(n_per_class: int, num_classes: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels


@pytest.fixture(scope="module")
def run_dir(tiny_cifar_zip, tmp_path_factory, train_tiny_run):
    """A 1-epoch ResNet-18 run (16 px, 7x7 stem) on the tiny CIFAR-10 slice, trained once for this module."""
    _, result = train_tiny_run(tmp_path_factory.mktemp("runs"), tiny_cifar_zip, "r18", "train.batch_size=50", "knn.k=5")
    return result.run_dir


def write_voc(root, n: int = 6, size: int = 96, seed: int = 0):
    """A VOC-format set: n noise images with red and blue rectangles; trainval = first 4, test = the rest."""
    rng = np.random.default_rng(seed)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        objects = []
        for j, (name, colour) in enumerate([("red", (255, 0, 0)), ("blue", (0, 0, 255))][: 1 + i % 2]):
            w, h = rng.integers(24, 40, 2)
            x, y = rng.integers(0, size - 40, 2)
            img[y : y + h, x : x + w] = colour
            objects.append(f"<object><name>{name}</name><difficult>{int(i == 1 and j == 1)}</difficult><bndbox>"
                           f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax>"
                           "</bndbox></object>")
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{''.join(objects)}</annotation>")
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_voc(tmp_path_factory.mktemp("voc"))


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separates_separable_features():
    x, y = clusters(30, 4, 16, 0.2, 1)
    xt, yt = clusters(10, 4, 16, 0.2, 2)
    result = linear_probe(x, y, xt, yt, 4, max_iter=100)
    assert result["linear_top1"] == 100.0 and result["linear_top5"] == 100.0
    assert [p["l2"] for p in result["linear_val_curve"]] == sorted(linear_module.L2_GRID)
    assert result["linear_l2"] in linear_module.L2_GRID


def test_linear_probe_on_shuffled_labels_is_near_chance():
    x, y = clusters(60, 4, 16, 0.2, 1)
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    xt, yt = clusters(50, 4, 16, 0.2, 2)
    result = linear_probe(x, y, xt, yt, 4, l2=1e-3, max_iter=100)
    assert 10.0 <= result["linear_top1"] <= 40.0  # chance is 25 %


def test_l2_is_selected_without_the_test_split(monkeypatch):
    assert not any("test" in name for name in inspect.signature(select_l2).parameters)
    x, y = clusters(30, 4, 16, 1.0, 1)
    xt, yt = clusters(10, 4, 16, 1.0, 2)
    seen = []
    real_select = linear_module.select_l2

    def spy(*args, **kwargs):
        seen.extend(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        return real_select(*args, **kwargs)

    monkeypatch.setattr(linear_module, "select_l2", spy)
    first = linear_probe(x, y, xt, yt, 4, max_iter=50)
    assert seen and all(t.data_ptr() not in (xt.data_ptr(), yt.data_ptr()) for t in seen)
    other = linear_probe(x, y, -xt, (yt + 1) % 4, 4, max_iter=50)  # a different test split: same selection
    assert (first["linear_l2"], first["linear_val_curve"]) == (other["linear_l2"], other["linear_val_curve"])
    assert real_select(x, y, 4, max_iter=50) == (first["linear_l2"], first["linear_val_curve"])


def test_stratified_split_is_per_class_disjoint_and_seeded():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    val, rest = stratified_split(labels, fraction=0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 4, 6]
    assert sorted(np.concatenate([val, rest]).tolist()) == list(range(60))
    assert np.array_equal(val, stratified_split(labels, fraction=0.2, seed=0)[0])
    with pytest.raises(ValueError, match="fewer than"):
        stratified_split(labels, per_class=11)


# --------------------------------------------------------------------------- few labels


def test_fewshot_subsets_are_balanced_seeded_and_differ_by_seed():
    labels = np.repeat(np.arange(5), 40)
    a, b, c = (fewshot_subset(labels, per_class=3, seed=s) for s in (0, 0, 1))
    assert np.bincount(labels[a]).tolist() == [3] * 5
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[fewshot_subset(labels, fraction=0.1, seed=2)]).tolist() == [4] * 5


def test_fewshot_probe_reports_mean_and_std_over_seeds():
    x, y = clusters(40, 3, 8, 0.3, 1)
    xt, yt = clusters(10, 3, 8, 0.3, 2)
    result = fewshot_probe(x, y, xt, yt, 3, fractions=[0.1], per_class=[2], seeds=[0, 1, 2], l2=1e-3, max_iter=50)
    assert list(result) == ["10%", "2/class"]
    runs = result["2/class"]["runs"]
    assert [r["labelled_images"] for r in runs] == [6, 6, 6]
    top1 = [r["top1"] for r in runs]
    assert result["2/class"]["top1_mean"] == pytest.approx(np.mean(top1))
    assert result["2/class"]["top1_std"] == pytest.approx(np.std(top1, ddof=1))


# --------------------------------------------------------------------------- backbones and the feature cache


def test_plain_torchvision_weights_load_and_key_mismatches_name_the_file(tmp_path):
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = load_backbone(path, arch="resnet18")
    module, size, mean, _ = loaded
    assert (size, mean, loaded.config) == (224, IMAGENET_MEAN, None)
    net.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)  # at 64 px every kernel tap reads data: no convolution is trimmed, the sums are the same
    assert torch.equal(module(x), net.eval()(x))
    with pytest.raises(ValueError, match=r"r18\.pth does not hold resnet50 weights.*--arch"):
        load_backbone(path, arch="resnet50")
    with pytest.raises(ValueError, match=r"r18\.pth is not a sempairs checkpoint.*--arch"):
        load_backbone(path)


def test_plain_timm_weights_drop_the_classifier(tmp_path):
    import timm

    net = timm.create_model("resnet10t", pretrained=False, num_classes=7)
    path = tmp_path / "r10t.pth"
    torch.save(net.state_dict(), path)
    module, size, mean, _ = load_backbone(path, arch="resnet10t")
    net.reset_classifier(0)
    x = torch.randn(1, 3, 32, 32)
    assert (size, mean) == (176, IMAGENET_MEAN)  # the model's default data config
    assert torch.equal(module(x), net.eval()(x))


def test_features_are_cached_beside_the_checkpoint_by_file_and_split(run_dir, tiny_cifar_zip, tmp_path, monkeypatch):
    ckpt = tmp_path / "copy.ckpt"
    shutil.copyfile(run_dir / "last.ckpt", ckpt)
    loaded = load_backbone(ckpt)
    test = load_dataset(tiny_cifar_zip, "test", size=16)
    first = cached_features(loaded, test)
    files = list((tmp_path / "features").glob("copy-test-*.npy"))
    assert len(files) == 1 and first.shape == (100, 512)

    def no_extraction(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(features_module, "extract_features", no_extraction)
    assert torch.equal(cached_features(loaded, test), first)
    monkeypatch.undo()
    cached_features(loaded, test.subset(range(10)))  # other images: another entry
    st = ckpt.stat()
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rewritten checkpoint: another entry
    cached_features(loaded, test)
    assert len(list((tmp_path / "features").glob("copy-test-*.npy"))) == 3


# --------------------------------------------------------------------------- transfer and class groups


def test_transfer_reports_seen_and_unseen_classes(run_dir, tiny_cifar_zip, tmp_path):
    loaded = load_backbone(run_dir)
    with pytest.raises(ValueError, match="class subset"):
        class_groups(loaded, CIFAR, "seen")
    subset_cfg = loaded.config.model_copy(update={"data": loaded.config.data.model_copy(update={"classes": CIFAR[:4]})})
    subset_run = dataclasses.replace(loaded, config=subset_cfg)
    assert class_groups(subset_run, CIFAR, "unseen") == {"unseen": CIFAR[4:]}
    result = transfer_evaluate(subset_run, [str(tiny_cifar_zip)], knn_k=5, l2=1e-2, cache_dir=tmp_path)
    groups = result[str(tiny_cifar_zip)]
    assert list(groups) == ["all", "seen", "unseen"]
    assert groups["seen"]["classes"] == CIFAR[:4] and groups["seen"]["test_images"] == 40
    assert groups["unseen"]["train_images"] == 120 and groups["all"]["test_images"] == 100
    assert all(0 <= g["knn_top1"] <= 100 and 0 <= g["linear_top1"] <= 100 for g in groups.values())
    only = transfer_evaluate(loaded, [str(tiny_cifar_zip)], ["cat", "dog"], knn_k=5, linear=False, cache_dir=tmp_path)
    assert only[str(tiny_cifar_zip)]["subset"]["test_images"] == 20


# --------------------------------------------------------------------------- detection


def test_voc_reader_boxes_labels_and_missing_lists(voc_root, tmp_path):
    data = VOCDetection(voc_root, "trainval")
    assert data.classes == ["blue", "red"] and len(data) == 4
    image, target = data[1]
    assert image.shape == (3, 96, 96) and 0 <= image.min() and image.max() <= 1
    assert target["labels"].tolist() == [2, 1] and target["difficult"].tolist() == [False, True]
    xml = (voc_root / "Annotations" / "000001.xml").read_text()
    xmin = int(xml.split("<xmin>")[1].split("<")[0])
    assert target["boxes"][0, 0].item() == xmin - 1
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val\.txt"):
        VOCDetection(voc_root, "val")


def test_ap_of_hand_checked_predictions():
    gt = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
    perfect = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    assert detection_ap(perfect, gt) == {"AP": 100.0, "AP50": 100.0, "AP75": 100.0}
    # IoU 0.62: a match at thresholds 0.50, 0.55, 0.60 of the ten 0.50:0.95 -> AP 30
    shifted = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 6.2]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    ap = detection_ap(shifted, gt)
    assert ap["AP50"] == 100.0 and ap["AP75"] == 0.0 and ap["AP"] == pytest.approx(30.0)
    wrong_class = [{**perfect[0], "labels": torch.tensor([2])}]
    assert detection_ap(wrong_class, gt)["AP50"] == 0.0


def test_detector_is_torchvision_r50_fpn_with_the_backbone_loaded():
    backbone, _ = build_backbone(BackboneConfig(name="resnet50", small_stem=False))
    model = build_detector(backbone, num_classes=2)
    reference = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    ref_shapes = {k: v.shape for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert shapes == ref_shapes  # the same network; BatchNorm frozen (no batch counters)
    assert torch.equal(model.backbone.body.layer3[2].conv2.weight, backbone.layer3[2].conv2.weight)
    assert torch.equal(model.backbone.body.bn1.running_var, backbone.bn1.running_var)


def test_small_stem_is_refused_or_reinitialised():
    backbone, _ = build_backbone(BackboneConfig(name="resnet18", small_stem=True))
    with pytest.raises(ValueError, match="small-image stem.*--reinit-stem"):
        build_detector(backbone, num_classes=2)
    model = build_detector(backbone, num_classes=2, stem="reinit")
    assert model.backbone.body.conv1.weight.shape == (64, 3, 7, 7)
    assert torch.equal(model.backbone.body.layer1[0].conv1.weight, backbone.layer1[0].conv1.weight)


def test_detection_two_iterations_then_ap(voc_root):
    backbone, _ = build_backbone(BackboneConfig(name="resnet50", small_stem=False))
    result = detection_evaluate(backbone, voc_root, voc_root, iterations=2, min_size=128, max_size=128,
                                detector_options=QUICK_DETECTOR)
    assert result["classes"] == ["blue", "red"] and (result["train_images"], result["test_images"]) == (4, 2)
    assert np.isfinite(result["first_loss"]) and np.isfinite(result["last_loss"])
    assert all(0.0 <= result[k] <= 100.0 for k in ("AP", "AP50", "AP75"))


# --------------------------------------------------------------------------- invariance


def test_every_probe_is_exactly_invariant_at_strength_zero():
    torch.manual_seed(0)
    backbone, _ = build_backbone(BackboneConfig(name="resnet18", small_stem=True))
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    x = images.float() / 255
    for name, probe in PROBES.items():
        assert torch.equal(probe(x, 0.0, torch.Generator().manual_seed(0)), x), name
        assert not torch.equal(probe(x, 0.5, torch.Generator().manual_seed(0)), x), name
    result = invariance(backbone, images, 16, (0.5,) * 3, (0.25,) * 3, strengths=[0.0, 0.5], batch_size=4)
    assert list(result) == list(PROBES)
    for name, per in result.items():
        assert per["0"] == 1.0, name
        assert -1.0 <= per["0.5"] < 1.0, name


# --------------------------------------------------------------------------- command line


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_eval_commands_write_json_beside_the_checkpoint(run_dir, voc_root):
    code, out = invoke("eval", "knn", run_dir, "--k", 4)
    assert code == 0, out
    by_k = {result["knn_k"]: result for result in (json.loads(f.read_text()) for f in (run_dir / "eval").glob("knn-*.json"))}
    knn = by_k[4]  # beside the training's own (k=5)
    assert knn["protocol"] == "knn" and knn["knn_k"] == 4 and knn["test_images"] == 100
    assert not (run_dir / "knn.json").exists()

    code, out = invoke("eval", "linear", run_dir, "--max-iter", 30)
    assert code == 0, out
    linear = json.loads((run_dir / "eval" / "linear.json").read_text())
    assert len(linear["linear_val_curve"]) == 8 and linear["test_images"] == 100 and "linear probe" in out

    code, out = invoke("eval", "linear", run_dir, "--augmented", "--epochs", 1, "--batch-size", 100)
    assert code == 0, out
    assert json.loads((run_dir / "eval" / "linear_augmented.json").read_text())["epochs"] == 1

    code, out = invoke("eval", "fewshot", run_dir, "--per-class", 4, "--seeds", 2, "--max-iter", 30)
    assert code == 0, out
    fewshot = json.loads((run_dir / "eval" / "fewshot.json").read_text())["settings"]
    assert [r["labelled_images"] for r in fewshot["4/class"]["runs"]] == [40, 40]

    code, out = invoke("eval", "transfer", run_dir, "--k", 5, "--classes", "cat,dog,ship", "--l2", 0.01)
    assert code == 0, out
    transfer = json.loads((run_dir / "eval" / "transfer.json").read_text())["datasets"]
    assert next(iter(transfer.values()))["subset"]["classes"] == ["cat", "dog", "ship"]

    code, out = invoke("eval", "invariance", run_dir, "--limit", 8, "--strength", 0, "--strength", 0.5,
                       "--probe", "occlusion", "--probe", "gamma")
    assert code == 0, out
    probes = json.loads((run_dir / "eval" / "invariance.json").read_text())["probes"]
    assert probes["occlusion"]["0"] == 1.0 and set(probes) == {"occlusion", "gamma"}

    code, out = invoke("eval", "detect", run_dir, "--voc", voc_root, "--iterations", 2, "--min-size", 64,
                       "--max-size", 64, "--proposals", 50, "--rois", 32)
    assert code == 0, out
    detect = json.loads((run_dir / "eval" / "detect.json").read_text())
    assert detect["iterations"] == 2 and 0 <= detect["AP"] <= 100


def test_eval_errors_name_the_fix(run_dir, tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    code, out = invoke("eval", "linear", weights, "--arch", "resnet18")
    assert code == 2 and "--data" in out
    code, out = invoke("eval", "transfer", run_dir, "--classes", "seen")
    assert code == 2 and "data.classes" in out
