"""JSON Lines: one JSON object per line; ``.jsonl``, ``.json``, ``.ndjson``, each optionally
``.gz``, ``.zst``/``.zstd``, ``.bz2``, ``.xz`` compressed; also any name no other format
claims (``part-00000``). Pure: no Beam.

Records are ``RawRecord(path, line number from 1, the line's bytes without terminator)``;
parsing is ``io.parse``'s. Decompression uses the standard library and, for zstd, our own
frame reader, so that a damaged or cut stream raises (and becomes one ``corrupt_file``
dead letter after the lines that were readable) instead of ending early without a trace:
Beam's gzip reader and zstandard's ``stream_reader`` both stop early without an error.
The selected output splices ``"zipfit_score"`` into the original line, byte for byte.

Record size: a line's bytes, terminator excluded, after decompression. Lines are cut from
the stream in reads of at most 1 MiB (``scan_lines``), never with ``readline``: a line over the limit
is counted and dropped as it streams past, keeping only its first ``HEAD_BYTES`` bytes, so
the reader holds at most the limit (plus one read) of any line, however long it is; a line
under the limit is held once, then joined (twice its size for a moment).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
from typing import BinaryIO, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipfit_beam.formats.base import (BATCH_BYTES, HEAD_BYTES, SCORE_FIELD, Batch, Encodable,
                                      reader_failure, row_json, strip_compression, too_large)
from zipfit_beam.records import DeadLetter, RawRecord

_LOG = logging.getLogger(__name__)

NAME = "jsonl"
LABEL = "JSON Lines"
HEADER = False
NEEDS_SCHEMA = False
EXTENSIONS = (".jsonl", ".json", ".ndjson")
SUFFIXES = {".jsonl": None, ".jsonl.gz": "gzip", ".jsonl.zst": "zstd", ".jsonl.bz2": "bzip2"}


def claims(name: str) -> bool:
    return strip_compression(name).endswith(EXTENSIONS)


# --- decompression ----------------------------------------------------------------------

class ZstdReader(io.RawIOBase):
    """Decompress a (multi-frame) zstd stream, raising ``EOFError`` when it ends inside a
    frame. ``zstandard``'s own ``stream_reader`` returns a short read instead (measured
    with zstandard 0.25: a file cut at a third yields 0 bytes and no error), which would
    drop records without a trace."""

    def __init__(self, raw: BinaryIO):
        import zstandard
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
        self._frame = None
        self._pending = b""  # compressed bytes after the end of the last frame
        self._out = memoryview(b"")

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        while not len(self._out):
            chunk, self._pending = self._pending or self._raw.read(1 << 16), b""
            if not chunk:
                if self._frame is not None and not self._frame.eof:
                    raise EOFError("zstd stream ends inside a frame (truncated file)")
                return 0
            if self._frame is None or self._frame.eof:
                self._frame = self._dctx.decompressobj()
            self._out = memoryview(self._frame.decompress(chunk))
            if self._frame.eof:
                self._pending = self._frame.unused_data
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self):
        try:
            self._raw.close()
        finally:
            super().close()


def open_zstd(raw: BinaryIO) -> BinaryIO:
    return io.BufferedReader(ZstdReader(raw), buffer_size=1 << 16)


def decompressed(raw: BinaryIO, path: str) -> BinaryIO:
    """``raw`` (the file as stored) decompressed as its name's extension says."""
    name = path.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    if name.endswith((".xz", ".lzma")):
        return lzma.LZMAFile(raw, mode="rb")
    if name.endswith((".zst", ".zstd")):
        return open_zstd(raw)
    return raw


# --- reading ----------------------------------------------------------------------------

READ_BYTES = 1 << 20  # bytes read from the decompressed stream at a time


