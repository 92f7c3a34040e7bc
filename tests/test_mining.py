"""The SePP-ID semantic sampler: kNN search backends, mining rules, precision report, encoders, CLI."""

from __future__ import annotations

import csv
import json
import math
import re
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.data.store import ImageStore
from sempairs.models import BackboneConfig, build_backbone
from sempairs.pairs import PairSet, concat
from sempairs.trained.loading import load_backbone
from sempairs.pairs.mine import choose_anchors, embed, mine_pairs
from sempairs.pairs.report import plot_calibration, precision_report
from sempairs.pairs.search import knn_search, resolve_backend

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def unordered(pairs: PairSet) -> set[tuple[int, int]]:
    return {(min(a, p), max(a, p)) for a, p in zip(pairs.anchor.tolist(), pairs.positive.tolist())}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def planted(n_pairs: int = 100, dim: int = 64, seed: int = 0):
    """Embeddings in which each point has one known nearest neighbour (its twin, cosine ~0.95), shuffled."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_pairs, dim, generator=g)
    twins = base + 0.3 * torch.randn(n_pairs, dim, generator=g)
    order = torch.randperm(2 * n_pairs, generator=g)
    x = torch.cat([base, twins])[order]
    where = torch.empty_like(order)
    where[order] = torch.arange(2 * n_pairs)
    expected = {(min(a, b), max(a, b)) for a, b in zip(where[:n_pairs].tolist(), where[n_pairs:].tolist())}
    return x, expected


# Six unit vectors at these angles (degrees): A=0 B=10 C=30 D=100 E=115 F=210. Cosines:
# A-B .985, B-C .940, D-E .966, A-C .866, D-C .342, E-C .087, E-F -.087, D-F -.342.
# 1-NN: A->B, B->A, C->B, D->E, E->D, F->E.  2-NN: A{B,C} B{A,C} C{B,A} D{E,C} E{D,C} F{E,D}.
A, B, C, D, E, F = range(6)
ANGLES = [0, 10, 30, 100, 115, 210]


def hand_points() -> torch.Tensor:
    rad = torch.tensor(ANGLES, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1).float()


def cos(i: int, j: int) -> float:
    return math.cos(math.radians(ANGLES[i] - ANGLES[j]))


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_planted_neighbours_are_found_exactly(backend):
    x, expected = planted()
    pairs = mine_pairs(x, k=1, backend=backend)
    assert unordered(pairs) == expected
    assert pairs.meta["counts"]["reversed_duplicates"] == 100 and pairs.meta["counts"]["anchors_with_pair"] == 200
    xn = torch.nn.functional.normalize(x, dim=1)
    np.testing.assert_allclose(pairs.score, (xn[pairs.anchor] * xn[pairs.positive]).sum(1).numpy(), atol=1e-5)
    assert set(pairs.source) == {"mined"} and (pairs.label == -1).all() and pairs.meta["backend"] == backend
    assert unordered(mine_pairs(x, k=1, mutual=True, backend=backend)) == expected


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_and_faiss_return_the_same_neighbours(metric):
    x = torch.randn(300, 32, generator=torch.Generator().manual_seed(1))
    s_t, i_t = knn_search(x, x, 5, backend="torch", metric=metric)
    s_f, i_f = knn_search(x.numpy(), x.numpy(), 5, backend="faiss", metric=metric)
    assert torch.equal(i_t, i_f) and i_t.dtype == torch.int64 and s_t.dtype == torch.float32
    torch.testing.assert_close(s_t, s_f, atol=1e-4, rtol=1e-4)
    assert not (i_t == torch.arange(300)[:, None]).any()  # self excluded
    step = s_t.diff(dim=1)  # cosine descending, distance ascending
    assert ((step <= 1e-6) if metric == "cosine" else (step >= -1e-6)).all()
    brute = torch.cdist(x, x) if metric == "euclidean" else -(torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T)
    brute.fill_diagonal_(float("inf"))
    assert torch.equal(brute.topk(5, largest=False).indices, i_t)
    _, with_self = knn_search(x, x, 1, exclude_self=False, backend="faiss", metric=metric)
    assert torch.equal(with_self[:, 0], torch.arange(300))


def test_faiss_hnsw_finds_planted_twins():
    x, expected = planted(200)
    _, idx = knn_search(x, x, 1, backend="faiss", exact_max=100)  # database of 400 > 100: HNSW
    assert {(min(i, j), max(i, j)) for i, j in enumerate(idx[:, 0].tolist())} == expected


def test_chunking_and_half_precision_match_one_exact_chunk():
    x = torch.randn(257, 48, generator=torch.Generator().manual_seed(2))
    queries = torch.tensor([5, 0, 256, 100, 17])
    ref_s, ref_i = knn_search(x[queries], x, 7, backend="torch", query_index=queries)
    assert not (ref_i == queries[:, None]).any()
    for options in ({"chunk_size": 2}, {"max_bytes": 8 * 257 * 3}, {"precision": "bfloat16"}, {"precision": "float16", "chunk_size": 3}):
        s, i = knn_search(x[queries], x, 7, backend="torch", query_index=queries, **options)
        assert torch.equal(i, ref_i), options
        torch.testing.assert_close(s, ref_s, atol=1e-5, rtol=1e-5)  # half precision is re-scored in float32
    s_e, i_e = knn_search(x, x, 4, backend="torch", metric="euclidean", chunk_size=10, precision="bfloat16")
    s_1, i_1 = knn_search(x, x, 4, backend="torch", metric="euclidean")
    assert torch.equal(i_e, i_1)
    torch.testing.assert_close(s_e, s_1)


def test_search_errors_and_k_capped(monkeypatch):
    x = torch.randn(4, 3)
    _, idx = knn_search(x, x, 10, backend="torch")
    assert idx.shape == (4, 3)  # k capped at the 3 other items
    with pytest.raises(ValueError, match="query_index"):
        knn_search(x, x[:2], 1, backend="torch")
    with pytest.raises(ValueError, match="same D"):
        knn_search(x, torch.randn(4, 5), 1, exclude_self=False)
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss were not installed
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn_search(x, x, 1, backend="faiss")
    assert resolve_backend("auto") == "torch"


def test_hand_built_rules_top_k_threshold_mutual():
    x = hand_points()
    k1 = mine_pairs(x, k=1, duplicate_threshold=None, backend="torch")
    assert list(zip(k1.anchor.tolist(), k1.positive.tolist())) == [(A, B), (C, B), (D, E), (F, E)]
    np.testing.assert_allclose(k1.score, [cos(A, B), cos(C, B), cos(D, E), cos(F, E)], atol=1e-6)
    assert k1.meta["counts"]["reversed_duplicates"] == 2 and k1.meta["counts"]["pairs"] == 4

    above = mine_pairs(x, k=1, threshold=0.9, duplicate_threshold=None, backend="torch")
    assert unordered(above) == {(A, B), (B, C), (D, E)} and above.meta["counts"]["below_threshold"] == 1

    mutual = mine_pairs(x, k=1, mutual=True, duplicate_threshold=None, backend="torch")
    assert unordered(mutual) == {(A, B), (D, E)} and mutual.meta["counts"]["not_mutual"] == 2

    k2 = mine_pairs(x, k=2, duplicate_threshold=None, backend="torch")
    assert unordered(k2) == {(A, B), (A, C), (B, C), (D, E), (C, D), (C, E), (E, F), (D, F)}
    k2m = mine_pairs(x, k=2, mutual=True, duplicate_threshold=None, backend="torch")
    assert unordered(k2m) == {(A, B), (A, C), (B, C), (D, E)} and k2m.meta["counts"]["not_mutual"] == 4
    k2mt = mine_pairs(x, k=2, mutual=True, threshold=0.9, duplicate_threshold=None, backend="torch")
    assert unordered(k2mt) == {(A, B), (B, C), (D, E)}
    assert k2mt.meta["rule"] == "mutual top-2 cosine neighbours, cosine >= 0.9"
    assert (k2mt.meta["k"], k2mt.meta["threshold"], k2mt.meta["mutual"]) == (2, 0.9, True)


def test_chosen_anchors():
    x = hand_points()
    some = mine_pairs(x, k=1, anchors=[C, F], backend="torch")
    assert list(zip(some.anchor.tolist(), some.positive.tolist())) == [(C, B), (F, E)]
    assert some.meta["anchor_indices"] == [C, F] and some.meta["counts"]["anchors_with_pair"] == 2
    # mutual needs the neighbours' own kNN: NN(B) = A and NN(E) = D, so neither pair is mutual
    assert len(mine_pairs(x, k=1, mutual=True, anchors=[C, F], backend="torch")) == 0
    assert unordered(mine_pairs(x, k=1, mutual=True, anchors=[A], backend="torch")) == {(A, B)}
    drawn = choose_anchors(100, 10, seed=3)
    assert len(set(drawn.tolist())) == 10 and np.array_equal(drawn, choose_anchors(100, 10, seed=3))
    assert not np.array_equal(drawn, choose_anchors(100, 10, seed=4))
    with pytest.raises(ValueError, match="between 1 and the 6 images"):
        mine_pairs(x, anchors=7)


def test_near_duplicates_are_skipped_and_counted():
    x = hand_points()
    pairs = mine_pairs(x, k=1, duplicate_threshold=0.98, backend="torch")  # A-B (.985) are near-duplicates
    assert unordered(pairs) == {(A, C), (B, C), (D, E), (E, F)}
    counts = pairs.meta["counts"]
    assert counts["near_duplicate_pairs"] == 1 and counts["anchors_with_near_duplicate"] == 2 and counts["anchors_short"] == 0
    # three copies of A, then D E F: with a lookahead of 1 the copies find no non-duplicate neighbour
    y = torch.cat([x[:1].repeat(3, 1), x[3:]])
    crowded = mine_pairs(y, k=1, lookahead=1, backend="torch")
    assert crowded.meta["counts"]["near_duplicate_pairs"] == 3 and crowded.meta["counts"]["anchors_short"] == 3
    assert unordered(crowded) == {(3, 4), (4, 5)}


def toy_pairs() -> tuple[PairSet, np.ndarray]:
    """Labels 0 0 0 1 1 2; pairs (score, same class?): 0-1 .9 yes, 2-1 .8 yes, 3-4 .7 yes, 5-4 .2 no, 2-3 .5 no."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    mined = PairSet.build([0, 2, 3, 5, 2], [1, 1, 4, 4, 3], score=[0.9, 0.8, 0.7, 0.2, 0.5], source="mined")
    return concat(mined, PairSet.build([5], [5], source="augmented")), labels


