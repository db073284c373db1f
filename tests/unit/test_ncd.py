import gzip
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from zipfit_beam.score import ncd
from zipfit_beam.score.ncd import TargetSet, gzip_length

from tests.conftest import ORACLE_IS_CANONICAL, oracle_scores


def test_gzip_length_equals_gzip_module():
    for data in [b"", b"a", b"hello world" * 50, bytes(range(256)) * 20, "naïve ∑".encode()]:
        for level in (1, 6, 9):
            assert gzip_length(data, level) == len(gzip.compress(data, level))


@ORACLE_IS_CANONICAL
def test_golden_lengths():
    # Captured from gzip.compress on zlib 1.2.13; the framing alone is 18 bytes and an
    # empty deflate stream is 2 more.
    assert gzip_length(b"") == 20
    assert gzip_length(b"a") == 21
    assert gzip_length(b"abc" * 100) == 28  # 3 literals, then one long match chain


def test_ncd_formula_golden():
    assert ncd.ncd(100, 50, 120) == pytest.approx(0.7)     # (120 - 50) / 100
    assert ncd.ncd(50, 100, 120) == pytest.approx(0.7)     # symmetric in the two lengths
    assert ncd.ncd(40, 40, 40) == 0.0


def test_alignment_matches_definition_and_prefers_related_text():
    code = [b"def add(a, b):\n    return a + b\n", b"def mul(a, b):\n    return a * b\n"]
    ts = TargetSet(code, use_kernel=False)
    related = ts.alignment(b"def sub(a, b):\n    return a - b\n")
    unrelated = ts.alignment(b"The quick brown fox jumps over the lazy dog, twice over.")
    assert related > unrelated
    x = b"def sub(a, b):\n    return a - b\n"
    expect = 1 - sum((len(gzip.compress(x + y, 1)) - min(len(gzip.compress(x, 1)), len(gzip.compress(y, 1))))
                     / max(len(gzip.compress(x, 1)), len(gzip.compress(y, 1))) for y in code) / 2
    assert related == pytest.approx(expect, abs=1e-15)


@ORACLE_IS_CANONICAL
def test_alignment_on_fixture_equals_oracle(sources, targets):
    ts = TargetSet([t["text"].encode() for t in targets])
    oracle = oracle_scores(sources, targets)
    for s in sources:
        assert math.isclose(ts.alignment(s["text"].encode()), oracle[s["id"]], abs_tol=1e-12)


@ORACLE_IS_CANONICAL
def test_kernel_and_zlib_paths_agree(sources, targets):
    texts = [t["text"].encode() for t in targets]
    fast, slow = TargetSet(texts), TargetSet(texts, use_kernel=False)
    for s in sources:
        assert fast.alignment(s["text"].encode()) == slow.alignment(s["text"].encode())


def test_kernel_alignment_is_bit_identical_to_the_python_sum():
    # The kernel's alignment() sums the NCDs in C; it must be the very same float as the loop
    # over the lengths (and as the oracle's sum over gzip.compress lengths), not merely close.
    if ncd.kernel_name() != "c-gzip1":
        pytest.skip("C kernel not in use here")
    from tests.conftest import read_jsonl
    from zipfit_beam.jobs.example import EXAMPLE_SOURCE, EXAMPLE_TARGETS
    docs = [r["text"].encode() for r in read_jsonl(EXAMPLE_SOURCE)]
    targets = [r["text"].encode() for r in read_jsonl(EXAMPLE_TARGETS)]
    docs += [b"", b"x", docs[0] * 40, b"".join(docs[:60])]  # empty, 1 byte, past 64 KiB
    ts = TargetSet(targets)
    assert ts._kernel_alignment is not None
    mismatches = sum(ts.alignment(x) != ts.alignment_of_lengths(x) for x in docs)
    assert mismatches == 0
    oracle = [1 - sum((len(gzip.compress(x + y, 1)) - min(len(gzip.compress(x, 1)), c_y))
                      / max(len(gzip.compress(x, 1)), c_y)
                      for y, c_y in zip(targets, map(lambda t: len(gzip.compress(t, 1)), targets)))
              / len(targets) for x in docs[:50]]
    assert [ts.alignment(x) for x in docs[:50]] == oracle
    one = TargetSet(targets[:1])  # a single target, and many threads on one object
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one.alignment, docs)) == [one.alignment_of_lengths(x) for x in docs]


def test_concatenation_order_is_source_first():
    x, y = b"alpha beta gamma " * 3, b"zeta eta theta " * 3
    ts = TargetSet([y], use_kernel=False)
    c_x, c_y = gzip_length(x), gzip_length(y)
    assert ts.alignment(x) == 1 - ncd.ncd(c_x, c_y, gzip_length(x + y))


def test_level_zero_is_refused_with_reason():
    with pytest.raises(ValueError, match="stores the data without compressing"):
        TargetSet([b"x"], level=0)
    with pytest.raises(ValueError, match="gzip level must be between 1 and 9"):
        ncd.check_compressor("gzip", 10)
    with pytest.raises(ValueError, match="unknown compressor"):
        ncd.check_compressor("rar", 1)


def test_empty_target_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        TargetSet([])


@pytest.mark.parametrize("compressor", ["lz4", "zstd", "isal"])
def test_fast_compressors_rank_related_text_higher(compressor):
    code = [b"def add(a, b):\n    return a + b\n" * 3, b"def mul(a, b):\n    return a * b\n" * 3]
    ts = TargetSet(code, compressor, ncd.default_level(compressor))
    assert ts.alignment(b"def sub(a, b):\n    return a - b\n" * 3) > \
        ts.alignment(b"The quick brown fox jumps over the lazy dog, twice over, and again.")
    assert ncd.kernel_name(compressor, ncd.default_level(compressor)) != "c-gzip1"


def test_isal_lengths_are_gzip_framed():
    from isal import igzip
    data = b"some text to compress " * 20
    assert ncd.COMPRESSORS["isal"].length(data, 1) == len(igzip.compress(data, 1))