def scan_lines(f: BinaryIO, max_bytes: Optional[int] = None,
               read_bytes: int = READ_BYTES) -> Iterator[Tuple[int, Optional[bytes], int, bytes]]:
    """``(position, line, size, head)`` for every line of a decompressed stream, numbered
    from 1: ``line`` is its bytes without the ``\n`` (a ``\r`` stays), ``size`` its
    length. ``line`` is None when the line is longer than ``max_bytes``: such a line is
    only counted as it streams past, never held, and ``head`` is its first ``HEAD_BYTES``
    bytes (b"" with a line). A final line without a terminator counts; an empty stream has
    no lines. A damaged stream raises."""
    position, size, head, parts = 1, 0, b"", []
    holding = True
    # read1: at most one underlying read, so the data a decompressor produced before it
    # met damage (a good gzip member, then garbage) comes out before the error does.
    read = getattr(f, "read1", f.read)
    while True:
        chunk = read(read_bytes)
        if not chunk:
            break
        start, n, last, find = 0, len(chunk), chunk.rfind(b"\n"), chunk.find
        while start < n:
            if size == 0 and start <= last:
                # whole lines from a line's start to the chunk's last terminator, each found
                # by one bytes.find (memchr: about half the CPU of bytes.split's byte loop)
                while start <= last:
                    nl = find(b"\n", start)
                    if max_bytes is None or nl - start <= max_bytes:
                        yield position, chunk[start:nl], nl - start, b""
                    else:
                        yield position, None, nl - start, chunk[start:min(nl, start + HEAD_BYTES)]
                    position, start = position + 1, nl + 1
                continue
            # a line that started in an earlier chunk, or goes on into the next one
            nl = find(b"\n", start)
            end = n if nl < 0 else nl
            if len(head) < HEAD_BYTES:
                head += chunk[start:min(end, start + HEAD_BYTES - len(head))]
            size += end - start
            if holding:
                if max_bytes is not None and size > max_bytes:
                    holding, parts = False, []  # too long: count the rest, hold nothing
                elif end > start:
                    parts.append(chunk[start:end])  # the chunk itself when it is all line
            if nl < 0:
                break
            line = (parts[0] if len(parts) == 1 else b"".join(parts)) if holding else None
            yield position, line, size, head if line is None else b""
            position, size, head, parts, holding = position + 1, 0, b"", [], True
            start = nl + 1
    if size:
        line = (parts[0] if len(parts) == 1 else b"".join(parts)) if holding else None
        yield position, line, size, head if line is None else b""


def iter_lines(f: BinaryIO, path: str, max_bytes: Optional[int] = None
               ) -> Iterator[RawRecord | DeadLetter]:
    """The lines of a decompressed stream as RawRecords (terminators stripped), numbered
    from 1; a line over ``max_bytes`` is a ``record_too_large`` DeadLetter instead. A
    damaged stream raises."""
    for position, line, size, head in scan_lines(f, max_bytes):
        if line is None:
            yield too_large(path, position, size, max_bytes, head)
        else:
            yield RawRecord(path, position, line.rstrip(b"\r\n"))


def read(f: BinaryIO, path: str, fields: Sequence[str] = (), batch_size: int = 1024,
         max_record_bytes: Optional[int] = None) -> Iterator[Batch]:
    """Every line of one file as RawRecords, in batches (of at most ``batch_size`` lines
    and, past one line, ``BATCH_BYTES``); a line over ``max_record_bytes`` is a
    ``record_too_large`` dead letter; a stream that fails mid-read ends with one
    ``corrupt_file`` dead letter at the first line not read. ``fields`` is unused: a line
    is parsed whole."""
    batch: Batch = []
    held = 0
    position = 0
    try:
        for record in iter_lines(decompressed(f, path), path, max_record_bytes):
            position = record.position
            batch.append(record)
            held += len(record.data) if isinstance(record, RawRecord) else 0
            if len(batch) >= batch_size or held >= BATCH_BYTES:
                yield batch
                batch, held = [], 0
    except Exception as e:  # zlib.error, EOFError, OSError, zstd errors, ...
        _LOG.warning("%s: unreadable after line %d: %s", path, position, e)
        batch.append(DeadLetter(path, position + 1, "corrupt_file", reader_failure(e), b""))
    if batch:
        yield batch


def take(f: BinaryIO, path: str, positions: Sequence[int],
         read_bytes: int = READ_BYTES) -> Iterator[RawRecord]:
    """The lines at these (1-based) positions, read again, in order; stops after the last
    one. The lines between are passed over one ``bytes.find`` of their terminator each
    (memchr: faster than ``bytes.count`` over the read), never split out or held, so the
    cost of a pass is about that of reading the stream."""
    wanted = sorted(p for p in set(positions) if p >= 1)
    stream = decompressed(f, path)
    read = getattr(stream, "read1", stream.read)
    position, k, parts = 1, 0, []  # the line the next byte belongs to; wanted[k]; its bytes so far
    while k < len(wanted):
        chunk = read(read_bytes)
        if not chunk:
            break
        start, find, want = 0, chunk.find, wanted[k]
        while True:
            nl = find(b"\n", start)
            if position == want:
                if nl < 0:  # the wanted line goes on into the next read (or is the last)
                    if start < len(chunk):
                        parts.append(chunk[start:])
                    break
                parts.append(chunk[start:nl])
                yield RawRecord(path, position, b"".join(parts).rstrip(b"\r\n"))
                parts, k = [], k + 1
                if k == len(wanted):
                    break
                want = wanted[k]
            elif nl < 0:  # the line passed over goes on into the next read
                break
            position, start = position + 1, nl + 1
    if parts:  # a final line without a terminator (an empty stream, or one that ends
        # with a terminator, has no line after it)
        yield RawRecord(path, position, b"".join(parts).rstrip(b"\r\n"))