def test_precision_report_hand_computed(tmp_path):
    pairs, labels = toy_pairs()
    report = precision_report(pairs, labels, ["a", "b", "c"], bins=2, num_thresholds=3)
    assert (report["pairs"], report["correct"], report["precision"]) == (5, 3, 0.6)  # the augmented pair is left out
    assert report["per_class"] == {"a": {"pairs": 3, "precision": 2 / 3}, "b": {"pairs": 1, "precision": 1.0},
                                   "c": {"pairs": 1, "precision": 0.0}}
    assert (report["anchors"], report["anchors_with_pair"], report["anchor_coverage"]) == (6, 6, 1.0)
    bins = [v for b in report["calibration"] for v in (b["lo"], b["hi"], b["pairs"], b["precision"])]
    assert bins == pytest.approx([0.2, 0.55, 2, 0.0, 0.55, 0.9, 3, 1.0])
    curve = [v for r in report["thresholds"] for v in (r["threshold"], r["pairs"], r["precision"], r["coverage"])]
    assert curve == pytest.approx([0.2, 5, 0.6, 1.0, 0.55, 3, 1.0, 5 / 6, 0.9, 1, 1.0, 2 / 6])
    assert report["stats"]["by_source"] == {"mined": 5, "augmented": 1}
    only_f = precision_report(pairs, labels, anchors=[5], num_thresholds=3)
    assert [r["coverage"] for r in only_f["thresholds"]] == [1.0, 0.0, 0.0]

    png, bins_csv, thr_csv = plot_calibration(report, tmp_path / "toy.calibration.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bins_csv.name == "toy.calibration.bins.csv" and len(read_csv(bins_csv)) == 2
    assert [row["pairs"] for row in read_csv(thr_csv)] == ["5", "3", "1"]
    unscored = precision_report(PairSet.build([0], [1], source="mined"), labels)
    assert unscored["precision"] == 1.0 and unscored["calibration"] == []
    with pytest.raises(ValueError, match="score column"):
        plot_calibration(unscored, tmp_path / "x.png")


def test_encoder_files(tmp_path):
    """Mining reads encoders through load_backbone: junk, missing, non-tensor and mismatched files fail clearly."""
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(ValueError, match=f"{re.escape(str(junk))} is not a readable weights file.*Fix"):
        load_backbone(junk, "resnet18")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone(tmp_path / "missing.pth", "resnet18")
    settings = tmp_path / "settings.pt"
    torch.save({"lr": 0.1}, settings)
    with pytest.raises(ValueError, match=f"{re.escape(str(settings))} holds no state dict"):
        load_backbone(settings, "resnet18")

    small, head = build_backbone(BackboneConfig(name="resnet18", small_stem=True))
    weights = tmp_path / "r18.pth"  # a whole SSL model as other libraries save it: backbone + projector
    model = {**{f"backbone.{k}": v for k, v in small.state_dict().items()}, "projector.0.weight": torch.zeros(4, head)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.items()}}, weights)
    with pytest.raises(ValueError, match="Fix: for a plain torchvision/timm weights file give its architecture"):
        load_backbone(weights)
    with pytest.raises(ValueError, match=f"{re.escape(str(weights))} does not hold resnet50 weights"):
        load_backbone(weights, "resnet50")
    enc = load_backbone(weights, "resnet18")  # the 3x3 small stem is recognised from conv1
    assert enc.module.conv1.kernel_size == (3, 3)
    assert torch.equal(enc.module.layer1[0].conv1.weight, small.layer1[0].conv1.weight)

    store = ImageStore(np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8), None, [], [str(i) for i in range(5)], "toy")
    feats = embed(store, enc.module, None, enc.mean, enc.std, "cpu", batch_size=2)
    assert feats.shape == (5, 512) and torch.allclose(feats.norm(dim=1), torch.ones(5))


