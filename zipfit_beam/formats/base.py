"""What every format module shares: the protocol they implement, JSON for row values,
dead-letter rows, and helpers for Arrow rows. Pure: no Beam.

A format module (``jsonl``, ``parquet``, ``avro``; ``hf`` for targets, reading only) is one
file that implements ``Format`` below with module-level names; ``formats.FORMATS`` is the
registry. Callers open files (through Beam's FileSystems, in ``zipfit_beam.io``) and pass
the binary file object; a format never opens a path itself.

Records: a JSONL line is a ``RawRecord`` (its bytes); a Parquet/Avro row a ``RowRecord``
(a dict). Positions: JSONL 1-based line number; Parquet/Avro/HF 0-based row index.

Record size. ``read`` takes ``max_record_bytes``: a record larger than that is never handed
on; it becomes a ``record_too_large`` dead letter that carries its size, its position and
its first ``HEAD_BYTES`` bytes (``too_large``). What "size" means, and what the reader
holds before it knows, is each format's to say (its module docstring).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import logging
import uuid
from typing import (Any, BinaryIO, Iterable, Iterator, List, Mapping, Optional, Protocol,
                    Sequence, Tuple, Union)

from zipfit_beam.records import DeadLetter, RawRecord, RowRecord

__all__ = ["Format", "strip_compression", "batched", "reader_failure", "json_default",
           "row_json", "first_bad_string", "arrow_rows", "rows_lenient", "replace_surrogates",
           "dead_letter_row", "record_size", "DEFAULT_MAX_RECORD_BYTES", "HEAD_BYTES",
           "BATCH_BYTES", "too_large", "safe_row_json", "MAX_NESTING", "arrow_row_sizes",
           "arrow_row_head", "measure_value"]

_LOG = logging.getLogger(__name__)

SCORE_FIELD = "zipfit_score"
# --max-record-bytes by default: 16 MiB. Measured (benchmarks/record_limits.py, the local
# runner, whole process): a document just under it peaks at 455 MB against 252 MB for the
# job without it, ~12x its size (32 MiB: 629 MB), so one such record in a default run stays
# well under 1 GB; real documents that long are rare (the bundled corpus's largest is
# 0.5 MB) and score as their best 32 KiB chunk anyway.
DEFAULT_MAX_RECORD_BYTES = 16 << 20
HEAD_BYTES = 200  # the first bytes of a record that a record_too_large dead letter keeps
# A reader hands over at most batch_size records, and fewer when they hold more than this
# many bytes, so a batch of large records is not held at once.
BATCH_BYTES = 8 << 20
# Deepest nesting of arrays/objects accepted in a record. Python's own limit (the
# recursion limit, ~1000 frames, shared with the caller's stack) would depend on where the
# parser runs; a fixed, lower one gives the same answer on every runner.
MAX_NESTING = 512
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".lzma")

Record = Union[RawRecord, RowRecord]
Batch = List[Union[RawRecord, RowRecord, DeadLetter]]
# What a shard writer is given for one output record: the fetched record with its score
# (a JSONL line as bytes, or a row dict) or a dead-letter row (dict).
Encodable = Union[bytes, Mapping]


class Format(Protocol):
    """The small interface every format module implements (as module-level names).

    Reading (sources and targets):
        NAME                      the name used by --format, the registry and the manifest
        LABEL                     the name people use ("JSON Lines"), for messages
        claims(name) -> bool      whether a lower-cased file name is of this format
        read(f, path, fields, batch_size, max_record_bytes) -> Iterator[Batch]
                                  every record of one file, in order, in lists of at most
                                  batch_size (fewer when they hold over BATCH_BYTES):
                                  records with their positions, and dead letters for what
                                  cannot be read or is over max_record_bytes (None: no
                                  limit). Never raises for bad data.
        take(f, path, positions) -> Iterator[Record]
                                  the whole records at these positions (sorted), read again
        estimate(f, path) -> int  about how many records ``read`` will yield, cheaply: exact
                                  where the file says (Parquet footers, Avro block headers)
                                  or is short; a long JSON Lines file is extrapolated from
                                  pieces spread over it, or from the head of a compressed
                                  one (``jsonl.ESTIMATE_BYTES`` in all)
        HEADER                    whether files carry a schema ``schema(f)`` can read
        schema(f), field_names(schema)
    Writing (outputs):
        SUFFIXES                  output suffix -> codec; the first is the default
        NEEDS_SCHEMA              whether shards need a schema (fixed or inferred)
        output_schema(input_formats, headers) -> schema or None (None: infer from the rows)
        dead_letter_schema()      the schema of rejected-* shards
        with_score(record, score) the record as the selected output carries it
        encode(value)             bytes line or row dict -> what write_shard takes
        write_shard(f, values, codec, schema) -> int
                                  one whole shard, deterministic bytes for equal input
    """
    NAME: str
    LABEL: str
    HEADER: bool
    NEEDS_SCHEMA: bool
    SUFFIXES: Mapping[str, Optional[str]]

    def claims(self, name: str) -> bool: ...
    def read(self, f: BinaryIO, path: str, fields: Sequence[str], batch_size: int,
             max_record_bytes: Optional[int]) -> Iterator[Batch]: ...
    def take(self, f: BinaryIO, path: str, positions: Sequence[int]) -> Iterator[Record]: ...
    def estimate(self, f: BinaryIO, path: str) -> int: ...
    def schema(self, f: BinaryIO) -> Any: ...
    def field_names(self, schema: Any) -> List[str]: ...
    def output_schema(self, input_formats: Iterable[str], headers: Mapping[str, Sequence[Any]]) -> Any: ...
    def dead_letter_schema(self) -> Any: ...
    def with_score(self, record: Record, score: float) -> Encodable: ...
    def encode(self, value: Encodable) -> Any: ...
    def write_shard(self, f: BinaryIO, values: Iterable, codec: Optional[str], schema: Any) -> int: ...


def strip_compression(name: str) -> str:
    lower = name.lower()
    for ext in COMPRESSION_SUFFIXES:
        if lower.endswith(ext):
            return lower[: -len(ext)]
    return lower


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most ``size`` items."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def reader_failure(e: BaseException) -> str:
    text = str(e)
    if len(text) > 500:  # e.g. a decoder quoting the value it choked on
        text = text[:500] + "..."
    return f"{type(e).__name__}: {text}"


def too_large(path: str, position: int, size: int, limit: int, head: bytes,
              what: str = "line") -> DeadLetter:
    """The dead letter of a record over ``--max-record-bytes``: its size and position, and
    its first bytes as the record (``head``: a line's first ``HEAD_BYTES`` bytes; a row's
    fields as JSON, each string cut to ``HEAD_BYTES`` bytes)."""
    return DeadLetter(path, position, "record_too_large",
                      f"{what} of {size:,} bytes is over --max-record-bytes {limit:,}; the record "
                      f"field holds its first bytes", bytes(head))


def json_default(value: Any):
    """JSON for the values Parquet and Avro rows hold beyond JSON's own types."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def row_json(row: Mapping) -> bytes:
    """A row as one JSON line (UTF-8). Strings that held invalid UTF-8 (decoded with
    surrogateescape) get their original bytes back."""
    return json.dumps(row, ensure_ascii=False, default=json_default).encode("utf-8", "surrogateescape")


