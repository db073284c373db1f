"""Why python-isal's lengths vary: ISA-L hashes its stream struct's address (levels 1 and 2).

ISA-L's x86-64 deflate body for levels 1 and 2 (igzip/igzip_icf_body_h1_gr_bt.asm, 2.32.1 and
master) starts a stream in ``.write_first_byte`` with ``shr tmp2, 16 ; compute_hash hash2, tmp2``,
meant to hash input bytes 2-5, but tmp2 (rcx) still holds the stream pointer there. So input
position 2 goes to hash slot g = crc32c(0, (uint32)(stream >> 16)) & hash_mask instead of its own,
and the output depends on the 64 KiB window the struct starts in. python-isal keeps the struct on
the calling thread's stack: other threads and processes, other windows, sometimes other lengths.

This calls ISA-L's own isal_deflate_init / isal_deflate (exported by isal_zlib's module, through
ctypes; the settings of ``isal_zlib.compress(b, level, -15)``) on benchmarks/isal_variance.py's
(input, level) pairs with the struct at the start of --windows windows spread over a reserved
2 GiB region (all 32768 classes of g in it), and reports:

  - the pairs whose length varies with the window, and whether each length is a function of
    g & hash_mask (the explanation predicts: always)
  - for those pairs, that the struct's content (filled with 0x00 or 0xff before
    isal_deflate_init), the level buffer's address and the input's alignment change nothing
  - the window of class 0 (every g & mask = 0: where zipfit_beam.score._liblen puts its structs)
    against each pair's most common length, and the pairs where one of the first three 4-byte
    strings recurs (a necessary condition for depending on g)

    python benchmarks/isal_stray_hash.py [--windows 256]

Linux x86-64 only (mmap through ctypes).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import isal_variance  # noqa: E402  (its corpus)

WINDOW = 1 << 16
CLASSES = 1 << 15  # ISA-L's hash masks are at most 0x7fff
LEVEL_BUF = {1: 4096 + 2 * 8192 + 4 * 65536, 2: 4096 + 2 * 32768 + 4 * 65536}  # python-isal's, memLevel 8
LEVEL_MASK = {1: 8191, 2: 32767}
OUT = 1 << 16


class StreamHead(ctypes.Structure):  # struct isal_zstream's public fields (igzip_lib.h)
    _fields_ = [("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint32), ("total_in", ctypes.c_uint32),
                ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint32), ("total_out", ctypes.c_uint32),
                ("hufftables", ctypes.c_void_p), ("level", ctypes.c_uint32), ("level_buf_size", ctypes.c_uint32),
                ("level_buf", ctypes.c_void_p), ("end_of_stream", ctypes.c_uint16), ("flush", ctypes.c_uint16),
                ("gzip_flag", ctypes.c_uint16), ("hist_bits", ctypes.c_uint16)]


def crc32c(v: int) -> int:
    """crc32c(0, v) of a 32-bit value, no final inversion: the x86 crc32 instruction's result."""
    for _ in range(32):
        v = (v >> 1) ^ (0x82F63B78 if v & 1 else 0)
    return v


def hash_mask(n: int, level: int) -> int:
    """ISA-L's hash mask for a whole n-byte input with FULL_FLUSH (isal_deflate, set_hash_mask)."""
    return min(LEVEL_MASK[level], (1 << (2 * n).bit_length()) - 1)


