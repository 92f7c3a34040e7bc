"""Positive-pair sets: the PairSet type, its file format, builders, validation, mining and precision reports.

Mining (:mod:`sempairs.pairs.mine`, :mod:`sempairs.pairs.search`) and reports
(:mod:`sempairs.pairs.report`) are imported from their modules: they pull in torch and matplotlib.
"""

from sempairs.pairs.builders import augmented_pairs, matched_augmented, pair_stats, pairs_from_labels
from sempairs.pairs.check import check_pairs, load_pairs
from sempairs.pairs.pairfile import PairFileError, PairProblem, read_pair_file, write_pair_file
from sempairs.pairs.pairset import PairSet, concat

__all__ = [
    "PairSet", "concat", "augmented_pairs", "pairs_from_labels", "matched_augmented", "pair_stats",
    "check_pairs", "load_pairs", "PairFileError", "PairProblem", "read_pair_file", "write_pair_file",
]
