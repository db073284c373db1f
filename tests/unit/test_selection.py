"""The selection maths: the radix-select cut equals the brute-force definition."""

import random
import struct
import zlib

import pytest

from zipfit_beam.select import cut as sel_cut
from zipfit_beam.select.cut import (ROUNDS, Cut, SelectionKey, SelectionRule, advance, brute_force_cut,
                                   digit, find_cut, histogram_add, histogram_merge, keeps,
                                   rank_bits, start)


def make_keys(n, seed, distinct=None, low=-0.05, high=0.4):
    """n keys; with ``distinct``, scores come from that many values (heavy ties)."""
    rng = random.Random(seed)
    values = [rng.uniform(low, high) for _ in range(distinct)] if distinct else None
    keys = []
    for i in range(n):
        score = rng.choice(values) if values else rng.uniform(low, high)
        keys.append(SelectionKey((-score, f"id-{rng.randrange(n):06d}", f"s{i % 3}", i),
                                 rng.randint(1, 500)))
    return keys


RULES = [SelectionRule(top_k=1), SelectionRule(top_k=7), SelectionRule(top_k=299),
         SelectionRule(top_k=300), SelectionRule(top_k=301), SelectionRule(top_k=10_000),
         SelectionRule(fraction=0.001), SelectionRule(fraction=0.29), SelectionRule(fraction=1.0),
         SelectionRule(token_budget=1), SelectionRule(token_budget=250),
         SelectionRule(token_budget=12_345), SelectionRule(token_budget=10 ** 9),
         SelectionRule(top_k=50, min_score=0.2), SelectionRule(fraction=0.5, min_score=0.3),
         SelectionRule(token_budget=20_000, min_score=0.0), SelectionRule(top_k=10, min_score=5.0)]


@pytest.mark.parametrize("distinct", [None, 1, 2, 17])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r.to_dict()))
def test_radix_cut_equals_brute_force(rule, distinct):
    keys = make_keys(300, seed=zlib.crc32(f"{rule}{distinct}".encode()), distinct=distinct)
    want = brute_force_cut(keys, rule)
    got = find_cut(keys, rule)
    assert got == want
    chosen = sorted(sk for sk in keys if keeps(got, sk.key))
    assert len(chosen) == want.selected and sum(sk.tokens for sk in chosen) == want.tokens
    assert chosen == sorted(keys)[:len(chosen)], "a selection is a prefix of the ranking"


def test_fraction_is_floor_of_the_written_decimal():
    assert 0.29 * 100 < 29  # the float product would floor to 28
    assert SelectionRule(fraction=0.29).budget(100) == 29
    assert SelectionRule(fraction=0.5).budget(7) == 3
    assert SelectionRule(fraction=0.001).budget(999) == 0


def test_token_budget_stops_at_the_first_document_that_does_not_fit():
    keys = [SelectionKey((-0.9, "a", "s", 1), 40), SelectionKey((-0.8, "b", "s", 2), 70),
            SelectionKey((-0.7, "c", "s", 3), 5)]
    cut = find_cut(keys, SelectionRule(token_budget=100))
    # a (40) fits, b would make 110 > 100: stop there; c would fit but is not taken
    assert cut == Cut((-0.9, "a", "s", 1), 1, 40, 3) == brute_force_cut(keys, SelectionRule(token_budget=100))
    assert find_cut(keys, SelectionRule(token_budget=39)) == Cut(None, 0, 0, 3)
    assert find_cut(keys, SelectionRule(token_budget=115)).selected == 3


def test_ties_at_the_boundary_break_by_id_then_source_then_position():
    keys = [SelectionKey((-0.5, i, s, p), 1) for i, s, p in
            [("b", "x", 1), ("a", "y", 9), ("a", "x", 5), ("a", "x", 2), ("c", "a", 0)]]
    keys.append(SelectionKey((-0.6, "z", "z", 0), 1))
    cut = find_cut(keys, SelectionRule(top_k=3))
    assert cut.last == (-0.5, "a", "x", 5) and cut.selected == 3