class Deflate:
    def __init__(self):
        from isal import isal_zlib
        lib = ctypes.CDLL(isal_zlib.__file__)
        self.init, self.deflate = lib.isal_deflate_init, lib.isal_deflate
        self.init.argtypes = self.deflate.argtypes = [ctypes.c_void_p]
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.libc = libc
        size = 2 * CLASSES * WINDOW  # 4 GiB of address space, nothing committed
        region = libc.mmap(None, size, 0, 0x22 | 0x4000, -1, 0)  # PROT_NONE, PRIVATE|ANONYMOUS|NORESERVE
        if region in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        self.base = (region + CLASSES * WINDOW - 1) // (CLASSES * WINDOW) * (CLASSES * WINDOW)
        self.level_bufs = [ctypes.create_string_buffer(max(LEVEL_BUF.values()) + 4096) for _ in range(2)]
        self.out = ctypes.create_string_buffer(OUT)

    def window(self, i: int) -> int:
        """The address of window i of the region (made readable and writable)."""
        address = self.base + i * WINDOW
        if self.libc.mprotect(address, 2 * WINDOW, 3) != 0:  # the struct (82 KB) spans two windows
            raise OSError(ctypes.get_errno(), "mprotect")
        return address

    def length(self, stream: int, data: bytes, level: int, fill=None, level_buf=0, in_offset=0) -> int:
        if fill is not None:
            ctypes.memset(stream, fill, 96 * 1024)
        src = ctypes.create_string_buffer(in_offset + len(data) + 1)
        ctypes.memmove(ctypes.addressof(src) + in_offset, data, len(data))
        z = StreamHead.from_address(stream)
        self.init(stream)
        z.level, z.level_buf = level, ctypes.addressof(self.level_bufs[level_buf])
        z.level_buf_size, z.hist_bits, z.gzip_flag = LEVEL_BUF[level], 15, 0
        z.next_in, z.avail_in = ctypes.addressof(src) + in_offset, len(data)
        z.flush, z.end_of_stream = 2, 1  # FULL_FLUSH, the whole input at once
        z.next_out, z.avail_out = ctypes.addressof(self.out), OUT
        if self.deflate(stream) != 0 or z.avail_out == 0:
            raise RuntimeError("isal_deflate failed")
        return z.next_out - ctypes.addressof(self.out)


def recurs_early(data: bytes) -> bool:
    """One of the first three 4-byte strings occurs again later (and the body runs: > 16 bytes)."""
    return len(data) > 16 and any(data.find(data[i:i + 4], i + 1) >= 0 for i in range(3))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=256, help="windows tried (of the 32768 classes)")
    a = ap.parse_args(argv)
    d = Deflate()
    pairs = isal_variance.pairs()
    stride = CLASSES // a.windows
    windows = [d.window(i * stride) for i in range(a.windows)]
    g = [crc32c((w >> 16) & 0xFFFFFFFF) & (CLASSES - 1) for w in windows]
    zero = next(i for i in range(CLASSES) if crc32c(((d.base >> 16) + i) & 0xFFFFFFFF) & (CLASSES - 1) == 0)
    zero_window = d.window(zero)
    lengths = [[d.length(w, x, level) for w in windows] for x, level in pairs]

    varying = [i for i, row in enumerate(lengths) if len(set(row)) > 1]
    not_a_function = 0
    for i in varying:
        x, level = pairs[i]
        by_slot = collections.defaultdict(set)
        for gw, n in zip(g, lengths[i]):
            by_slot[gw & hash_mask(len(x), level)].add(n)
        not_a_function += sum(len(v) > 1 for v in by_slot.values())
    print(f"{len(pairs)} (input, level) pairs, stream struct in {a.windows} windows of 64 KiB")
    print(f"pairs whose length varies with the window: {len(varying)}; "
          f"(pair, g & hash_mask) with more than one length: {not_a_function}")

    other = 0
    for i in varying:
        x, level = pairs[i]
        for j in (0, len(windows) // 2):
            w, want = windows[j], lengths[i][j]
            got = [d.length(w, x, level, fill=0x00), d.length(w, x, level, fill=0xFF),
                   d.length(w, x, level, level_buf=1), d.length(w, x, level, in_offset=1),
                   d.length(w + 8 * 4096, x, level)]  # elsewhere in the same 64 KiB window
            other += sum(n != want for n in got)
    print(f"lengths changed by the struct's content, the level buffer's address, the input's "
          f"alignment or the struct's offset in its window: {other}")

    mode = [collections.Counter(row).most_common(1)[0][0] for row in lengths]
    zero_off = [i for i, (x, level) in enumerate(pairs) if d.length(zero_window, x, level) != mode[i]]
    print(f"class 0 (where _liblen puts its structs): pairs off their most common length: {len(zero_off)}")
    early = {i for i, (x, _) in enumerate(pairs) if recurs_early(x)}
    print(f"varying pairs without an early recurring 4-byte string: {len(set(varying) - early)} "
          f"(of {len(early)} pairs with one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
