"""Pair files a grid makes for a cell before training it: ``+sp`` from the labels, ``+mined`` by the semantic sampler.

``+mined`` is SePP-ID inside one grid: the cell trains on the augmented pairs plus pairs mined
with the checkpoint of its ``ap`` cell (same values on every other axis), the nearest neighbours
of each training image in that encoder's embedding (:func:`sempairs.pairs.mine.mine_pairs`,
settings from the experiment's ``mining`` section). Where the training images have labels the
mined pairs' precision (same class) is measured and added to the cell's results row, since the
quality of the pairs decides what they add.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from sempairs.config import PairsConfig, RunConfig
from sempairs.trained.loading import load_backbone
from sempairs.errors import InputError
from sempairs.pairs import PairSet, load_pairs
from sempairs.pairs.mine import embed, mine_pairs
from sempairs.pairs.report import precision_report
from sempairs.train.data import build_pairs, load_split
from sempairs.strict import Strict

ADDED_SP_FILE = "added_sp_pairs.csv"
MINED_FILE = "mined_pairs.csv"


class MiningSettings(Strict):
    """How a grid's ``+mined`` cells mine (see :func:`sempairs.pairs.mine.mine_pairs`).

    ``matched``: keep (seeded) as many mined pairs as the cell has augmented pairs, so that ``ap+mined``
    with half the ``pairs.per_class`` of its ``ap`` cell trains on as many pairs, for as many steps.
    """

    k: int = Field(1, gt=0)
    threshold: float | None = Field(None, ge=-1, le=1)
    mutual: bool = False
    duplicate_threshold: float | None = Field(0.99, ge=-1, le=1)
    matched: bool = False

    def identity(self) -> dict:
        """The settings as a cell's hash counts them (``matched`` only when set, so earlier grids keep their cells)."""
        return self.model_dump(exclude=None if self.matched else {"matched"})


def write_added_sp(cfg: RunConfig, path: Path) -> None:
    """The SP file of an ``...+sp`` cell: pairs from the labels with the cell's ``per_class``, seed and precision."""
    store = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    pairs = build_pairs(PairsConfig(source="labels", per_class=cfg.pairs.per_class, seed=cfg.pairs.seed,
                                    precision=cfg.pairs.precision), store)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs.save(path, store=store)


def write_mined(cfg: RunConfig, path: Path, encoder_run: Path, mining: MiningSettings) -> None:
    """The mined file of an ``...+mined`` cell: its training images' neighbours in the checkpoint of ``encoder_run``."""
    store = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    encoder = load_backbone(encoder_run)
    features = embed(store, encoder, encoder.size, encoder.mean, encoder.std, batch_size=cfg.features.batch_size)
    pairs = mine_pairs(features, k=mining.k, threshold=mining.threshold, mutual=mining.mutual,
                       duplicate_threshold=mining.duplicate_threshold, seed=cfg.train.seed, images=store.images,
                       meta={"encoder": str(encoder.path)})
    if mining.matched:
        pairs = _matched_count(pairs, len(build_pairs(cfg.pairs.model_copy(update={"add_files": []}), store)), cfg.train.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs.save(path, store=store)


def _matched_count(pairs: PairSet, count: int, seed: int) -> PairSet:
    """``count`` of the mined ``pairs``, drawn with ``seed`` (in their order); refuses when fewer were mined."""
    if len(pairs) < count:
        raise InputError(f"mining.matched: {len(pairs)} pairs mined ({pairs.meta.get('rule')}), {count} needed to match the "
                         "cell's augmented pairs. Fix: lower the threshold, raise mining.k, or halve pairs.per_class")
    kept = np.sort(np.random.default_rng(seed).choice(len(pairs), size=count, replace=False))
    matched = pairs.subset(kept)
    matched.meta["matched_to"] = count
    return matched


def mined_columns(cfg: RunConfig, path: Path) -> dict:
    """Results columns of a mined file: ``mined_pairs`` and, where the images have labels, ``mined_precision`` (%)."""
    store = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    pairs = load_pairs(path, store)
    columns: dict = {"mined_pairs": len(pairs)}
    if store.labels is not None and len(pairs):
        columns["mined_precision"] = 100 * precision_report(pairs, np.asarray(store.labels), store.class_names)["precision"]
    return columns
