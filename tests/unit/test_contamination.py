"""The contamination guard's pure core: normalization, n-gram hashing, the index."""

import numpy as np
import pytest

from zipfit_beam.score import contamination as c

TARGET = ('def has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
          '    """ Check if in given list of numbers, are any two numbers closer to each other '
          'than given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n')


def fmix64(h: int) -> int:
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * multiplier) % 2 ** 64
    return h ^ (h >> 33)


def slow_token_hash(token: str) -> int:
    """The documented definition, a word at a time (padded with zero bytes)."""
    data = token.encode("utf-8")
    data += bytes(-len(data) % 8)
    h = 0xCBF29CE484222325 ^ len(token.encode("utf-8"))
    for word in (data[i:i + 8] for i in range(0, len(data), 8)):
        h = ((h ^ int.from_bytes(word, "little")) * 0x9E3779B97F4A7C15) % 2 ** 64
        h ^= h >> 32
    return fmix64(h)


def slow_window_hash(tokens):
    """The documented definition, one window at a time with Python integers."""
    h = 0
    for t in tokens:
        h = (h * 0x100000001B3 + slow_token_hash(t)) % 2 ** 64
    return h


def test_token_hash_is_the_documented_definition():
    tokens = ["", "a", "x" * 7, "y" * 8, "z" * 9, "has_close_elements", "café", "ünïcode" * 9]
    assert [c.token_hash(t) for t in tokens] == [slow_token_hash(t) for t in tokens]
    # one word, one length: a bijection of the word, so no two such tokens collide
    assert len({c.token_hash(f"{i:04x}") for i in range(1 << 16)}) == 1 << 16
    # pinned: a change here changes every key table's guard column (bump SCORES_VERSION)
    assert c.token_hash("def") == 0x0FBF25C9224501D8


def test_normalize_lowercases_and_splits_on_non_alphanumerics():
    assert c.normalize("def Foo_bar(x, y2):\n\treturn x>=Y2  # Ünïcode café") == \
        ["def", "foo", "bar", "x", "y2", "return", "x", "y2", "ünïcode", "café"]
    assert c.normalize("  ...  ") == []


def test_window_hashes_match_the_definition_and_are_order_sensitive():
    tokens = c.normalize(TARGET)
    got = c.window_hashes(tokens, 13)
    assert len(got) == len(tokens) - 12
    assert [int(h) for h in got] == [slow_window_hash(tokens[i:i + 13]) for i in range(len(got))]
    assert c.ngram_hash(["a", "b", "c"]) != c.ngram_hash(["c", "b", "a"])
    assert len(c.window_hashes(tokens[:12], 13)) == 0


def test_window_hashes_of_long_documents_and_every_size():
    # past the first power table (4,096 entries), so it grows while hashing
    tokens = [f"w{(i * 7919) % 1009}" for i in range(9000)]
    for n in (1, 2, 13, 50):
        got = c.window_hashes(tokens, n)
        assert len(got) == len(tokens) - n + 1
        for i in (0, 1, 4095, 4096 - n, 8999 - n + 1):
            assert int(got[i]) == slow_window_hash(tokens[i:i + n]), (n, i)


def test_signed_transport_round_trips_through_the_index():
    entries = list(c.target_ngrams("T", TARGET))
    assert any(e.hash < 0 for e in entries) and any(e.hash > 0 for e in entries)
    assert all(-2 ** 63 <= e.hash < 2 ** 63 for e in entries)  # fits int64 coders
    index = c.ContaminationIndex(entries)
    assert len(index) == len({e.hash for e in entries})
    assert index.match(TARGET) == c.Match("T", len(c.normalize(TARGET)) - 12)


def test_copies_are_found_through_case_whitespace_and_punctuation_changes():
    index = c.ContaminationIndex(c.target_ngrams("HumanEval/0", TARGET))
    disguised = "Some preamble.\n" + TARGET.upper().replace("    ", "\t").replace(":", " ; ") + "\nmore"
    match = index.match(disguised)
    assert match is not None and match.target_id == "HumanEval/0"
    assert index.match("def has_close_elements(numbers, threshold): return any()") is None


def test_a_shared_run_one_token_short_is_not_contamination():
    tokens = c.normalize(TARGET)
    index = c.ContaminationIndex(c.target_ngrams("T", TARGET))
    assert index.match(" ".join(tokens[5:17])) is None  # 12 tokens
    assert index.match("x " + " ".join(tokens[5:18]) + " y").windows == 1  # 13 tokens


def test_short_targets_match_whole_and_very_short_ones_are_unguarded():
    nine = "alpha beta gamma delta epsilon zeta eta theta iota"
    entries = list(c.target_ngrams("short", nine))
    assert [e.n for e in entries] == [9]
    index = c.ContaminationIndex(entries + list(c.target_ngrams("long", TARGET)))
    assert index.sizes == [9, 13]
    assert index.match("prefix ALPHA, beta; gamma delta epsilon zeta eta theta iota suffix").target_id == "short"
    assert index.match("alpha beta gamma delta epsilon zeta eta theta") is None
    assert c.is_guarded(nine) and not c.is_guarded("return x + 1")
    assert list(c.target_ngrams("tiny", "return x + 1")) == []


def test_the_target_sharing_most_ngrams_is_named_in_any_order():
    # Two near-identical targets (HumanEval/56 and /61 differ like this): a copy of either is
    # attributed to itself, since it shares all its n-grams with itself and fewer with the other.
    a, b = TARGET, TARGET.replace("threshold", "limit")
    entries = list(c.target_ngrams("b", b)) + list(c.target_ngrams("a", a))
    for order in (entries, entries[::-1]):
        index = c.ContaminationIndex(order)
        assert index.match(a).target_id == "a"
        assert index.match(b).target_id == "b"
    same = list(c.target_ngrams("z", TARGET)) + list(c.target_ngrams("y", TARGET))
    assert c.ContaminationIndex(same).match(TARGET).target_id == "y"  # a tie: the smaller id


def test_windows_count_every_matching_ngram_once():
    other = "the quick brown fox jumps over the lazy dog again and again and again today"
    index = c.ContaminationIndex(list(c.target_ngrams("fox", other)) + list(c.target_ngrams("he", TARGET)))
    doc = other + " " + TARGET
    n_other, n_target = len(c.normalize(other)) - 12, len(c.normalize(TARGET)) - 12
    assert index.match(doc).windows == n_other + n_target
    assert index.match(doc).target_id == ("he" if n_target > n_other else "fox")


def test_empty_index_matches_nothing():
    assert c.ContaminationIndex([]).match(TARGET) is None
    with pytest.raises(ValueError):
        c.window_hashes(["a"], 0)
    assert c.window_hashes([], 3).dtype == np.uint64
