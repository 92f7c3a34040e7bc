"""The data of a run: the training store, the labelled test store for kNN, and the pair set."""

from __future__ import annotations

from dataclasses import dataclass

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
    return concat(main, *(load_pairs(path, store) for path in cfg.add_files))


def _main_pairs(cfg: PairsConfig, store: ImageStore) -> PairSet:
    if cfg.source == "file":
        return load_pairs(cfg.file, store)
    if cfg.source == "augmented" and cfg.per_class is None:
        return augmented_pairs(len(store), labels=store.labels)
    if store.labels is None:
        raise ConfigError(f"pairs.source={cfg.source} with per_class needs labels, and {store.source} has none")
    semantic = pairs_from_labels(store.labels, cfg.per_class, seed=cfg.seed)
    return semantic if cfg.source == "labels" else matched_augmented(semantic)


def load_run_data(cfg: RunConfig) -> RunData:
    """Training store, test store (None without a test split or labels) and pairs of a run."""
    train = load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class)
    test = None
    if cfg.data.test_split and train.labels is not None:
        test = load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class)
    return RunData(train=train, test=test, pairs=build_pairs(cfg.pairs, train))