def test_cli_mine_report_and_train_on_mined(tiny_cifar_zip, tmp_path):
    code, out = invoke("pairs", "mine", tiny_cifar_zip, "--encoder", tmp_path / "nope.ckpt", "--out", tmp_path / "x.csv")
    assert code == 2 and "nope.ckpt" in out.replace("\n", "")

    common = (f"data.dataset={tiny_cifar_zip}", "data.size=16", "data.test_split=null", f"out_dir={tmp_path}",
              "train.epochs=1", "train.batch_size=100", "backbone.small_stem=false")
    code, out = invoke("train", *common, "name=enc")
    assert code == 0, out

    mined = tmp_path / "mined.csv"
    code, out = invoke("pairs", "mine", tiny_cifar_zip, "--encoder", tmp_path / "enc", "--k", 2, "--anchors", 40,
                       "--backend", "torch", "--out", mined)
    assert code == 0, out
    assert "wrote" in out and "mined pairs" in out and "anchors covered:" in out and "/40;" in out and "precision" in out
    code, out = invoke("pairs", "check", mined, "--data", tiny_cifar_zip)
    assert code == 0 and "ok" in out, out
    report = json.loads((tmp_path / "mined.report.json").read_text())
    assert 0 <= report["precision"] <= 1 and report["anchors"] == 40 and 0 < report["pairs"] <= 80
    assert (tmp_path / "mined.calibration.png").stat().st_size > 10_000
    meta = json.loads(mined.read_text().splitlines()[1][2:])
    assert meta["encoder"] == str(tmp_path / "enc") and meta["k"] == 2 and meta["counts"]["pairs"] == report["pairs"]

    (tmp_path / "mined.report.json").unlink()
    code, out = invoke("pairs", "report", mined, "--data", tiny_cifar_zip)
    assert code == 0 and "precision" in out, out
    assert json.loads((tmp_path / "mined.report.json").read_text())["precision"] == report["precision"]

    code, out = invoke("train", *common, "name=sepp", "pairs.source=augmented", f"pairs.add_files=[{mined}]")
    assert code == 0, out
    assert (tmp_path / "sepp" / "last.ckpt").exists()
