"""A review session: a pair file read against its dataset, and the decision store that goes with it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sempairs.data.store import ImageStore
from sempairs.pairs import PairSet, load_pairs
from sempairs.pairs.pairfile import data_identity
from sempairs.review.store import DecisionStore, ReviewError, class_of


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_db(pair_file: Path) -> Path:
    """Where a review of ``pair_file`` keeps its decisions unless told: ``PAIRS.csv.review.sqlite`` beside ``PAIRS.csv``."""
    return pair_file.with_name(pair_file.name + ".review.sqlite")


@dataclass
class ReviewSession:
    """The pairs under review (indices into ``store``), their class and the decisions made so far.

    ``pair_class`` is the class a pair is filtered and counted by (:func:`~sempairs.review.store.class_of`).
    """

    store: ImageStore
    pairs: PairSet
    pair_class: np.ndarray
    decisions: DecisionStore
    reviewer: str
    pair_file: Path


def _class_name(store: ImageStore, index: int) -> str | None:
    return None if store.labels is None else store.class_names[store.labels[index]]


def open_review(pair_file: str | Path, store: ImageStore, db_path: str | Path, reviewer: str, dataset: str) -> ReviewSession:
    """Read ``pair_file`` against ``store`` and open (or start) its decision store at ``db_path``.

    A database made for other contents of the pair file is refused; so are augmented pairs (two
    views of one image, nothing to judge). Bad rows raise :class:`~sempairs.pairs.PairFileError`.
    """
    pair_file = Path(pair_file)
    if not reviewer.strip():
        raise ReviewError("--reviewer is empty. Fix: give a name to record with each decision")
    pairs = load_pairs(pair_file, store)
    augmented = np.flatnonzero(~pairs.is_semantic)
    if len(augmented):
        raise ReviewError(f"{pair_file}: {len(augmented)} augmented pair(s) (two views of one image, e.g. "
                          f"{store.ids[pairs.anchor[augmented[0]]]}); only semantic pairs are reviewed. "
                          "Fix: remove the rows with source=augmented")
    digest = file_sha256(pair_file)
    names = store.class_names
    rows = [
        (pos, store.ids[a], store.ids[p], names[lab] if lab >= 0 else None, None if np.isnan(s) else float(s), src,
         _class_name(store, a), _class_name(store, p))
        for pos, (a, p, lab, s, src) in enumerate(zip(pairs.anchor, pairs.positive, pairs.label, pairs.score, pairs.source))
    ]
    decisions = DecisionStore(db_path)
    decisions.initialise(rows, {
        "pair_file": str(pair_file.resolve()), "pair_file_sha256": digest, "dataset": dataset,
        "split": store.split, "data": data_identity(store), "pair_meta": {k: v for k, v in pairs.meta.items() if k != "file"},
    })
    meta = decisions.meta()
    if meta["pair_file_sha256"] != digest:
        decisions.close()
        raise ReviewError(f"{db_path} holds the review of other contents of {meta['pair_file']} "
                          f"(SHA-256 {meta['pair_file_sha256'][:12]}..., this file {digest[:12]}...). "
                          "Fix: give --db a new file to start a new review, or review the file it was made for")
    pair_class = np.array([class_of(row) for row in decisions.pairs()], dtype=object)
    return ReviewSession(store, pairs, pair_class, decisions, reviewer, pair_file)
