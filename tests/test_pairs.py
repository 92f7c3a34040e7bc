"""Pair builders, the pair file format and every `pairs check` problem."""

from __future__ import annotations

import numpy as np
import pytest

from sempairs.data.store import ImageStore
from sempairs.pairs import (
    PairFileError, augmented_pairs, check_pairs, concat, load_pairs, matched_augmented, pair_stats, pairs_from_labels,
    read_pair_file,
)
from sempairs.pairs.pairfile import COLUMNS, FORMAT_TAG, data_identity


def make_store(per_class=6, classes=("cat", "dog", "frog")) -> ImageStore:
    labels = np.repeat(np.arange(len(classes)), per_class)
    ids = [f"train/{classes[c]}/{i:04d}.jpg" for i, c in enumerate(labels)]
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    return ImageStore(images=images, labels=labels, class_names=list(classes), ids=ids, source="toy")


def test_from_labels_distinct_same_class_and_counts():
    labels = np.repeat(np.arange(4), 10)
    sp = pairs_from_labels(labels, per_class=3, seed=1)
    assert len(sp) == 12
    assert (sp.anchor != sp.positive).all()
    assert (labels[sp.anchor] == labels[sp.positive]).all()
    assert (labels[sp.anchor] == sp.label).all()
    assert np.bincount(sp.label).tolist() == [3, 3, 3, 3]
    # 2 * 3 <= 10: pairs within a class are disjoint
    for c in range(4):
        members = np.concatenate([sp.anchor[sp.label == c], sp.positive[sp.label == c]])
        assert len(np.unique(members)) == 6


