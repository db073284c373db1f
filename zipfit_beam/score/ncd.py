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

The other compressors: lz4 levels 0-2 have an exact C kernel too (``_lz4len``); zstd is its
library's own code called from one C loop per source (``_liblen``: no Python call per pair) or,
without it, once per pair from Python, with the same lengths either way. isal has the same C
loop (``ISAL_C_LOOP``), which also makes its lengths reproducible: ISA-L's x86-64 code for levels
1 and 2 hashes its stream struct's address, so python-isal's own lengths can differ between
processes and threads for a few inputs; the loop fixes that address (see ``ISAL_C_LOOP``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import threading
import zlib
from typing import Callable, Dict, Iterator, NamedTuple, Optional, Sequence

__all__ = ["gzip_length", "Compressor", "default_level", "ncd", "alignment_from_lengths",
           "check_compressor", "kernel_name", "TargetSet", "split_chunks", "iter_chunks",
           "document_score"]

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


def alignment_from_lengths(c_x: int, lengths: Sequence[int], concat: Sequence[int]) -> float:
    """1 - mean_j NCD(x, y_j) from C(x), every C(y_j) and every C(x + y_j), summed in target
    order (the C kernels' ``alignment`` computes exactly this: the same float operations in the
    same order, so the same bits)."""
    total = 0.0
    for c_y, c_xy in zip(lengths, concat):
        total += ncd(c_x, c_y, c_xy)
    return 1.0 - total / len(lengths)


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
# and reuses the source's work across targets; its Lz4Targets.alignment is TargetSet's whole
# alignment in C, as Gzip1Targets.alignment is for gzip-1. Used only when built and when a
# self-check at import agrees with the lz4.frame this interpreter has (and with
# alignment_from_lengths, to the bit); else lz4.frame is called.

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
        lengths = [_lz4_length(y, level) for y in probe]
        if [_lz4len.lz4_length(y) for y in probe] != lengths or kernel.lengths != lengths:
            return None
        for c_x, x in zip(lengths, probe):
            concat = [_lz4_length(x + y, level) for y in probe]
            if kernel.concat_lengths(x) != concat:
                return None
            # the alignment in C (also what docwork's fused pass calls): the same bits
            if kernel.alignment(x) != alignment_from_lengths(c_x, lengths, concat):
                return None
    return _lz4len


_LZ4_KERNEL = _load_lz4_kernel()


def _lz4_kernel_functions(targets, texts: Sequence[bytes]):
    """(length, concat_lengths, alignment) for TargetSet from the lz4 kernel's ``Lz4Targets`` over
    ``texts``; inputs past the kernel's 32-bit limit (2 GB) go to lz4.frame."""
    k = _LZ4_KERNEL
    limit = k.MAX_INPUT - max(map(len, texts), default=0)

    def length(x: bytes) -> int:
        return k.lz4_length(x) if len(x) <= k.MAX_INPUT else _lz4_length(x, 0)

    def concat_lengths(x: bytes) -> list[int]:
        if len(x) <= limit:
            return targets.concat_lengths(x)
        return [_lz4_length(x + y, 0) for y in texts]

    def alignment(x: bytes) -> float:
        if len(x) <= limit:
            return targets.alignment(x)
        return alignment_from_lengths(length(x), targets.lengths, concat_lengths(x))

    return length, concat_lengths, alignment


# --- zstd and isal: the libraries' own code, looped in C --------------------------------
#
# zipfit_beam.score._liblen makes the calls _zstd_length and _isal_length make, from C: its
# ZstdTargets / IsalTargets compress x + t for every target in one C loop with the GIL released
# (no Python call per pair), and their alignment is TargetSet's whole alignment, as the other
# kernels' is. It needs no zstd or ISA-L headers: the zstandard and isal wheels link the
# libraries in and export their functions, so _liblen.load dlopen()s the binding's module file
# (isal_zlib's own for isal: the code isal_zlib.compress runs; for zstd the first of zstandard's
# modules that exports the API, which in the PyPI wheels is its cffi backend, built from the
# same zstd as the C backend Python calls) and takes the few functions it calls. A level is
# used after a self-check against the Python call on probe inputs (at its first use in the
# process); without the module, a file or a symbol, with another zstd release than zstandard's,
# or on any mismatch, the library is called from Python as before (same lengths, slower).

LIB_KERNELS = {"zstd": "c-zstd", "isal": "c-isal"}
# isal: ISA-L 2.32's x86-64 code for levels 1 and 2 hashes the stream struct's address where it
# means to hash input bytes 2-5 (a register never loaded, igzip_icf_body_h1_gr_bt.asm; see
# _liblen.c), so for inputs where one of their first three 4-byte strings recurs the output
# depends on the 64 KiB window that struct starts in -- nothing else. python-isal keeps it on the
# calling thread's stack: its isal_zlib.compress disagrees with itself between processes and
# threads for a few inputs in a thousand (benchmarks/isal_variance.py; the mechanism,
# benchmarks/isal_stray_hash.py). _liblen puts every struct at an address whose stray hash is 0,
# so 'c-isal' gives the same lengths in every process and thread, python-isal's wherever those do
# not depend on the address (always at levels 0 and 3). Its self-check probes only such inputs.
# False: isal is called from Python (lengths may differ between workers, with a warning).
ISAL_C_LOOP = True
# Kernels whose lengths are their library's, so the same scoring as calling it from Python
# (scoring_class): the zstd loop runs zstd's own code; the lz4 kernel is used only when its
# self-check at import agrees with lz4.frame, to the length. Not isal: 'c-isal' fixes the stray
# hash, python-isal does not.
_LIBRARY_OF_KERNEL = {"c-zstd": COMPRESSORS["zstd"].module, "c-lz4": COMPRESSORS["lz4"].module}
_log = logging.getLogger(__name__)
_ISAL_WARNED: set = set()  # isal levels warned about (scored from Python) in this process


def _import_liblen():
    try:
        from zipfit_beam.score import _liblen  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _liblen


_LIBLEN = _import_liblen()  # the functions are loaded, and each level checked, on first use
_LIB_LOCK = threading.Lock()
_LIB_CHECKED: Dict[tuple, bool] = {}  # (compressor, level) -> the self-check passed


def _library_files(compressor: str) -> list[str]:
    """The binding's module files that may export the library's functions, the one Python
    calls first (zstandard's C backend exports them only when built against a shared libzstd)."""
    import importlib.util
    if compressor == "zstd":
        import zstandard
        names = ["zstandard.backend_c", "zstandard._cffi"]
        if getattr(zstandard, "backend", None) == "cffi":
            names.reverse()
    else:
        names = ["isal.isal_zlib", "isal.igzip_lib"]
    files = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin not in files:
            files.append(spec.origin)
    return files


def _load_library(compressor: str) -> bool:
    """Whether _liblen has (or now took) the compressor's functions from its binding's files."""
    try:
        importlib.import_module(COMPRESSORS[compressor].module)
    except ImportError:
        return False
    if _LIBLEN.loaded(compressor) is None:
        for path in _library_files(compressor):
            try:
                _LIBLEN.load(compressor, path)
                break
            except OSError:
                continue
        else:
            return False
    if compressor == "zstd":
        import zstandard
        major, minor, patch = zstandard.ZSTD_VERSION[:3]
        return _LIBLEN.zstd_version() == major * 10000 + minor * 100 + patch
    return True


def _lib_probe(compressor: str = "zstd") -> tuple[list[bytes], list[bytes]]:
    """(sources, targets) for the self-check: empty, one byte, repetitive, incompressible, text,
    and sources over 64 KiB (isal's 64 Ki-code buffer fills, and its output outgrows the first
    16 KiB python-isal offers: from ~100 KB of noise, a level buffer or an output schedule
    other than python-isal's gives other lengths at levels 1-3; zstd's parameters for inputs
    over 16 KiB). For isal every input (source, target, source + target) starts with bytes that
    do not recur in it, so python-isal's lengths do not depend on its stream struct's address
    (ISAL_C_LOOP) and the check passes or fails alike in every process."""
    noise = b"".join(hashlib.sha256(i.to_bytes(2, "little")).digest() for i in range(3200))  # 102,400 B
    words = b"def return self None import class lambda yield while for in if else x0 x1".split()
    text = b" ".join(words[c % len(words)] for c in noise[:16_000])  # about 79,000 bytes
    lead_s = lead_t = b""
    if compressor == "isal":
        lead_s, lead_t = bytes(range(1, 7)), bytes(range(7, 13))  # in no other probe input
    targets = [b"", b"a", lead_t + text[:2000]]
    sources = [b"", b"a", lead_s + b"abcabcabcabc" * 40, noise[:300], lead_s + text[:5000], noise,
               lead_s + text]
    return sources, targets


def _lib_self_check(compressor: str, level: int) -> bool:
    """Whether _liblen gives the Python call's lengths at this level, and alignment_from_lengths'
    alignments to the bit, on the probe inputs."""
    length = functools.partial(COMPRESSORS[compressor].length, level=level)
    sources, targets = _lib_probe(compressor)
    try:
        kernel = _lib_targets(compressor, targets, level)
        lengths = [length(y) for y in targets]
        if kernel.lengths != lengths:
            return False
        for x in sources:
            concat = [length(x + y) for y in targets]
            if (kernel.concat_lengths(x) != concat
                    or kernel.alignment(x) != alignment_from_lengths(length(x), lengths, concat)):
                return False
    except (RuntimeError, ValueError, OverflowError, MemoryError):
        return False
    return True


def _lib_kernel(compressor: str, level: int) -> bool:
    """Whether _liblen scores this compressor and level here (loaded and checked, once)."""
    if _LIBLEN is None or compressor not in LIB_KERNELS or (compressor == "isal" and not ISAL_C_LOOP):
        return False
    key = (compressor, level)
    with _LIB_LOCK:
        if key not in _LIB_CHECKED:
            _LIB_CHECKED[key] = _load_library(compressor) and _lib_self_check(compressor, level)
        return _LIB_CHECKED[key]


def _lib_targets(compressor: str, texts: Sequence[bytes], level: int):
    kind = _LIBLEN.ZstdTargets if compressor == "zstd" else _LIBLEN.IsalTargets
    return kind(list(texts), level)


def _lib_kernel_functions(targets, texts: Sequence[bytes], compressor: str, level: int):
    """(length, concat_lengths, alignment) for TargetSet from a ZstdTargets / IsalTargets over
    ``texts``; sources past its ``max_source`` (isal: 4 GB) go to the library from Python."""
    length = functools.partial(COMPRESSORS[compressor].length, level=level)  # one call per source
    limit = targets.max_source

    def concat_lengths(x: bytes) -> list[int]:
        if len(x) <= limit:
            return targets.concat_lengths(x)
        return [length(x + y) for y in texts]

    def alignment(x: bytes) -> float:
        if len(x) <= limit:
            return targets.alignment(x)
        return alignment_from_lengths(length(x), targets.lengths, concat_lengths(x))

    return length, concat_lengths, alignment


def kernel_name(compressor: str = "gzip", level: int = 1) -> str:
    """Which implementation scores this compressor/level here: 'c-gzip1' or 'c-lz4' (the
    exact C kernels), 'c-zstd' or 'c-isal' (the library's own code looped in C) or the
    compressor's library called from Python ('zlib', 'lz4.frame', ...)."""
    if _KERNEL is not None and compressor == "gzip" and level == 1:
        return "c-gzip1"
    if _LZ4_KERNEL is not None and compressor == "lz4" and level in LZ4_KERNEL_LEVELS:
        return "c-lz4"
    if _lib_kernel(compressor, level):
        return LIB_KERNELS[compressor]
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
    compressors the implementation's name, 'c-zstd' and 'c-isal' under their library's (they
    call it, so the lengths are its own)."""
    if identity.get("canonical"):
        return "canonical-zlib"
    if identity.get("canonical") is None:
        kernel = str(identity.get("kernel"))
        return _LIBRARY_OF_KERNEL.get(kernel, kernel)
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
    thread-safe (the C kernels release the GIL, so threads scale across cores).
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
        # the C kernel's Gzip1Targets, Lz4Targets, ZstdTargets or IsalTargets when it scores
        # here (docwork's fused pass calls its alignment through the module's capsule)
        self.kernel = None
        name = kernel_name(compressor, level) if use_kernel else None
        if name == "c-gzip1":
            kernel = self.kernel = _KERNEL.Gzip1Targets(self.texts)
            self._length = _KERNEL.gzip1_length
            self._concat_lengths = kernel.concat_lengths
            self._kernel_alignment = kernel.alignment
        elif name == "c-lz4":
            kernel = self.kernel = _LZ4_KERNEL.Lz4Targets(self.texts)
            (self._length, self._concat_lengths,
             self._kernel_alignment) = _lz4_kernel_functions(kernel, self.texts)
        elif name in ("c-zstd", "c-isal"):
            kernel = self.kernel = _lib_targets(compressor, self.texts, level)
            (self._length, self._concat_lengths,
             self._kernel_alignment) = _lib_kernel_functions(kernel, self.texts, compressor, level)
        else:
            self._length = functools.partial(COMPRESSORS[compressor].length, level=level)
            self._concat_lengths = self._generic_concat_lengths
            if use_kernel and compressor == "isal" and level in (1, 2) and level not in _ISAL_WARNED:
                _ISAL_WARNED.add(level)
                _log.warning("isal level %d is scored by python-isal, not _liblen's C loop: its "
                             "lengths, so the scores, may differ between workers and reruns for a "
                             "few documents (see ncd.ISAL_C_LOOP); use gzip or lz4 when that "
                             "matters", level)
        # the kernel's own lengths where it has them: isal's may differ from python-isal's
        self.lengths = (list(self.kernel.lengths) if name in ("c-zstd", "c-isal")
                        else [self._length(t) for t in self.texts])

    def _generic_concat_lengths(self, x: bytes) -> list[int]:
        length = self._length
        return [length(x + y) for y in self.texts]

    def alignment(self, x: bytes) -> float:
        """1 - mean NCD(x, y_j); the sum runs in target order so it is reproducible."""
        if self._kernel_alignment is not None:
            return self._kernel_alignment(x)
        return self.alignment_of_lengths(x)

    def alignment_of_lengths(self, x: bytes) -> float:
        """``alignment`` as the definition reads, from the lengths (``alignment_from_lengths``;
        the kernels' ``alignment`` computes exactly this)."""
        return alignment_from_lengths(self._length(x), self.lengths, self._concat_lengths(x))


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