def test_k_close_to_and_above_n():
    keys = make_keys(500, seed=3, distinct=40)
    for k in (498, 499, 500, 501, 5000):
        cut = find_cut(keys, SelectionRule(top_k=k))
        assert cut == brute_force_cut(keys, SelectionRule(top_k=k))
        assert cut.selected == min(k, 500)
    assert find_cut(keys, SelectionRule(top_k=5000)).last == max(sk.key for sk in keys)


def test_empty_input_and_nothing_above_the_floor():
    assert find_cut([], SelectionRule(top_k=3)) == Cut(None, 0, 0, 0)
    keys = make_keys(20, seed=1)
    assert find_cut(keys, SelectionRule(top_k=3, min_score=2.0)) == Cut(None, 0, 0, 20)


def test_rank_bits_order_like_minus_score():
    rng = random.Random(7)
    specials = [0.0, -0.0, 1e-300, -1e-300, 5e-324, -5e-324, 1.0, -1.0, 1e308, -1e308,
                float("inf"), float("-inf")]
    values = specials + [rng.uniform(-2, 2) for _ in range(2000)] + \
        [struct.unpack(">d", struct.pack(">Q", rng.getrandbits(64)))[0] for _ in range(2000)]
    values = [v for v in values if v == v]
    for a, b in zip(values, values[1:]):
        ka, kb = rank_bits((-a,)), rank_bits((-b,))
        assert (ka < kb) == (-a < -b) and (ka == kb) == (-a == -b), (a, b)
    with pytest.raises(ValueError, match="NaN"):
        rank_bits((float("nan"),))


def test_histograms_stay_small_and_merge_like_one():
    keys = make_keys(5000, seed=11)
    cursor = start(SelectionRule(top_k=1000), len(keys))
    whole, parts = {}, [{}, {}, {}]
    for i, sk in enumerate(keys):
        histogram_add(whole, digit(sk, cursor), sk)
        histogram_add(parts[i % 3], digit(sk, cursor), sk)
    assert histogram_merge(parts) == whole
    assert len(whole) <= 2 ** 16
    nxt = advance(cursor, whole, SelectionRule(top_k=1000))
    assert nxt.open and nxt.bits == 16 and nxt.selected < 1000


