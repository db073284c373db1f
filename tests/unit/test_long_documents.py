"""Long documents: truncation and chunked scoring, against the gzip-module oracle."""

import gzip

import pytest

from zipfit_beam.score.ncd import DEFAULT_CHUNK_BYTES, TargetSet, document_score, split_chunks

from tests.conftest import ORACLE_IS_CANONICAL


def oracle_alignment(x: bytes, targets):
    c = lambda b: len(gzip.compress(b, 1))  # noqa: E731
    return 1 - sum((c(x + y) - min(c(x), c(y))) / max(c(x), c(y)) for y in targets) / len(targets)


@pytest.fixture(scope="module")
def long_text(sources):
    """~70 KB of real text (man pages, C headers, Perl: no Python)."""
    parts = [s["text"] for s in sources if not s["id"].startswith("python")]
    return ("\n".join(parts * 8)).encode()[:70_000]


@pytest.mark.parametrize("n, size", [(1, 10), (10, 3), (10, 10), (11, 10), (100_001, 32768), (65_537, 32768)])
def test_chunks_are_contiguous_near_equal_and_small_enough(n, size):
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    chunks = split_chunks(data, size)
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= size and max(map(len, chunks)) - min(map(len, chunks)) <= 1
    assert len(chunks) == -(-n // size)
    if len(chunks) > 1:
        assert min(map(len, chunks)) >= size // 2


@ORACLE_IS_CANONICAL
def test_documents_that_fit_keep_the_reference_score(sources, targets):
    t = [x["text"].encode() for x in targets]
    ts = TargetSet(t)
    for s in sources:
        x = s["text"].encode()
        assert len(x) <= DEFAULT_CHUNK_BYTES
        assert document_score(ts, x, chunk_bytes=DEFAULT_CHUNK_BYTES) == ts.alignment(x)
        assert document_score(ts, x, chunk_bytes=DEFAULT_CHUNK_BYTES) == pytest.approx(
            oracle_alignment(x, t), abs=1e-12)


@ORACLE_IS_CANONICAL
def test_chunk_max_mean_and_truncation_equal_the_oracle(long_text, targets):
    t = [x["text"].encode() for x in targets]
    ts = TargetSet(t)
    pieces = [long_text[i * 17_500:(i + 1) * 17_500] for i in range(4)]  # 70,000 = 4 x 17,500
    chunk_scores = [oracle_alignment(p, t) for p in pieces]
    assert document_score(ts, long_text, chunk_bytes=20_000, reduce="max") == pytest.approx(max(chunk_scores), abs=1e-12)
    assert document_score(ts, long_text, chunk_bytes=20_000, reduce="mean") == pytest.approx(
        sum(chunk_scores) / 4, abs=1e-12)
    assert document_score(ts, long_text, max_bytes=5000, chunk_bytes=None) == pytest.approx(
        oracle_alignment(long_text[:5000], t), abs=1e-12)
    # truncation first, then chunking: 30,000 bytes -> two chunks of 15,000
    halves = [oracle_alignment(long_text[:15_000], t), oracle_alignment(long_text[15_000:30_000], t)]
    assert document_score(ts, long_text, max_bytes=30_000, chunk_bytes=20_000) == pytest.approx(max(halves), abs=1e-12)
    assert document_score(ts, long_text, chunk_bytes=None) == pytest.approx(oracle_alignment(long_text, t), abs=1e-12)
    with pytest.raises(ValueError, match="chunk reduce"):
        document_score(ts, long_text, chunk_bytes=20_000, reduce="median")


def test_a_target_planted_early_in_a_long_document_is_only_seen_by_chunking(long_text, targets):
    """Deflate's 32 KiB window: planted at the start of 70 KB, the target is out of reach
    of C(x + y) and the whole-document score barely moves; a chunk holds it in view."""
    t = [x["text"].encode() for x in targets]
    ts = TargetSet(t)
    planted = t[0] + b"\n" + long_text
    whole_gain = ts.alignment(planted) - ts.alignment(long_text)
    chunk_gain = (document_score(ts, planted, chunk_bytes=4096)
                  - document_score(ts, long_text, chunk_bytes=4096))
    assert abs(whole_gain) < 0.002
    assert chunk_gain > 10 * max(abs(whole_gain), 1e-4)
