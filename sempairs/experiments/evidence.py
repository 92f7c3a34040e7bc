"""One reading of the evidence, shared by the quickstart and ``report.md``: when a difference between two arms counts.

A difference is ``mean(a) - mean(b)`` over the seeds both arms finished; its spread is
``sqrt(sd_a^2 + sd_b^2)`` (sample standard deviations over those seeds), the seed-to-seed spread
of the difference of two single runs: conservative, it does not shrink with more seeds. It is a
**difference** when larger than ``NOISE_FACTOR`` times that spread, **within noise** otherwise,
and with fewer than ``MIN_SEEDS`` common seeds there is no spread to read it against (**not enough
seeds**). A grid whose compared groups hold fewer than ``MIN_SEEDS`` seeds is a smoke run: it shows
the pipeline runs, not evidence; the number of epochs alone does not decide that.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

MIN_SEEDS = 2
NOISE_FACTOR = 2.0
DIFFERENCE, NOISE, FEW_SEEDS = "difference", "within noise", "not enough seeds"
RULE = (f"a difference counts when it is more than {NOISE_FACTOR:g} times its spread, sqrt(sd_a^2 + sd_b^2) over the "
        f"seeds both arms finished (the seed-to-seed spread of the difference of two single runs); below that it is "
        f"within noise, and with fewer than {MIN_SEEDS} seeds there is no spread to read it against")


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` over ``seeds`` common seeds and its spread (NaN with one seed)."""

    mean: float
    spread: float
    seeds: int

    @property
    def verdict(self) -> str:
        """``difference``, ``within noise`` or ``not enough seeds``."""
        if self.seeds < MIN_SEEDS or math.isnan(self.spread):
            return FEW_SEEDS
        return DIFFERENCE if abs(self.mean) > NOISE_FACTOR * self.spread else NOISE

    def sentence(self, a: str, b: str) -> str:
        """What the difference of ``a`` over ``b`` says, in words."""
        if self.verdict == DIFFERENCE:
            leader, other = (a, b) if self.mean > 0 else (b, a)
            return f"{leader} beats {other} by more than twice the seed spread"
        if self.verdict == NOISE:
            return "within the seed-to-seed noise: no conclusion"
        return f"{self.seeds} seed(s): the seed spread is unknown, no conclusion"


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def difference(a: Mapping[str, float], b: Mapping[str, float]) -> Difference | None:
    """The difference of arm ``a`` over arm ``b`` from their values per seed (None: no seed in common)."""
    seeds = [s for s in a if s in b]
    if not seeds:
        return None
    first, second = [a[s] for s in seeds], [b[s] for s in seeds]
    return Difference(statistics.fmean(first) - statistics.fmean(second), math.hypot(_std(first), _std(second)), len(seeds))


def is_smoke(seeds: int) -> bool:
    """Whether groups of ``seeds`` runs are a smoke run: too few seeds to tell a difference from noise."""
    return seeds < MIN_SEEDS