def test_rounds_reach_exact_scores():
    # Scores that differ only in the last bit of the mantissa: separated in round 4 only.
    base = 0.123456789
    close = [struct.unpack(">d", struct.pack(">Q", struct.unpack(">Q", struct.pack(">d", base))[0] + i))[0]
             for i in range(6)]
    keys = [SelectionKey((-s, f"d{i}", "s", i), 1) for i, s in enumerate(close * 3)]
    for k in range(1, len(keys) + 1):
        assert find_cut(keys, SelectionRule(top_k=k)) == brute_force_cut(keys, SelectionRule(top_k=k))
    assert ROUNDS * 16 == 64


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"exactly one of --top-k, --token-budget, --fraction is required \(got none\)"),
    ({"top_k": 3, "fraction": 0.5}, "got --top-k and --fraction"),
    ({"top_k": 0}, "--top-k must be a positive integer"),
    ({"token_budget": 0}, "--token-budget must be a positive integer"),
    ({"fraction": 0.0}, r"--fraction must be in \(0, 1\]"),
    ({"fraction": 1.5}, r"--fraction must be in \(0, 1\]"),
    ({"top_k": 3, "min_score": float("nan")}, "--min-score must be a finite number"),
])
def test_rule_errors_are_clear(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectionRule(**kwargs)


def test_random_cases_against_brute_force():
    rng = random.Random(2024)
    for case in range(300):
        n = rng.randint(0, 400)
        keys = make_keys(n, seed=case, distinct=rng.choice([None, 1, 3, 50]))
        mode = rng.choice(["top_k", "token_budget", "fraction"])
        value = {"top_k": rng.randint(1, 450), "token_budget": rng.randint(1, 120_000),
                 "fraction": rng.choice([0.01, 0.1, 0.33, 0.5, 0.999, 1.0])}[mode]
        floor = rng.choice([None, None, 0.0, 0.1, 0.3])
        rule = SelectionRule(**{mode: value}, min_score=floor)
        assert find_cut(keys, rule) == brute_force_cut(keys, rule), (case, rule)


def test_configs_validate_modes_and_long_document_settings():
    from zipfit_beam.jobs.config import ReselectConfig, SelectConfig
    base = dict(sources=("s",), targets=("t",), output="o")
    with pytest.raises(ValueError, match="exactly one of"):
        SelectConfig(**base)
    assert SelectConfig(**base, token_budget=10).rule.mode == "token_budget"
    with pytest.raises(ValueError, match="--chunk-bytes must be >= 0"):
        SelectConfig(**base, top_k=1, chunk_bytes=-1)
    with pytest.raises(ValueError, match="--max-doc-bytes must be a positive integer"):
        SelectConfig(**base, top_k=1, max_doc_bytes=0)
    with pytest.raises(ValueError, match="--chunk-reduce"):
        SelectConfig(**base, top_k=1, chunk_reduce="median")
    with pytest.raises(ValueError, match="--output must differ from --scores"):
        ReselectConfig(scores="out/", sources=("s",), output="out", top_k=1)
    with pytest.raises(ValueError, match="exactly one of"):
        ReselectConfig(scores="a", sources=("s",), output="b", top_k=1, fraction=0.5)


# --- the array steps over key columns (select.columns) ----------------------------------

def _columns(keys):
    import numpy as np
    from zipfit_beam.select.columns import KeyColumns
    return KeyColumns(np.array([-k.key[0] for k in keys], dtype=np.float64),
                      np.array([k.tokens for k in keys], dtype=np.int64),
                      lambda i: keys[i].key[1:])


def _random_keys(rng, n):
    # few distinct scores (ties), 0.0 and -0.0, negative scores, scores in one 16-bit bin
    pool = [0.0, -0.0, 0.5, 0.25, -0.125, 0.3, 0.3000000001, 1e-300, -1e-300, 0.9999]
    pool += [rng.random() for _ in range(5)]
    return [SelectionKey((-rng.choice(pool), f"id{rng.randrange(n)}", f"s{rng.randrange(3)}", i),
                         rng.randrange(1, 50)) for i in range(n)]


@pytest.mark.parametrize("seed", range(40))
def test_array_steps_equal_the_per_key_steps(seed):
    from zipfit_beam.select import columns as col
    rng = random.Random(seed)
    keys = _random_keys(rng, rng.randrange(0, 300))
    rule = rng.choice([SelectionRule(top_k=rng.randrange(1, 40)),
                       SelectionRule(token_budget=rng.randrange(1, 2000), min_score=rng.choice([None, 0.0, 0.3])),
                       SelectionRule(fraction=0.37, min_score=rng.choice([None, -0.1]))])
    cols = _columns(keys)
    hist = {}
    for sk in keys:
        sel_cut.histogram_add(hist, sel_cut.first_digit(sk, rule), sk)
    assert col.first_histogram(cols, rule) == hist
    cursor = sel_cut.first_round(hist, rule)
    assert col.candidates(cols, cursor, rule) == [sk for sk in keys if sel_cut.is_next_candidate(sk, cursor, rule)]
    cut = sel_cut.find_cut(keys, rule)
    assert col.kept(cols, cut) == [i for i, sk in enumerate(keys) if sel_cut.keeps(cut, sk.key)]


def test_array_rank_bits_equal_the_per_key_ones():
    import numpy as np
    from zipfit_beam.select.columns import rank_bits_of
    scores = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-308, -1e-308, 5e-324, float("inf"), -float("inf")]
    assert rank_bits_of(np.array(scores)).tolist() == [sel_cut.rank_bits((-s, "", "", 0)) for s in scores]
    with pytest.raises(ValueError, match="NaN"):
        rank_bits_of(np.array([float("nan")]))
