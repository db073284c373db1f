"""Normalized compression distance and ZIP-FIT alignment. Pure Python: no Beam.

    C(s)        = len(gzip.compress(s, level))                  (bytes; s is UTF-8)
    NCD(x, y)   = (C(x + y) - min(C(x), C(y))) / max(C(x), C(y))  source x first, no separator
    align(x)    = 1 - mean_j NCD(x, y_j)

A gzip member is a 10-byte header, a raw deflate stream and an 8-byte trailer, so
``len(gzip.compress(b, L)) == len(zlib.compress(b, L, -15)) + 18`` exactly; we compute
the latter (no header bytes built, same number). For gzip level 1 an optional C
kernel (``zipfit_beam.score._gzip1``) reproduces zlib's lengths exactly and much faster.

Which zlib the scores follow: canonical zlib, not the platform's. zlib 1.2.11 to 1.3.2
(``CANONICAL_ZLIB``) give identical output, and the kernel reproduces it at level 1
(benchmarks/zlib_versions.py builds each release and compares). zlib-ng (Fedora 40+'s zlib,
in compat mode) does not: its parser differs, so there ``gzip.compress`` and zip-fit give
other lengths. The kernel is used whenever it is built and its import-time self-check
gives the pinned canonical lengths, whatever zlib Python links: one selection comes out the
same on Debian, Ubuntu, conda, Fedora and Dataflow workers alike, and on a canonical zlib it
is also zip-fit's there. Without the kernel, zlib itself is called, and the scores are
canonical only where that zlib is. ``scoring_identity`` says which case applies (the manifest
records it); ``check_same_scoring`` lets each worker check that it scores like the launcher.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import threading
import zlib
from typing import Callable, Dict, Iterator, NamedTuple, Optional, Sequence

__all__ = ["gzip_length", "Compressor", "default_level", "ncd", "check_compressor",
           "kernel_name", "TargetSet", "split_chunks", "iter_chunks", "document_score"]

GZIP_FRAMING_BYTES = 18  # 10-byte gzip header + 8-byte CRC32/ISIZE trailer


def gzip_length(data: bytes, level: int = 1) -> int:
    """``len(gzip.compress(data, level))``, without building the gzip framing."""
    return len(zlib.compress(data, level, -15)) + GZIP_FRAMING_BYTES


def _lz4_length(data: bytes, level: int) -> int:
    import lz4.frame  # the reference's call, so lz4 scores match zip-fit's lz4 mode
    return len(lz4.frame.compress(data, compression_level=level))


_zstd_local = threading.local()  # a ZstdCompressor must not be shared between threads


def _zstd_length(data: bytes, level: int) -> int:
    cache = _zstd_local.__dict__.setdefault("by_level", {})
    if level not in cache:
        import zstandard
        cache[level] = zstandard.ZstdCompressor(level=level)
    return len(cache[level].compress(data))


def _isal_length(data: bytes, level: int) -> int:
    from isal import isal_zlib  # DEFLATE by Intel ISA-L, framed like gzip
    return len(isal_zlib.compress(data, level, -15)) + GZIP_FRAMING_BYTES


class Compressor(NamedTuple):
    """A compressed-length function with its valid and default levels."""
    length: Callable[[bytes, int], int]
    levels: range
    default_level: int
    module: str  # the import that provides it, for a clear error when missing


COMPRESSORS: Dict[str, Compressor] = {
    "gzip": Compressor(gzip_length, range(1, 10), 1, "zlib"),  # exact, the paper's default
    "lz4": Compressor(_lz4_length, range(0, 17), 0, "lz4.frame"),  # the paper's ablation winner
    "zstd": Compressor(_zstd_length, range(1, 23), 1, "zstandard"),
    "isal": Compressor(_isal_length, range(0, 4), 1, "isal.isal_zlib"),
}


def default_level(compressor: str) -> int:
    check_compressor(compressor, None)
    return COMPRESSORS[compressor].default_level


def ncd(c_x: int, c_y: int, c_xy: int) -> float:
    """Normalized compression distance from the three compressed lengths."""
    return (c_xy - min(c_x, c_y)) / max(c_x, c_y)


def check_compressor(compressor: str, level: Optional[int]) -> None:
    """Raise ValueError for a compressor/level that cannot give meaningful scores."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown compressor {compressor!r}; choose one of {', '.join(COMPRESSORS)}")
    if level is None:
        return
    if compressor == "gzip" and level == 0:
        raise ValueError(
            "gzip level 0 stores the data without compressing it, so every NCD would track "
            "document length only and the selection would be meaningless; use level 1 "
            "(the ZIP-FIT paper's best) or higher"
        )
    levels = COMPRESSORS[compressor].levels
    if level not in levels:
        raise ValueError(f"{compressor} level must be between {levels[0]} and {levels[-1]}, got {level}")
    try:
        importlib.import_module(COMPRESSORS[compressor].module)
    except ImportError as e:
        raise ValueError(f"compressor {compressor!r} needs the {COMPRESSORS[compressor].module} "
                         f"module: {e}") from e


