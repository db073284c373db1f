"""Benchmark contamination: which source documents share a long word run with a target.
Pure: no Beam.

ZIP-FIT ranks a verbatim copy of a target highest (a document compresses best with
itself), so without a guard the benchmark leaks into the training data. We flag a source
document when it shares an n-gram of normalized tokens (n = 13 by default, the usual
decontamination window) with any target.

    normalize:  lowercase, tokens = maximal runs of letters and digits (Unicode-aware;
                punctuation, underscores and whitespace separate tokens)
    token hash: over the token's UTF-8 bytes as 8-byte little-endian words w (the last one
                zero-padded), h = (h ^ w) * K, h ^= h >> 32 from a seed XOR the byte
                count, then MurmurHash3's 64-bit finaliser (fmix64); all mod 2^64
    n-gram hash: sum_j token_hash(w_j) * P^(n-1-j)  mod 2^64  (order-sensitive, P odd)

The n-gram hash is a polynomial over the tokens' 64-bit hashes, so a whole document's
windows are hashed with a few vectorized numpy operations (prefix sums, see
``window_hashes``) instead of one hash call per window; it depends only on the tokens, so
launcher and workers on any machine agree.

In the scoring pass the same tokens, hashes and matches come from the C extension
``_docwork`` (``docwork.DocumentWork``, GIL released; ``ContaminationIndex.tables`` is what
it reads); this module is their definition and the fallback when it is not built.

Short targets. A target with fewer than ``n`` tokens but at least ``MIN_TARGET_TOKENS`` (8)
contributes its whole normalized token sequence as one shorter n-gram: a source document
that contains the full short target is flagged. A target with fewer than 8 tokens cannot be
told apart from coincidence (``return x`` occurs everywhere) and is not guarded; such
targets are listed as unguarded, never silently ignored.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ["normalize", "token_hash", "window_hashes", "ngram_hash", "TargetNgram",
           "target_ngrams", "is_guarded", "Match", "ContaminationIndex"]

DEFAULT_NGRAM = 13
MIN_TARGET_TOKENS = 8
_TOKEN = re.compile(r"[^\W_]+")
_P = np.uint64(0x100000001B3)  # the 64-bit FNV prime: odd, so multiplication mod 2^64 is a bijection


def normalize(text: str) -> List[str]:
    """Lowercased runs of letters and digits: ``"def Foo_bar(x):"`` -> ``["def", "foo", "bar", "x"]``."""
    return _TOKEN.findall(text.lower())


# Tokens per block of a long document (``token_blocks``), and characters lowercased at a
# time: ``str.lower`` of a non-ASCII text allocates 12 bytes per character for a moment
# (CPython's full case mapping buffer), so a long text is lowercased piece by piece.
SEGMENT_TOKENS = 1 << 16
LOWER_CHARS = 1 << 20
_ASCII_SPACE = re.compile(r"[ \t\n\r]")


def lowered_pieces(text: str, size: Optional[int] = None) -> Iterator[str]:
    """``text.lower()`` in consecutive pieces of about ``size`` characters (default
    ``LOWER_CHARS``), each cut just after an ASCII space, tab or newline. Their
    concatenation is ``text.lower()`` exactly: such a character is neither cased nor
    case-ignorable, so no context-dependent mapping (the Greek final sigma) looks across
    it, and it separates tokens, so no token is split. A text without such a character
    after ``size`` is lowercased whole from there."""
    size = size or LOWER_CHARS
    start, n = 0, len(text)
    while start < n:
        cut = _ASCII_SPACE.search(text, start + size) if start + size < n else None
        end = n if cut is None else cut.end()
        yield text[start:end].lower() if (start, end) != (0, n) else text.lower()
        start = end


def token_blocks(text: str, overlap: int, segment: Optional[int] = None) -> Iterator[List[str]]:
    """``normalize(text)`` in consecutive lists of at most ``segment`` + ``overlap`` tokens
    (default ``SEGMENT_TOKENS``), each after the first starting with the last ``overlap``
    tokens of the one before; a text of at most ``segment`` characters is one list. The
    tokens are those of ``normalize`` (see ``lowered_pieces``)."""
    segment = segment or SEGMENT_TOKENS
    if len(text) <= segment:
        yield normalize(text)
        return
    block: List[str] = []
    fresh = 0  # tokens in the block beyond the overlap carried over
    for piece in lowered_pieces(text):
        for m in _TOKEN.finditer(piece):
            block.append(m.group())
            fresh += 1
            if fresh >= segment:
                yield block
                block = block[len(block) - overlap:] if overlap else []
                fresh = 0
    if fresh or not block:
        yield block


_M64 = (1 << 64) - 1
_SEED, _MUL = 0xCBF29CE484222325, 0x9E3779B97F4A7C15  # FNV's offset basis, 2^64 / golden ratio


def token_hash(token: str) -> int:
    """The token's 64-bit hash (see the module docstring). Not cryptographic, and it need
    not be: a window matches on all 64 bits of a polynomial over its tokens' hashes, every
    step is a bijection (so tokens of up to 8 bytes and one length never collide), and
    fmix64 spreads every input bit over the output. The C pass computes it from the text's
    bytes in place, a multiply per 8 bytes, with no table to look up (``_docwork``)."""
    data = token.encode("utf-8")
    h = _SEED ^ len(data)
    for i in range(0, len(data), 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * _MUL) & _M64
        h ^= h >> 32
    h = ((h ^ (h >> 33)) * 0xFF51AFD7ED558CCD) & _M64
    h = ((h ^ (h >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


# token -> token_hash, shared by the documents a process checks: token frequencies are
# Zipfian, so nearly every lookup hits and the hash runs once per distinct token, not once
# per document. Cleared when it grows past the bound (plain dict operations are atomic
# under the GIL, so the scoring threads can share it).
_TOKEN_CACHE: Dict[str, int] = {}
_TOKEN_CACHE_MAX = 1 << 20


def _token_hashes(tokens: Sequence[str]) -> np.ndarray:
    cache = _TOKEN_CACHE
    if len(cache) > _TOKEN_CACHE_MAX:
        cache.clear()
    values = list(map(cache.get, tokens))
    if None in values:
        for i, v in enumerate(values):
            if v is None:
                values[i] = cache[tokens[i]] = token_hash(tokens[i])
    return np.array(values, dtype=np.uint64)


# Powers of P and of its inverse mod 2^64 (P is odd, so it has one), grown on demand.
# With prefix sums S[k] = sum_{m<k} v[m] * P^-m, a window's hash is
#   sum_j v[i+j] * P^(n-1-j) = P^(n-1+i) * (S[i+n] - S[i])   (mod 2^64),
# a constant number of numpy operations per document whatever n is.
_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_POWERS = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


def _powers(size: int):
    """(P^k, P^-k) for k < at least ``size``; the tuple is replaced whole, so threads may share it."""
    global _POWERS
    powers = _POWERS
    if len(powers[0]) < size:
        size = max(size, 2 * len(powers[0]), 4096)
        with np.errstate(over="ignore"):
            up = np.cumprod(np.full(size, _P, dtype=np.uint64))
            down = np.cumprod(np.full(size, _P_INV, dtype=np.uint64))
        one = np.ones(1, dtype=np.uint64)
        powers = _POWERS = (np.concatenate((one, up[:-1])), np.concatenate((one, down[:-1])))
    return powers


def window_hashes(tokens: Sequence[str], n: int) -> np.ndarray:
    """The hash of every run of ``n`` consecutive tokens, in order (empty if fewer tokens)."""
    if n < 1:
        raise ValueError("n-gram size must be >= 1")
    count = len(tokens) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    values = _token_hashes(tokens)
    up, down = _powers(len(values) + 1)
    with np.errstate(over="ignore"):  # arithmetic mod 2^64 is the point
        prefix = np.zeros(len(values) + 1, dtype=np.uint64)
        np.cumsum(values * down[:len(values)], dtype=np.uint64, out=prefix[1:])
        return up[n - 1:n - 1 + count] * (prefix[n:n + count] - prefix[:count])


def ngram_hash(tokens: Sequence[str]) -> int:
    """The hash of one n-gram (``window_hashes`` of exactly those tokens)."""
    return int(window_hashes(tokens, len(tokens))[0])


class TargetNgram(NamedTuple):
    """One entry of the contamination index: an n-gram hash of size ``n`` found in target
    ``target_id``. These are the side input of the guard. ``hash`` holds the 64 bits as a
    signed integer (two's complement), so it fits the int64 coders of every runner."""
    n: int
    hash: int
    target_id: str


def target_ngrams(target_id: str, text: str, n: int = DEFAULT_NGRAM) -> Iterator[TargetNgram]:
    """The index entries of one target: every n-gram; the whole target when it has
    ``MIN_TARGET_TOKENS`` <= tokens < n; nothing when it is shorter (see ``is_guarded``)."""
    tokens = normalize(text)
    size = n if len(tokens) >= n else len(tokens)
    if size < min(n, MIN_TARGET_TOKENS):
        return
    for h in np.unique(window_hashes(tokens, size)).view(np.int64):
        yield TargetNgram(size, int(h), target_id)


def is_guarded(text: str, n: int = DEFAULT_NGRAM) -> bool:
    """Whether a target is long enough for the guard to look for it."""
    return len(normalize(text)) >= min(n, MIN_TARGET_TOKENS)


class Match(NamedTuple):
    target_id: str  # the target sharing the most n-grams with the document (ties: smallest id)
    windows: int  # how many of the document's windows match some target


class ContaminationIndex:
    """Target n-gram hashes, grouped by n-gram size, for fast membership tests.

    Built from ``TargetNgram`` entries in any order (the answers do not depend on it)."""

    def __init__(self, entries: Iterable[Tuple[int, int, str]]):
        owners: Dict[Tuple[int, int], set] = {}
        for n, h, target_id in entries:
            owners.setdefault((int(n), int(h)), set()).add(target_id)
        self._by_size: Dict[int, Tuple[np.ndarray, List[Tuple[str, ...]]]] = {}
        for size in sorted({n for n, _ in owners}):
            signed = np.array([h for n, h in owners if n == size], dtype=np.int64)
            order = np.argsort(signed.view(np.uint64), kind="stable")
            hashes = signed.view(np.uint64)[order]
            ids = [tuple(sorted(owners[(size, int(signed[i]))])) for i in order]
            self._by_size[size] = (hashes, ids)

    def __len__(self) -> int:
        return sum(len(hashes) for hashes, _ in self._by_size.values())

    @property
    def sizes(self) -> List[int]:
        return list(self._by_size)

    def tables(self) -> Tuple[List[Tuple[int, np.ndarray, np.ndarray, np.ndarray]], Tuple[str, ...]]:
        """The index as flat arrays, for the C guard (``docwork``): ``ids`` sorted, and per
        n-gram size (ascending) ``(n, hashes, offsets, members)``: the sorted uint64 hashes,
        and for entry i the ranks in ``ids`` of its targets, ``members[offsets[i]:offsets[i+1]]``
        (uint32 offsets, int32 ranks). Ranks follow the sorted ids, so "smallest id" on ties
        is "smallest rank"."""
        ids = tuple(sorted({t for _, owners in self._by_size.values() for group in owners for t in group}))
        rank = {t: i for i, t in enumerate(ids)}
        tables = []
        for size, (hashes, owners) in self._by_size.items():
            offsets = np.zeros(len(owners) + 1, dtype=np.uint32)
            np.cumsum([len(group) for group in owners], dtype=np.uint32, out=offsets[1:])
            members = np.fromiter((rank[t] for group in owners for t in group), dtype=np.int32,
                                  count=int(offsets[-1]))
            tables.append((size, np.ascontiguousarray(hashes, dtype=np.uint64), offsets, members))
        return tables, ids

    def match(self, text: str) -> Optional[Match]:
        """The document's match against the targets, or None when it shares no n-gram.

        A long document is walked in blocks of ``SEGMENT_TOKENS`` tokens that overlap by
        (largest n-gram size - 1) tokens, each window counted in exactly one block: the
        same answer as one pass, holding one block's tokens and hashes at a time."""
        if not self._by_size:
            return None
        overlap = max(self._by_size) - 1
        shared: Dict[str, int] = {}  # target id -> n-grams it shares with the document
        windows = 0
        for k, tokens in enumerate(token_blocks(text, overlap)):
            for size, (hashes, ids) in self._by_size.items():
                windows += self._match_block(tokens, size, hashes, ids, overlap - size + 1 if k else 0,
                                             shared)
        if not windows:
            return None
        best = min(shared, key=lambda t: (-shared[t], t))
        return Match(best, windows)

    @staticmethod
    def _match_block(tokens, size, hashes, ids, skip: int, shared: Dict[str, int]) -> int:
        """Count one block's windows of ``size`` that are target n-grams (the first ``skip``
        were counted in the block before), adding to ``shared``; returns how many."""
        probe = window_hashes(tokens, size)[skip:]
        if not len(probe):
            return 0
        where = np.searchsorted(hashes, probe)
        where[where == len(hashes)] = 0
        found = np.flatnonzero(hashes[where] == probe)
        for i in found:
            for target_id in ids[int(where[i])]:
                shared[target_id] = shared.get(target_id, 0) + 1
        return len(found)
