"""Mergeable statistics behind the report and align."""

import random
import statistics

import pytest

from zipfit_beam.report import stats


def test_mean_variance_merges_in_any_split():
    rng = random.Random(7)
    xs = [rng.random() * 0.3 for _ in range(1001)]
    whole = stats.MeanVariance()
    for x in xs:
        whole = whole.add(x)
    parts = [stats.MeanVariance() for _ in range(4)]
    for i, x in enumerate(xs):
        parts[i % 4] = parts[i % 4].add(x)
    merged = stats.MeanVariance()
    for p in parts[::-1]:
        merged = merged.merge(p)
    for mv in (whole, merged):
        assert mv.n == len(xs)
        assert mv.mean == pytest.approx(statistics.fmean(xs), abs=1e-14)
        assert mv.std == pytest.approx(statistics.stdev(xs), rel=1e-11)
    assert stats.MeanVariance().merge(whole) == whole


def test_mean_estimate_standard_error_and_population_correction():
    mv = stats.MeanVariance()
    for x in (0.1, 0.2, 0.3, 0.4):
        mv = mv.add(x)
    s = statistics.stdev([0.1, 0.2, 0.3, 0.4])
    no_fpc = stats.mean_estimate(mv, None)
    assert no_fpc["standard_error"] == pytest.approx(s / 2)
    assert no_fpc["ci95"] == pytest.approx([0.25 - 1.959964 * s / 2, 0.25 + 1.959964 * s / 2])
    assert stats.mean_estimate(mv, 9)["standard_error"] == pytest.approx(s / 2 * (5 / 8) ** 0.5)
    assert stats.mean_estimate(mv, 4)["standard_error"] == 0.0  # the whole population
    assert stats.mean_estimate(stats.MeanVariance(), 10)["mean"] is None


def test_histogram_bins_merge_and_rebin():
    a = {stats.histogram_bin(0.12345): 1}
    b = {stats.histogram_bin(0.12349): 2, stats.histogram_bin(0.2): 1}
    merged = stats.merge_counts([a, b])
    assert merged == {1234: 3, 2000: 1}
    edges, (counts, only_b) = stats.rebin([merged, b], stats.HISTOGRAM_BIN_WIDTH, bins=4)
    assert sum(counts) == 4 and counts[0] == 3 and counts[-1] == 1
    assert only_b == [2, 0, 0, 1]  # the same grid for every histogram
    assert edges[0] == pytest.approx(0.1234) and edges[-1] >= 0.2001 - 1e-12
    assert stats.rebin([{}, {}], 0.5) == ([0.0, 0.5], [[0], [0]])


def test_sample_key_is_stable_and_seeded():
    assert stats.sample_key("f.jsonl", 3) == stats.sample_key("f.jsonl", 3)
    assert stats.sample_key("f.jsonl", 3) != stats.sample_key("f.jsonl", 3, seed=1)
    assert stats.sample_key("f.jsonl", 3) != stats.sample_key("f.jsonl", 4)


def test_array_sample_keys_and_histograms_equal_the_scalar_ones():
    import numpy as np
    rng = np.random.default_rng(3)
    positions = rng.integers(0, 2**40, size=500)
    for source in ("f.jsonl", "gs://b/part-00001.parquet", "naïve/ſ.jsonl"):
        for seed in (0, 7):
            h = np.full(len(positions), stats.source_hash(source, seed), dtype=np.uint64)
            assert stats.sample_keys(h, positions).tolist() == [
                stats.sample_key(source, int(p), seed) for p in positions]
    scores = np.r_[rng.uniform(-0.2, 1.0, 1000), [0.0, -0.0, 0.1, 0.30000000000000004, 1e-4, -1e-4]]
    expected = {}
    for s in scores:
        expected[stats.histogram_bin(float(s))] = expected.get(stats.histogram_bin(float(s)), 0) + 1
    assert stats.histogram_of(scores) == expected
