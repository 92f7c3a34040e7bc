"""The one reading of the evidence (sempairs.experiments.evidence), on constructed numbers."""

from __future__ import annotations

import math
import statistics

import pytest

from sempairs.experiments.evidence import DIFFERENCE, FEW_SEEDS, NOISE, difference, is_smoke


def test_a_difference_is_the_mean_difference_read_against_the_combined_seed_spread():
    a, b = {"0": 57.5, "1": 57.7}, {"0": 53.0, "1": 52.6}
    diff = difference(a, b)
    assert diff.mean == pytest.approx(4.8)
    assert diff.spread == pytest.approx(math.sqrt(statistics.stdev([57.5, 57.7]) ** 2 + statistics.stdev([53.0, 52.6]) ** 2))
    assert (diff.seeds, diff.verdict) == (2, DIFFERENCE)
    assert diff.sentence("AP", "SP") == "AP beats SP by more than twice the seed spread"
    assert difference(b, a).sentence("SP", "AP") == "AP beats SP by more than twice the seed spread"


def test_within_noise_at_up_to_twice_the_spread_and_no_verdict_from_one_seed():
    noisy = difference({"0": 40.0, "1": 44.0}, {"0": 41.0, "1": 42.0})  # +0.5 against a spread of 2.9
    assert noisy.verdict == NOISE and "no conclusion" in noisy.sentence("SP", "AP")
    edge = difference({"0": 2.0, "1": 4.0}, {"0": 0.0, "1": 0.0})  # mean 3, spread sqrt(2): 3 > 2.83
    assert edge.verdict == DIFFERENCE
    assert difference({"0": 1.0, "1": 3.0}, {"0": 0.0, "1": 0.0}).verdict == NOISE  # 2 < 2.83
    single = difference({"0": 60.0}, {"0": 40.0})
    assert (single.seeds, single.verdict) == (1, FEW_SEEDS) and math.isnan(single.spread)
    assert is_smoke(1) and not is_smoke(2)


def test_only_the_seeds_both_arms_finished_count():
    diff = difference({"0": 10.0, "1": 12.0, "2": 50.0}, {"0": 9.0, "1": 11.0})
    assert (diff.seeds, diff.mean) == (2, pytest.approx(1.0))
    assert difference({"0": 1.0}, {"1": 2.0}) is None