def test_from_labels_seeded_and_seed_sensitive():
    labels = np.repeat(np.arange(3), 20)
    a, b, c = (pairs_from_labels(labels, 5, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.anchor, b.anchor) and np.array_equal(a.positive, b.positive)
    assert not (np.array_equal(a.anchor, c.anchor) and np.array_equal(a.positive, c.positive))


def test_from_labels_more_pairs_than_disjoint_allows():
    labels = np.repeat(np.arange(2), 5)  # 10 possible unordered pairs per class
    sp = pairs_from_labels(labels, per_class=8, seed=0)
    assert (sp.anchor != sp.positive).all()
    keys = {(min(a, p), max(a, p)) for a, p in zip(sp.anchor, sp.positive)}
    assert len(keys) == 16
    with pytest.raises(ValueError, match="at most 10 distinct pairs"):
        pairs_from_labels(labels, per_class=11)


@pytest.mark.parametrize("per_class", [60, 100, 150])
def test_more_pairs_than_disjoint_take_every_image_as_anchor_evenly(per_class):
    """With 2k > n the anchors (the matched AP set's images) cover the class evenly: k = n gives every image
    once. Drawing unordered pairs and keeping the smaller index as anchor gave 57 % of the images (2026-12-04)."""
    labels = np.repeat(np.arange(3), 100)
    sp = pairs_from_labels(labels, per_class=per_class, seed=0)
    for c in range(3):
        anchors = sp.anchor[sp.label == c]
        counts = np.bincount(anchors - 100 * c, minlength=100)
        assert counts.max() - counts.min() <= 1 and counts.sum() == per_class
        keys = {(min(a, p), max(a, p)) for a, p in zip(anchors, sp.positive[sp.label == c])}
        assert len(keys) == per_class and (labels[sp.positive[sp.label == c]] == c).all()
    ap = matched_augmented(sp) if per_class <= 100 else None
    if ap is not None:
        assert len(np.unique(ap.anchor)) == len(ap) == 3 * per_class
    else:
        with pytest.raises(ValueError, match="lower pairs.per_class"):
            matched_augmented(sp)


def test_every_distinct_pair_of_a_class_can_be_drawn():
    labels = np.repeat(np.arange(2), 6)  # 15 unordered pairs per class
    sp = pairs_from_labels(labels, per_class=15, seed=4)
    assert len({(min(a, p), max(a, p)) for a, p in zip(sp.anchor, sp.positive)}) == 30


@pytest.mark.parametrize("precision", [1.0, 0.8, 0.6, 0.4, 0.0])
def test_from_labels_precision_knob_is_within_one_pair_and_keeps_anchors(precision):
    labels = np.repeat(np.arange(5), 40)
    exact = pairs_from_labels(labels, per_class=13, seed=3)
    sp = pairs_from_labels(labels, per_class=13, seed=3, precision=precision)
    same = labels[sp.anchor] == labels[sp.positive]
    assert abs(same.sum() - precision * len(sp)) <= 1  # within one pair of the requested share
    assert np.array_equal(sp.anchor, exact.anchor) and np.array_equal(sp.label[same], exact.label[same])
    assert (sp.label[~same] == -1).all() and set(sp.source[~same]) <= {"cross-class"}
    assert np.array_equal(sp.positive[same], exact.positive[same])  # the same-class pairs are the exact set's
    assert (sp.anchor != sp.positive).all()
    if precision < 1:
        assert sp.meta["precision_requested"] == precision and sp.meta["precision"] == pytest.approx(same.mean())
    again = pairs_from_labels(labels, per_class=13, seed=3, precision=precision)
    assert np.array_equal(again.positive, sp.positive)  # seeded


def test_from_labels_precision_knob_refuses_a_share_outside_0_1_and_one_class():
    with pytest.raises(ValueError, match="between 0 and 1"):
        pairs_from_labels(np.repeat(np.arange(2), 6), per_class=2, precision=1.5)
    with pytest.raises(ValueError, match="one class"):
        pairs_from_labels(np.zeros(6, np.int64), per_class=2, precision=0.5)


def test_from_labels_default_uses_every_image_once():
    labels = np.repeat(np.arange(2), 7)
    sp = pairs_from_labels(labels, seed=0)
    assert len(sp) == 6
    assert len(sp.images()) == 12


def test_matched_ap_same_classes_and_count():
    labels = np.repeat(np.arange(5), 12)
    sp = pairs_from_labels(labels, per_class=4, seed=3)
    ap = matched_augmented(sp)
    assert len(ap) == len(sp)
    assert (ap.anchor == ap.positive).all()
    assert np.array_equal(np.bincount(labels[ap.anchor]), np.bincount(labels[sp.anchor]))
    assert set(ap.sources) == {"augmented"} and set(sp.sources) == {"labels"}


def test_augmented_pairs_all_images():
    ap = augmented_pairs(9)
    assert ap.anchor.tolist() == list(range(9)) == ap.positive.tolist()


def test_round_trip_with_ids(tmp_path):
    store = make_store()
    sp = pairs_from_labels(store.labels, per_class=2, seed=0, meta={"dataset": "toy"})
    sp.score = np.linspace(0.5, 0.9, len(sp))
    mixed = concat(sp, augmented_pairs(indices=[0, 7], labels=store.labels))
    path = mixed.save(tmp_path / "p.csv", ids=store.ids, class_names=store.class_names)
    assert "train/cat/" in path.read_text()
    back = load_pairs(path, store)
    for name in ("anchor", "positive", "label", "source"):
        assert np.array_equal(getattr(back, name), getattr(mixed, name)), name
    np.testing.assert_allclose(back.score[: len(sp)], sp.score)
    assert np.isnan(back.score[len(sp):]).all()
    assert back.meta["builder"] == "concat" and back.meta["parts"][0]["dataset"] == "toy"


def test_round_trip_with_indices(tmp_path):
    store = make_store()
    sp = pairs_from_labels(store.labels, per_class=2, seed=4)
    back = load_pairs(sp.save(tmp_path / "p.csv"), store)
    assert np.array_equal(back.anchor, sp.anchor) and np.array_equal(back.positive, sp.positive)


def test_round_trip_with_store_keeps_every_column_and_the_provenance(tmp_path):
    store = make_store()
    sp = pairs_from_labels(store.labels, per_class=2, seed=2, meta={"builder": "from-labels", "seed": 2, "note": "é ✓"})
    sp.score = np.array([0.25, -1.5, np.nan, 1e-9, 0.125, 3.0])
    sp.source[1] = "mined"
    mixed = concat(sp, augmented_pairs(indices=[4, 11], labels=store.labels))
    path = mixed.save(tmp_path / "p.csv", store=store)
    back = load_pairs(path, store)
    for name in ("anchor", "positive", "label", "source"):
        assert np.array_equal(getattr(back, name), getattr(mixed, name)), name
        assert getattr(back, name).dtype == getattr(mixed, name).dtype, name
    assert np.array_equal(back.score, mixed.score, equal_nan=True)
    assert back.meta == {**mixed.meta, "data": data_identity(store), "file": str(path)}


def test_read_pair_file_gives_provenance_header_and_numbered_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(f'{FORMAT_TAG}\n# {{"builder": "x"}}\n# a free comment\n{",".join(COLUMNS)}\n 0 , 1,,,\n\n2,3,dog,0.5,mined\n',
                    encoding="cp1252")
    raw = read_pair_file(path)
    assert raw.meta == {"builder": "x"} and raw.header == list(COLUMNS)
    assert raw.rows == [(5, [" 0 ", " 1", "", "", ""]), (7, ["2", "3", "dog", "0.5", "mined"])]  # cells as written
    path.write_bytes("anchor,positive\ncaf\u00e9,1\n".encode("cp1252"))
    assert read_pair_file(path).meta == {"encoding": "cp1252"}
    with pytest.raises(PairFileError, match="does not exist"):
        read_pair_file(tmp_path / "none.csv")


def write(tmp_path, body: str):
    path = tmp_path / "pairs.csv"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "body, line, words, fix",
    [
        ("anchor,positive\n0,99\n", 2, "index 99 is out of range", "index 0..17"),
        ("anchor,positive\ntrain/cat/0000.jpg,train/cat/nope.jpg\n", 2, "'train/cat/nope.jpg' is not in the dataset", "use an image id"),
        ("anchor,positive,source\n0,1,curated\n3,3,curated\n", 3, "semantic pair of one image with itself", "pick a different positive"),
        ("anchor,positive,source\n0,1,augmented\n", 2, "source=augmented but anchor and positive are different", "set positive equal"),
        ("anchor,positive\n0,1\n2,3\n1,0\n", 4, "duplicate of the pair on line 2", "remove one"),
        ("anchor,positive,label\n0,6,dog\n", 2, "label 'dog' but the anchor", "correct the label"),
        ("anchor,positive,label\n0,1,zebra\n", 2, "label 'zebra' is not a class", "use one of"),
        ("anchor,positive\n0,7\n", 2, "curated pair of different classes", "same class"),
        ("anchor,positive,score\n0,1,high\n", 2, "score 'high' is not a number", "decimal number"),
        ("anchor,positive\n0,1,2\n", 2, "3 cells for 2 columns", "one value per column"),
        ("anchor\n0\n", 1, "missing column(s) ['positive']", "at least anchor,positive"),
        ("anchor,positive,weight\n0,1,3\n", 1, "unknown column(s) ['weight']", "allowed columns"),
        ("anchor,positive\n", 0, "no pairs", "add at least one"),
    ],
)
def test_check_reports_each_problem_with_line_and_fix(tmp_path, body, line, words, fix):
    store = make_store()
    _, problems = check_pairs(write(tmp_path, body), store)
    assert len(problems) == 1, problems
    assert problems[0].line == line and words in problems[0].message and fix in problems[0].fix
    with pytest.raises(PairFileError, match="1 problem"):
        load_pairs(tmp_path / "pairs.csv", store)


def test_mined_pairs_may_cross_classes_and_all_problems_are_listed(tmp_path):
    store = make_store()
    pairs, problems = check_pairs(write(tmp_path, "anchor,positive,source\n0,7,mined\n0,0,mined\n1,99,mined\n"), store)
    assert [p.line for p in problems] == [3, 4]  # nothing dropped silently: each bad row is reported
    assert len(pairs) == 1 and pairs.source[0] == "mined"


def test_stats_counts_and_precision():
    store = make_store()
    mined = concat(pairs_from_labels(store.labels, 2, seed=0), augmented_pairs(indices=[0, 1]))
    mined.positive[0] = 17  # one cross-class semantic pair out of six
    stats = pair_stats(mined, store.labels, store.class_names)
    assert stats["pairs"] == 8 and stats["self_pairs"] == 2
    assert stats["by_source"] == {"labels": 6, "augmented": 2}
    assert stats["semantic_precision"] == pytest.approx(5 / 6)
    assert stats["per_class"] == {"cat": 4, "dog": 2, "frog": 2}
