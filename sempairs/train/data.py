"""The data of a run: the training store, the labelled test store for kNN, and the pair set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sempairs.config import ConfigError, PairsConfig, RunConfig
from sempairs.data.store import ImageStore
from sempairs.eval.selection import load_split
from sempairs.pairs import PairSet, augmented_pairs, concat, load_pairs, matched_augmented, pairs_from_labels


@dataclass
class RunData:
    train: ImageStore
    test: ImageStore | None
    pairs: PairSet


def build_pairs(cfg: PairsConfig, store: ImageStore) -> PairSet:
    """The pair set a run trains on (see PairsConfig): the main source plus any added files."""
    main = _main_pairs(cfg, store)
    if not cfg.add_files:
        return main
    parts = [(str(cfg.file) if cfg.source == "file" else f"pairs.source={cfg.source}", main)]
    parts += [(str(path), load_pairs(path, store)) for path in cfg.add_files]
    _refuse_repeats(parts, len(store))
    return concat(*(pairs for _, pairs in parts))


def _refuse_repeats(parts: list[tuple[str, PairSet]], num_images: int) -> None:
    """Refuse pair sets of one run that share pairs (the same two images, whatever their sources or order).

    A pair given twice would be trained twice as often as the others without anyone asking for it.
    """
    keys = [np.unique(np.minimum(p.anchor, p.positive) * num_images + np.maximum(p.anchor, p.positive)) for _, p in parts]
    for j in range(1, len(parts)):
        for i in range(j):
            shared = len(np.intersect1d(keys[i], keys[j], assume_unique=True))
            if shared:
                raise ConfigError(f"pairs.add_files: {parts[j][0]} repeats {shared} pair(s) of {parts[i][0]} (the same two "
                                  "images, whatever the source), which would be trained twice as often. Fix: remove "
                                  "those rows from one of them (or drop the file)")


def _main_pairs(cfg: PairsConfig, store: ImageStore) -> PairSet:
    if cfg.source == "file":
        return load_pairs(cfg.file, store)
    if cfg.source == "augmented" and cfg.per_class is None:
        return augmented_pairs(len(store), labels=store.labels)
    if store.labels is None:
        raise ConfigError(f"pairs.source={cfg.source} with per_class needs labels, and {store.source} has none")
    semantic = pairs_from_labels(store.labels, cfg.per_class, seed=cfg.seed, precision=cfg.precision)
    return semantic if cfg.source == "labels" else matched_augmented(semantic)


def load_run_data(cfg: RunConfig) -> RunData:
    """Training store, test store (None without a test split or labels) and pairs of a run."""
    train = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    test = None
    if cfg.data.test_split and train.labels is not None:
        test = load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class)
    return RunData(train=train, test=test, pairs=build_pairs(cfg.pairs, train))