ESTIMATE_BYTES = 4 << 20  # stored bytes of a file that ``estimate`` reads at most
ESTIMATE_PIECES = 8  # places an uncompressed file is sampled at, evenly spread


def estimate(f: BinaryIO, path: str, sample_bytes: int = ESTIMATE_BYTES) -> int:
    """About how many lines ``read`` will number. Exactly for a stored file of at most
    ``sample_bytes`` (or one that cannot seek). Beyond: an uncompressed file's terminators
    in ``ESTIMATE_PIECES`` pieces spread over it, a compressed file's lines in what its
    first ``sample_bytes`` decompress to, scaled by the file's size over the bytes sampled.
    So a long or compressed file is not read, or decompressed, a second time for a
    progress line (a compressed file whose head is unlike the rest is estimated off)."""
    try:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
    except (AttributeError, OSError, ValueError):
        size = None
    if size is None or size <= sample_bytes:
        return _lines(decompressed(f, path), whole=True)
    if decompressed(f, path) is f:
        piece = sample_bytes // ESTIMATE_PIECES
        ends = 0
        for i in range(ESTIMATE_PIECES):
            f.seek((size - piece) * i // (ESTIMATE_PIECES - 1))
            ends += f.read(piece).count(b"\n")
        return round(ends * size / (piece * ESTIMATE_PIECES))
    head = decompressed(io.BytesIO(f.read(sample_bytes)), path)
    return round(_lines(head, whole=False) * size / sample_bytes)


def _lines(stream: BinaryIO, whole: bool) -> int:
    """The lines of a decompressed stream; not ``whole``: of the part that decompresses
    before the stream stops short (a compressed file's head)."""
    read = getattr(stream, "read1", stream.read)  # what was decompressed before it stopped
    total, last = 0, b"\n"
    try:
        for chunk in iter(lambda: read(1 << 16), b""):
            total += chunk.count(b"\n")
            last = chunk[-1:]
    except Exception:  # the head of a compressed stream ends inside it
        if whole:
            raise
        return total
    return total + (whole and last != b"\n")  # a final line without a terminator


def schema(f: BinaryIO) -> None:
    return None  # JSON Lines files carry no schema


def field_names(schema) -> List[str]:
    return []


# --- writing ----------------------------------------------------------------------------

def output_schema(input_formats: Iterable[str], headers: Mapping) -> None:
    return None


def dead_letter_schema() -> None:
    return None


def with_score(record: RawRecord, score: float) -> bytes:
    """The original JSON object line, byte for byte, with ``"zipfit_score": score`` appended.

    Splicing (rather than re-serialising) keeps the record unchanged: key order, number
    formatting and escapes stay as they were. A record that already has the field gets
    it replaced through a re-serialisation."""
    body = record.data.rstrip()
    if b'"zipfit_score"' in body and SCORE_FIELD in json.loads(body):
        obj = json.loads(body)
        obj[SCORE_FIELD] = score
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return body[:-1].rstrip() + b', "zipfit_score": ' + repr(score).encode("ascii") + b"}"


def encode(value: Encodable) -> bytes:
    """A line as it is; a row (from Parquet, Avro or a dead letter) as one JSON line."""
    return value if isinstance(value, bytes) else row_json(value)


def compress(data: bytes, codec: Optional[str]) -> bytes:
    """Deterministic compression: gzip with mtime 0 and no file name, zstd, bzip2."""
    if codec == "gzip":
        return gzip.compress(data, mtime=0)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    if codec == "bzip2":
        return bz2.compress(data)
    return data


def write_shard(f: BinaryIO, values: Iterable[bytes], codec: Optional[str], schema=None) -> int:
    """Lines already in order, each ending with a newline, compressed by ``codec``."""
    lines = list(values)
    f.write(compress(b"".join(line + b"\n" for line in lines), codec))
    return len(lines)