def safe_row_json(row: Any) -> bytes:
    """``row_json`` for a dead letter: never raises (a value too deep for ``json``, or of a
    type it does not know, falls back to a cut ``repr``)."""
    try:
        return row_json(row)
    except Exception:  # RecursionError, TypeError, ValueError, ...
        try:
            text = repr(row)
        except Exception as e:
            text = f"<unprintable {type(row).__name__}: {type(e).__name__}>"
        return text[:HEAD_BYTES * 5].encode("utf-8", "backslashreplace")


def measure_value(value: Any) -> Tuple[int, Optional[str]]:
    """(UTF-8 bytes of every string and bytes value in ``value``, the path of the first
    string holding invalid UTF-8 or None). Walks with its own stack, so any depth works."""
    size, bad = 0, None
    stack = [("", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if v.isascii():
                size += len(v)
                continue
            try:
                size += len(v.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate: invalid UTF-8 in the file
                size += len(v.encode("utf-8", "surrogatepass"))
                bad = bad or where or "(value)"
        elif isinstance(v, (bytes, bytearray)):
            size += len(v)
        elif isinstance(v, dict):
            stack.extend((f"{where}.{k}" if where else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{where}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return size, bad


def first_bad_string(value: Any, path: str = "") -> Optional[str]:
    """The path of the first string holding invalid UTF-8 (a lone surrogate), if any."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path or "(value)"
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            bad = first_bad_string(v, f"{path}.{k}" if path else str(k))
            if bad:
                return bad
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            bad = first_bad_string(v, f"{path}[{i}]")
            if bad:
                return bad
    return None


def arrow_row_sizes(table):
    """Per row of a pyarrow Table/RecordBatch: the bytes of its string and binary values
    (nulls count 0), as a numpy int64 array, computed by Arrow without making Python
    objects; None when it has no such column. Other columns are not counted (fixed-width
    values are small; nested ones are not sized)."""
    import numpy as np
    import pyarrow.compute as pc
    total = None
    for field, column in zip(table.schema, table.columns):
        if _is_bytes_like(field.type):
            n = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            total = n if total is None else total + n
    return total


def _is_bytes_like(t) -> bool:
    import pyarrow as pa
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t))


def arrow_row_head(table, i: int) -> bytes:
    """Row ``i`` of a pyarrow Table/RecordBatch as JSON with every string and binary value
    cut to its first ``HEAD_BYTES`` bytes (read from Arrow's buffer: the whole value is
    never copied into Python); a record_too_large dead letter's record."""
    import pyarrow as pa
    row = {}
    for field, column in zip(table.schema, table.columns):
        scalar = column[i]
        if _is_bytes_like(field.type):
            buf = scalar.as_buffer() if scalar.is_valid else None
            value = None if buf is None else buf[:HEAD_BYTES].to_pybytes()
            if value is not None and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                value = value.decode("utf-8", "replace")
            row[field.name] = value
        else:
            try:
                row[field.name] = scalar.as_py()
            except Exception as e:
                row[field.name] = f"<{type(e).__name__}>"
    return safe_row_json(row)


def arrow_rows(table) -> List[dict]:
    """pyarrow Table/RecordBatch -> rows. String columns are decoded with surrogateescape so
    that invalid UTF-8 reaches the parser (which rejects it) instead of failing the batch."""
    import pyarrow as pa
    columns = []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            raw = column.cast(pa.large_binary()).to_pylist()
            columns.append([None if v is None else v.decode("utf-8", "surrogateescape") for v in raw])
        else:
            columns.append(column.to_pylist())
    names = table.schema.names
    return [dict(zip(names, values)) for values in zip(*columns)] if columns else \
        [{} for _ in range(table.num_rows)]


def rows_lenient(batch) -> List[dict]:
    """Rows of a batch for output. A pass-through string column holding invalid UTF-8
    (never read for scoring) is decoded with replacement characters rather than failing."""
    try:
        return batch.to_pylist()
    except (UnicodeDecodeError, ValueError) as e:
        _LOG.warning("a pass-through column holds invalid UTF-8 (%s); writing U+FFFD for it", e)
        return [replace_surrogates(r) for r in arrow_rows(batch)]


def replace_surrogates(value):
    if isinstance(value, str):
        if value.isascii():
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_surrogates(v) for v in value]
    return value


DEAD_LETTER_FIELDS = (("source", "string"), ("position", "long"), ("reason", "string"),
                      ("detail", "string"), ("record", "string"))


def dead_letter_row(dead: DeadLetter) -> dict:
    """A dead letter as the rejected-* shards hold it, in every output format."""
    return {"source": dead.source, "position": dead.position, "reason": dead.reason,
            "detail": dead.detail, "record": dead.record.decode("utf-8", "backslashreplace")}


def record_size(value: Encodable) -> int:
    """About how many bytes a record takes in a shard: the line, or the row as JSON (the
    one sizing rule of every output format)."""
    return len(value) + 1 if isinstance(value, bytes) else len(row_json(value)) + 1