# zlib releases whose deflate output at level 1 (windowBits -15, memLevel 8, default strategy)
# the kernel reproduces exactly: benchmarks/zlib_versions.py built each from source and found no
# mismatch on 369,042 real and adversarial pairs (and 2,251 single inputs) per release; they also
# agree with each other at levels 2-9 there, so a canonical zlib gives canonical lengths at every
# gzip level (only level 1 has the kernel). zlib-ng (compat mode, Fedora 40+) differs on nearly
# every pair, at every level. Equal to the kernel's ZLIB_COMPAT (tests/unit/test_zlib_versions.py).
CANONICAL_ZLIB = ("1.2.11", "1.2.12", "1.2.13", "1.3", "1.3.1", "1.3.2")


def _probe_cases() -> list[tuple[bytes, list[bytes]]]:
    """(source, targets) for the self-check, built without randomness: short, repetitive,
    all-byte, incompressible and text-like inputs, which reach deflate's stored, fixed and
    dynamic blocks, a block cut at 16383 symbols and a window slide (inputs over 65274 bytes)."""
    small = [b"", b"a", b"abcabcabcabc" * 40, bytes(range(256)) * 3]
    noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(2100))  # 67,200 bytes
    words = b"def return self None import class lambda yield while for in if else x0 x1".split()
    text = b" ".join(words[c % len(words)] for c in noise[:16_000])  # 78,900 bytes
    noise = noise[:20_000]
    return [(x, small) for x in small] + [(noise, [b"", text[:5000]]), (text, [b"", noise])]


# gzip level-1 lengths of the _probe_cases() pairs, in order, from canonical zlib (equal for
# every release in CANONICAL_ZLIB: tests/unit/test_zlib_versions.py checks each it can).
_CANONICAL_PROBE_LENGTHS = (20, 21, 28, 296, 21, 22, 28, 296, 28, 28, 33, 303, 296, 297, 303, 304,
                            20028, 21721, 19103, 40763)


def _reproduces_canonical(concat_lengths: Callable[[bytes, list[bytes]], list[int]]) -> bool:
    got = tuple(n for x, ys in _probe_cases() for n in concat_lengths(x, ys))
    return got == _CANONICAL_PROBE_LENGTHS


def _zlib_concat_lengths(x: bytes, ys: list[bytes]) -> list[int]:
    return [gzip_length(x + y, 1) for y in ys]


def _load_kernel():
    """The C gzip-1 kernel module, or None when it is not built or fails its self-check."""
    try:
        from zipfit_beam.score import _gzip1  # type: ignore[attr-defined]
    except ImportError:
        return None
    # A cheap guard against a miscompiled kernel: it must give the pinned canonical lengths.
    if not _reproduces_canonical(lambda x, ys: _gzip1.Gzip1Targets(ys).concat_lengths(x)):
        return None
    return _gzip1


def zlib_is_canonical(version: str = zlib.ZLIB_RUNTIME_VERSION,
                      concat_lengths: Callable[[bytes, list[bytes]], list[int]] = _zlib_concat_lengths) -> bool:
    """Whether this zlib (by its version and by the self-check) gives canonical lengths."""
    return version in CANONICAL_ZLIB and _reproduces_canonical(concat_lengths)


_KERNEL = _load_kernel()
_ZLIB_CANONICAL = zlib_is_canonical()


# --- the lz4 kernel ----------------------------------------------------------------------
#
# zipfit_beam.score._lz4len reproduces len(lz4.frame.compress(b, compression_level=L)) for L in
# 0..2 (LZ4F's fast mode at acceleration 1; python-lz4's default frame) without compressing,
# and reuses the source's work across targets. Used only when built and when a self-check
# at import agrees with the lz4.frame this interpreter has; else lz4.frame is called.

LZ4_KERNEL_LEVELS = (0, 1, 2)


