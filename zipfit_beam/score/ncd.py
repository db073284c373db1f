"""Normalized compression distance and ZIP-FIT alignment. Pure Python: no Beam.

    C(s)        = len(gzip.compress(s, level))                  (bytes; s is UTF-8)
    NCD(x, y)   = (C(x + y) - min(C(x), C(y))) / max(C(x), C(y))  source x first, no separator
    align(x)    = 1 - mean_j NCD(x, y_j)

A gzip member is a 10-byte header, a raw deflate stream and an 8-byte trailer, so
``len(gzip.compress(b, L)) == len(zlib.compress(b, L, -15)) + 18`` exactly; we compute
the latter (no header bytes built, same number). For gzip level 1 an optional C
kernel (``zipfit_beam.score._gzip1``) reproduces zlib's lengths exactly and much faster; it is
used only when the zlib Python links is the one it reproduces and a self-check at
import agrees, otherwise zlib itself is called. Either way the lengths, and so the
scores, are identical.
"""

from __future__ import annotations

import functools
import importlib
import threading
import zlib
from typing import Callable, Dict, NamedTuple, Optional, Sequence

__all__ = ["gzip_length", "Compressor", "default_level", "ncd", "check_compressor",
           "kernel_name", "TargetSet", "split_chunks", "document_score"]

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


def _load_kernel():
    """The C gzip-1 kernel module, or None when it is not built or not exact here."""
    try:
        from zipfit_beam.score import _gzip1  # type: ignore[attr-defined]
    except ImportError:
        return None
    if _gzip1.ZLIB_COMPAT != zlib.ZLIB_RUNTIME_VERSION:
        return None
    # A cheap guard against a zlib that claims the version but parses differently.
    probe = [b"", b"a", b"abcabcabcabc" * 40, bytes(range(256)) * 3]
    kernel = _gzip1.Gzip1Targets(probe)
    for x in probe:
        if kernel.concat_lengths(x) != [gzip_length(x + y, 1) for y in probe]:
            return None
    return _gzip1


_KERNEL = _load_kernel()


def kernel_name(compressor: str = "gzip", level: int = 1) -> str:
    """Which implementation scores this compressor/level here: 'c-gzip1' (the exact C
    kernel) or the compressor's own library ('zlib', 'lz4.frame', ...)."""
    if _KERNEL is not None and compressor == "gzip" and level == 1:
        return "c-gzip1"
    return COMPRESSORS[compressor].module


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
    n = max(1, -(-len(data) // chunk_bytes))
    size, extra = divmod(len(data), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(data[start:end])
        start = end
    return out


def document_score(targets: "TargetSet", data: bytes, max_bytes: int | None = None,
                   chunk_bytes: int | None = None, reduce: str = "max") -> float:
    """The alignment of one document's UTF-8 bytes under the long-document settings."""
    if max_bytes is not None and len(data) > max_bytes:
        data = data[:max_bytes]
    if chunk_bytes is None or len(data) <= chunk_bytes:
        return targets.alignment(data)
    scores = [targets.alignment(c) for c in split_chunks(data, chunk_bytes)]
    if reduce == "max":
        return max(scores)
    if reduce == "mean":
        return sum(scores) / len(scores)
    raise ValueError(f"chunk reduce must be one of {CHUNK_REDUCERS}, got {reduce!r}")