def _load_lz4_kernel():
    """The C lz4 length module, or None when it is not built or disagrees with lz4.frame."""
    try:
        from zipfit_beam.score import _lz4len  # type: ignore[attr-defined]
        import lz4.frame  # noqa: F401  (the self-check's reference)
    except ImportError:
        return None
    # Empty, short (< 13 bytes: all literals), repetitive, incompressible (a stored block),
    # and a two-block linked frame: a stored first block the second one copies from.
    noise = b"".join(hashlib.sha256(i.to_bytes(2, "little")).digest() for i in range(2100))
    probe = [b"", b"a", b"hello world!", b"abcabcabcabc" * 40, noise[:300],
             noise[:66_000] + noise[10_000:15_000]]
    kernel = _lz4len.Lz4Targets(probe)
    for level in LZ4_KERNEL_LEVELS:
        for x in probe:
            if kernel.concat_lengths(x) != [_lz4_length(x + y, level) for y in probe]:
                return None
            if _lz4len.lz4_length(x) != _lz4_length(x, level):
                return None
    return _lz4len


_LZ4_KERNEL = _load_lz4_kernel()


def _lz4_kernel_functions(texts: Sequence[bytes]):
    """(length, concat_lengths) for TargetSet from the lz4 kernel; inputs past the kernel's
    32-bit limit (2 GB) go to lz4.frame."""
    k = _LZ4_KERNEL
    targets = k.Lz4Targets(texts)
    limit = k.MAX_INPUT - max(map(len, texts), default=0)

    def length(x: bytes) -> int:
        return k.lz4_length(x) if len(x) <= k.MAX_INPUT else _lz4_length(x, 0)

    def concat_lengths(x: bytes) -> list[int]:
        if len(x) <= limit:
            return targets.concat_lengths(x)
        return [_lz4_length(x + y, 0) for y in texts]

    return length, concat_lengths


def kernel_name(compressor: str = "gzip", level: int = 1) -> str:
    """Which implementation scores this compressor/level here: 'c-gzip1' or 'c-lz4' (the
    exact C kernels) or the compressor's own library ('zlib', 'lz4.frame', ...)."""
    if _KERNEL is not None and compressor == "gzip" and level == 1:
        return "c-gzip1"
    if _LZ4_KERNEL is not None and compressor == "lz4" and level in LZ4_KERNEL_LEVELS:
        return "c-lz4"
    return COMPRESSORS[compressor].module


def scoring_identity(compressor: str = "gzip", level: int = 1) -> dict:
    """What the lengths of this compressor/level follow here, for the manifest:
    ``{'kernel': kernel_name(...), 'zlib_runtime': the zlib Python links, 'canonical': ...}``.
    ``canonical``: True when gzip lengths are canonical zlib's (the kernel, or a canonical
    zlib), False when they are this platform's other zlib's, None for non-zlib compressors."""
    kernel = kernel_name(compressor, level)
    if compressor != "gzip":
        canonical = None
    else:
        canonical = kernel == "c-gzip1" or _ZLIB_CANONICAL
    return {"kernel": kernel, "zlib_runtime": zlib.ZLIB_RUNTIME_VERSION, "canonical": canonical}


def scoring_class(identity: dict) -> str:
    """A name shared by exactly the ``scoring_identity`` results that give the same lengths:
    'canonical-zlib' for canonical gzip lengths (kernel or zlib, any canonical release), else
    the implementation with its zlib release ('zlib 1.3.1.zlib-ng'), or for non-zlib
    compressors the library's name."""
    if identity.get("canonical"):
        return "canonical-zlib"
    if identity.get("canonical") is None:
        return str(identity.get("kernel"))
    return f"{identity.get('kernel')} {identity.get('zlib_runtime')}"


def same_scoring(a: dict, b: dict) -> bool:
    """Whether two ``scoring_identity`` results give the same lengths."""
    return scoring_class(a) == scoring_class(b)


def check_same_scoring(expected: dict, compressor: str, level: int) -> None:
    """Raise RuntimeError when this process would score differently from ``expected`` (the
    launcher's ``scoring_identity``): a job's workers must all give the same lengths."""
    here = scoring_identity(compressor, level)
    if not same_scoring(expected, here):
        raise RuntimeError(
            f"this worker scores {compressor} level {level} with {here}, but the job was built "
            f"for {expected}: scores would differ between machines. Install zipfit-beam with "
            f"its C kernel (a C compiler at install time) on both sides, or run where Python "
            f"links zlib {', '.join(CANONICAL_ZLIB)}")


class TargetSet:
    """A target set prepared once per worker: encoded texts and their compressed lengths.

    ``alignment(x)`` scores one UTF-8 source document against every target; it is
    thread-safe (the C kernel releases the GIL, so threads scale across cores).
    """

    def __init__(self, texts: Sequence[bytes], compressor: str = "gzip", level: int = 1,
                 use_kernel: bool = True):
        check_compressor(compressor, level)
        if not texts:
            raise ValueError("the target set is empty")
        self.texts = [bytes(t) for t in texts]
        self.compressor, self.level = compressor, level
        self._length: Callable[[bytes], int]
        self._concat_lengths: Callable[[bytes], list[int]]
        # the kernel's whole alignment: the same sum in the same order, in C (one call, no
        # per-target Python objects); None: the loop below
        self._kernel_alignment: Optional[Callable[[bytes], float]] = None
        self.kernel = None  # the C kernel's Gzip1Targets when it scores here (docwork uses it too)
        if use_kernel and kernel_name(compressor, level) == "c-gzip1":
            kernel = self.kernel = _KERNEL.Gzip1Targets(self.texts)
            self._length = _KERNEL.gzip1_length
            self._concat_lengths = kernel.concat_lengths
            self._kernel_alignment = kernel.alignment
        elif use_kernel and kernel_name(compressor, level) == "c-lz4":
            self._length, self._concat_lengths = _lz4_kernel_functions(self.texts)
        else:
            self._length = functools.partial(COMPRESSORS[compressor].length, level=level)
            self._concat_lengths = self._generic_concat_lengths
        self.lengths = [self._length(t) for t in self.texts]

    def _generic_concat_lengths(self, x: bytes) -> list[int]:
        length = self._length
        return [length(x + y) for y in self.texts]

    def alignment(self, x: bytes) -> float:
        """1 - mean NCD(x, y_j); the sum runs in target order so it is reproducible."""
        if self._kernel_alignment is not None:
            return self._kernel_alignment(x)
        return self.alignment_of_lengths(x)

    def alignment_of_lengths(self, x: bytes) -> float:
        """``alignment`` as the definition reads, from the lengths (the kernel's ``alignment``
        computes exactly this, with the same float operations in the same order)."""
        c_x = self._length(x)
        total = 0.0
        for c_y, c_xy in zip(self.lengths, self._concat_lengths(x)):
            total += ncd(c_x, c_y, c_xy)
        return 1.0 - total / len(self.lengths)


# --- long documents ----------------------------------------------------------------------
#
# Deflate looks back only 32 KiB, so in C(x + y) a target y can only reuse what lies in the
# last ~32 KiB of the source x: a long document that contains the target verbatim early on
# scores as unrelated. Two remedies, applied to the UTF-8 bytes that are scored:
#   max_bytes    score only the first max_bytes bytes (truncation)
#   chunk_bytes  cut the document into near-equal chunks of at most chunk_bytes, score
#                each, and reduce the chunk scores by max or mean
# A document no longer than chunk_bytes (and max_bytes) is scored whole, exactly as before.

CHUNK_REDUCERS = ("max", "mean")
# The default: deflate's window. Documents up to 32 KiB keep their whole-document score
# (the reference's); longer ones score as their best 16-32 KiB chunk (see the README).
DEFAULT_CHUNK_BYTES = 32768


def split_chunks(data: bytes, chunk_bytes: int) -> list[bytes]:
    """``data`` cut into n = ceil(len / chunk_bytes) contiguous chunks of near-equal size.

    Equal sizes (rather than full chunks and a short tail) keep every chunk above
    chunk_bytes / 2: a tiny tail chunk would score like a tiny document, and gzip-1
    ZIP-FIT favours short documents."""
    return list(iter_chunks(data, chunk_bytes))


def iter_chunks(data: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """``split_chunks`` one chunk at a time (so scoring holds one chunk, not a second copy
    of the document)."""
    n = max(1, -(-len(data) // chunk_bytes))
    size, extra = divmod(len(data), n)
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        yield data[start:end]
        start = end


def document_score(targets: "TargetSet", data: bytes, max_bytes: int | None = None,
                   chunk_bytes: int | None = None, reduce: str = "max") -> float:
    """The alignment of one document's UTF-8 bytes under the long-document settings."""
    if max_bytes is not None and len(data) > max_bytes:
        data = data[:max_bytes]
    if chunk_bytes is None or len(data) <= chunk_bytes:
        return targets.alignment(data)
    scores = [targets.alignment(c) for c in iter_chunks(data, chunk_bytes)]
    if reduce == "max":
        return max(scores)
    if reduce == "mean":
        return sum(scores) / len(scores)
    raise ValueError(f"chunk reduce must be one of {CHUNK_REDUCERS}, got {reduce!r}")
