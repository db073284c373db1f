"""Input and output formats: detection, record readers, row conversions and schemas.

No Beam here: readers take an open binary file (``io`` opens it through Beam's
FileSystems) and yield ``RawRecord`` (a JSONL line), ``RowRecord`` (a decoded row) or a
``DeadLetter``; schemas are pyarrow schemas or Avro schema dicts.

Formats:
    jsonl    JSON Lines: .jsonl, .json, .ndjson, optionally .gz/.zst/.bz2/.xz compressed
             (also the default for a name with no known extension, as before)
    parquet  .parquet: only the columns scoring needs are read; the selected rows are read
             again, whole, when the output is written, so every other column passes through
    avro     .avro (fastavro): the record's text and id fields are kept for scoring; the
             selected rows are read again, whole, for the output
    hf       targets only: .csv/.tsv/.arrow/.txt files through ``datasets.load_dataset``,
             ``save_to_disk`` directories, ``hf:NAME[:CONFIG]:SPLIT`` (see ``hf``)

Positions: JSONL 1-based line number; Parquet/Avro/HF 0-based row index in the file.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
import logging
import posixpath
import uuid
from typing import (Any, BinaryIO, Dict, Iterable, Iterator, List, Mapping, NamedTuple,
                    Optional, Sequence, Tuple, Union)

from zipfit_beam.records import DeadLetter, RawRecord, RowRecord

_LOG = logging.getLogger(__name__)

JSONL, PARQUET, AVRO, HF = "jsonl", "parquet", "avro", "hf"
SOURCE_FORMATS = (JSONL, PARQUET, AVRO)
TARGET_FORMATS = (JSONL, PARQUET, AVRO, HF)
SCORE_FIELD = "zipfit_score"

COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".lzma")
_JSONL_EXTS = (".jsonl", ".json", ".ndjson")
# Extensions only ``datasets`` reads (targets); value: the ``load_dataset`` builder.
HF_BUILDERS = {".csv": "csv", ".tsv": "csv", ".arrow": "arrow", ".txt": "text",
               ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet"}

# Output file suffix -> (format, codec). Compression follows the suffix.
OUTPUT_SUFFIXES: Dict[str, Tuple[str, Optional[str]]] = {
    ".jsonl": (JSONL, None), ".jsonl.gz": (JSONL, "gzip"), ".jsonl.zst": (JSONL, "zstd"),
    ".jsonl.bz2": (JSONL, "bzip2"),
    ".parquet": (PARQUET, "snappy"), ".snappy.parquet": (PARQUET, "snappy"),
    ".zstd.parquet": (PARQUET, "zstd"), ".gz.parquet": (PARQUET, "gzip"),
    ".lz4.parquet": (PARQUET, "lz4"), ".uncompressed.parquet": (PARQUET, "none"),
    # fastavro's zstandard and snappy codecs need further packages (backports.zstd,
    # cramjam); these three need only the standard library.
    ".avro": (AVRO, "null"), ".deflate.avro": (AVRO, "deflate"), ".bz2.avro": (AVRO, "bzip2"),
    ".xz.avro": (AVRO, "xz"),
}
DEFAULT_SUFFIX = {JSONL: ".jsonl", PARQUET: ".parquet", AVRO: ".avro"}


def strip_compression(name: str) -> str:
    lower = name.lower()
    for ext in COMPRESSION_SUFFIXES:
        if lower.endswith(ext):
            return lower[: -len(ext)]
    return lower


def detect_format(path: str, targets: bool = False) -> str:
    """The format of a file, from its name. Unknown names are JSON Lines (as before);
    .csv/.tsv/.arrow/.txt are read through ``datasets`` for targets and refused for sources."""
    name = posixpath.basename(path.rstrip("/")).lower()
    if name.endswith((".parquet", ".pq")):
        return PARQUET
    if name.endswith(".avro"):
        return AVRO
    base = strip_compression(name)
    if base.endswith(_JSONL_EXTS):
        return JSONL
    ext = posixpath.splitext(base)[1]
    if ext in HF_BUILDERS:
        if targets:
            return HF
        raise ValueError(f"{path}: {ext} sources are not supported; convert them to JSONL, "
                         "Parquet or Avro (targets in this format are read with `datasets`)")
    return JSONL


def resolve_output(output_format: Optional[str], output_suffix: Optional[str],
                   input_formats: Iterable[str]) -> Tuple[str, str, Optional[str]]:
    """(format, suffix, codec) of the output: --output-format, else the format the
    --output-suffix names, else the sources' format (which must then be a single one)."""
    if output_suffix is not None and output_suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"unknown output suffix {output_suffix!r}; choose one of "
                         + ", ".join(OUTPUT_SUFFIXES))
    fmt = output_format
    if fmt is None and output_suffix is not None:
        fmt = OUTPUT_SUFFIXES[output_suffix][0]
    if fmt is None:
        found = sorted(set(input_formats))
        if len(found) != 1:
            raise ValueError(f"the sources mix formats ({', '.join(found)}); "
                             "choose the output's with --output-format")
        fmt = found[0]
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(SOURCE_FORMATS)}")
    suffix = output_suffix or DEFAULT_SUFFIX[fmt]
    if OUTPUT_SUFFIXES[suffix][0] != fmt:
        raise ValueError(f"output suffix {suffix!r} does not fit output format {fmt!r}; use one "
                         f"of {', '.join(s for s, (f, _) in OUTPUT_SUFFIXES.items() if f == fmt)}")
    return fmt, suffix, OUTPUT_SUFFIXES[suffix][1]


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


# --- rows -------------------------------------------------------------------------------

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


def _first_bad_string(value: Any, path: str = "") -> Optional[str]:
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
            bad = _first_bad_string(v, f"{path}.{k}" if path else str(k))
            if bad:
                return bad
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            bad = _first_bad_string(v, f"{path}[{i}]")
            if bad:
                return bad
    return None


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


def _reader_failure(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


# --- readers ----------------------------------------------------------------------------

def iter_jsonl(f: BinaryIO, path: str) -> Iterator[RawRecord]:
    """The lines of an (already decompressed) JSONL file, terminators stripped, numbered
    from 1. A damaged stream raises; the caller turns that into a dead letter."""
    position = 0
    for line in iter(f.readline, b""):
        position += 1
        yield RawRecord(path, position, line.rstrip(b"\r\n"))


PARQUET_BATCH_ROWS = 1024


def iter_parquet(f: BinaryIO, path: str, columns: Sequence[str]) -> Iterator[Union[RowRecord, DeadLetter]]:
    """Rows of a Parquet file, reading only ``columns`` (those present), a batch at a time.

    An unreadable footer gives one ``corrupt_file`` dead letter; an unreadable row group
    gives one ``corrupt_row_group`` dead letter at the first row not read (its detail says
    how many rows it covers) and reading goes on with the next group. Page checksums are
    verified where the writer stored them."""
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(f, page_checksum_verification=True)
        names = set(pf.schema_arrow.names)
        groups = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    except Exception as e:
        yield DeadLetter(path, 0, "corrupt_file", f"not a readable Parquet file: {_reader_failure(e)}", b"")
        return
    wanted = [c for c in dict.fromkeys(columns) if c in names]
    start = 0
    for index, n in enumerate(groups):
        position = start
        try:
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[index],
                                         columns=wanted, use_threads=False):
                for row in arrow_rows(batch):
                    yield RowRecord(path, position, row)
                    position += 1
            if position != start + n:
                raise EOFError(f"row group holds {position - start} rows, footer says {n}")
        except Exception as e:
            yield DeadLetter(path, position, "corrupt_row_group",
                             f"row group {index} (rows {start}-{start + n - 1}): rows {position}-"
                             f"{start + n - 1} unreadable: {_reader_failure(e)}", b"")
        start += n


def iter_avro(f: BinaryIO, path: str, keep: Sequence[str]) -> Iterator[Union[RowRecord, DeadLetter]]:
    """Rows of an Avro file, keeping only the ``keep`` fields. A record that is not a
    record (the file's schema is a primitive) is ``not_an_object``; one holding invalid
    UTF-8 in any string is ``invalid_utf8`` (as a JSONL line would be); a damaged block
    gives one ``corrupt_file`` dead letter for the rest of the file."""
    import fastavro
    position = 0
    try:
        for record in fastavro.reader(f, handle_unicode_errors="surrogateescape"):
            if not isinstance(record, dict):
                yield DeadLetter(path, position, "not_an_object",
                                 f"Avro datum is a {type(record).__name__}, not a record",
                                 row_json(record))
            else:
                bad = _first_bad_string(record)
                if bad is not None:
                    yield DeadLetter(path, position, "invalid_utf8",
                                     f"field {bad!r} is not valid UTF-8", row_json(record))
                else:
                    yield RowRecord(path, position, {k: record[k] for k in keep if k in record})
            position += 1
    except Exception as e:
        yield DeadLetter(path, position, "corrupt_file",
                         f"unreadable from row {position}: {_reader_failure(e)}", b"")


def take_parquet_rows(f: BinaryIO, positions: Sequence[int]) -> Iterator[Tuple[int, dict]]:
    """(position, whole row) for the given 0-based row indices of a Parquet file, reading
    only the row groups that hold them, a batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(f, page_checksum_verification=True)
    wanted = sorted(set(positions))
    start, i = 0, 0
    for index in range(pf.num_row_groups):
        n = pf.metadata.row_group(index).num_rows
        here = []
        while i < len(wanted) and wanted[i] < start + n:
            here.append(wanted[i])
            i += 1
        if here:
            offset = start
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS * 8, row_groups=[index],
                                         use_threads=False):
                local = [p - offset for p in here if offset <= p < offset + batch.num_rows]
                if local:
                    taken = batch.take(pa.array(local, pa.int64()))
                    for p, row in zip((offset + x for x in local), _rows_lenient(taken)):
                        yield p, row
                offset += batch.num_rows
        start += n
        if i == len(wanted):
            return
    if i < len(wanted):
        raise ValueError(f"rows {wanted[i:][:5]} are beyond the end of the file ({start} rows): "
                         "did the input change during the run?")


def _rows_lenient(batch) -> List[dict]:
    """Rows of a batch for output. A pass-through string column holding invalid UTF-8
    (never read for scoring) is decoded with replacement characters rather than failing."""
    try:
        return batch.to_pylist()
    except (UnicodeDecodeError, ValueError) as e:
        _LOG.warning("a pass-through column holds invalid UTF-8 (%s); writing U+FFFD for it", e)
        return [_replace_surrogates(r) for r in arrow_rows(batch)]


def _replace_surrogates(value):
    if isinstance(value, str):
        if value.isascii():
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def take_avro_rows(f: BinaryIO, positions: Sequence[int]) -> Iterator[Tuple[int, dict]]:
    """(position, whole record) for the given 0-based row indices of an Avro file. Rows not
    taken may hold invalid UTF-8 (they were rejected); the taken ones were checked."""
    import fastavro
    wanted = set(positions)
    last = max(wanted) if wanted else -1
    position = -1
    for position, record in enumerate(fastavro.reader(f, handle_unicode_errors="surrogateescape")):
        if position in wanted:
            yield position, record
        if position >= last:
            return
    if last > position:
        raise ValueError(f"row {last} is beyond the end of the file ({position + 1} rows): "
                         "did the input change during the run?")


# --- schemas ----------------------------------------------------------------------------

def parquet_schema(f: BinaryIO):
    import pyarrow.parquet as pq
    return pq.ParquetFile(f).schema_arrow


def unify_parquet_schemas(schemas: Sequence, paths: Sequence[str]):
    """One schema for all Parquet sources (columns missing from a file are null there)."""
    import pyarrow as pa
    try:
        return pa.unify_schemas(list(schemas), promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"the Parquet sources' schemas conflict ({e}); files: "
                         f"{', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}") from None


def with_score_column(schema):
    """The schema plus ``zipfit_score: double`` as the last column (replacing one that exists)."""
    import pyarrow as pa
    if SCORE_FIELD in schema.names:
        schema = schema.remove(schema.get_field_index(SCORE_FIELD))
    return schema.append(pa.field(SCORE_FIELD, pa.float64(), nullable=False))


def avro_schema(f: BinaryIO) -> dict:
    import fastavro
    return fastavro.reader(f).writer_schema


def avro_with_score(schema: dict) -> dict:
    """An Avro record schema plus a ``zipfit_score: double`` field (replacing one that exists)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("Avro output needs record schemas in the Avro sources")
    fields = [f for f in schema["fields"] if f["name"] != SCORE_FIELD]
    return dict(schema, fields=fields + [{"name": SCORE_FIELD, "type": "double"}])


def avro_field_names(schema) -> List[str]:
    return [f["name"] for f in schema.get("fields", [])] if isinstance(schema, dict) else []


DEAD_LETTER_FIELDS = (("source", "string"), ("position", "long"), ("reason", "string"),
                      ("detail", "string"), ("record", "string"))


def dead_letter_row(dead: DeadLetter) -> dict:
    return {"source": dead.source, "position": dead.position, "reason": dead.reason,
            "detail": dead.detail, "record": dead.record.decode("utf-8", "backslashreplace")}


def dead_letter_arrow_schema():
    import pyarrow as pa
    types = {"string": pa.string(), "long": pa.int64()}
    return pa.schema([pa.field(n, types[t], nullable=False) for n, t in DEAD_LETTER_FIELDS])


def dead_letter_avro_schema() -> dict:
    return {"type": "record", "name": "DeadLetter", "namespace": "zipfit_beam",
            "fields": [{"name": n, "type": t} for n, t in DEAD_LETTER_FIELDS]}


# Schema inference, for an output whose format differs from the input's (JSONL -> Parquet,
# Avro -> Parquet, JSONL -> Avro, ...). Each top-level field's type is inferred per row
# and unified over all rows written; a field whose values cannot share one type (a number
# here, a string there) is written as JSON text. Field order: that of the row with the
# smallest (source, position), then any other fields by name, zipfit_score last.

class InferredSchema(NamedTuple):
    """An accumulated row schema: field -> Arrow type, or JSON_TEXT."""
    first_key: Optional[Tuple[str, int]]
    first_order: Tuple[str, ...]
    types: Dict[str, Any]


EMPTY_SCHEMA = InferredSchema(None, (), {})
JSON_TEXT = "json-text"


def _infer_value_type(value):
    import pyarrow as pa
    try:
        return pa.array([value]).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return JSON_TEXT


def _unify_types(a, b):
    import pyarrow as pa
    if isinstance(a, str) or isinstance(b, str):  # JSON_TEXT
        return JSON_TEXT
    if a == b:
        return a
    try:
        return pa.unify_schemas([pa.schema([("f", a)]), pa.schema([("f", b)])],
                                promote_options="permissive").field(0).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return JSON_TEXT


def infer_row(row: Mapping, key: Tuple[str, int]) -> InferredSchema:
    types = {k: _infer_value_type(v) for k, v in row.items() if k != SCORE_FIELD}
    return InferredSchema(key, tuple(types), types)


def merge_inferred(a: InferredSchema, b: InferredSchema) -> InferredSchema:
    if a.first_key is None:
        return b
    if b.first_key is None:
        return a
    types = dict(a.types)
    for name, t in b.types.items():
        types[name] = _unify_types(types[name], t) if name in types else t
    first = a if a.first_key <= b.first_key else b
    return InferredSchema(first.first_key, first.first_order, types)


def inferred_arrow_schema(inferred: InferredSchema):
    """(Arrow schema with zipfit_score last, names of the fields written as JSON text)."""
    import pyarrow as pa
    order = list(inferred.first_order) + sorted(set(inferred.types) - set(inferred.first_order))
    fields, json_fields = [], []
    for name in order:
        t = inferred.types[name]
        if isinstance(t, str):  # JSON_TEXT
            fields.append(pa.field(name, pa.string()))
            json_fields.append(name)
        else:
            fields.append(pa.field(name, t))
    return with_score_column(pa.schema(fields)), tuple(json_fields)


def conform_row(row: Mapping, names: Sequence[str], json_fields: Sequence[str]) -> dict:
    """A row shaped for a fixed schema: every field present (missing ones null), values of
    JSON-text fields serialised."""
    out = {n: row.get(n) for n in names}
    for n in json_fields:
        if out[n] is not None and not isinstance(out[n], str):
            out[n] = json.dumps(out[n], ensure_ascii=False, default=json_default)
    return out


# Arrow -> Avro, for Avro output from Parquet or from inferred rows.

def arrow_to_avro(schema, name: str = "Record") -> dict:
    """An Avro record schema for an Arrow schema. Nullable fields become ["null", T]."""
    counter = [0]

    def record_name():
        counter[0] += 1
        return f"{name}_{counter[0]}"

    def convert(t):
        import pyarrow as pa
        pt = pa.types
        if pt.is_null(t):
            return "null"
        if pt.is_boolean(t):
            return "boolean"
        if pt.is_int8(t) or pt.is_int16(t) or pt.is_int32(t) or pt.is_uint8(t) or pt.is_uint16(t):
            return "int"
        if pt.is_integer(t):
            return "long"
        if pt.is_float16(t) or pt.is_float32(t):
            return "float"
        if pt.is_float64(t):
            return "double"
        if pt.is_string(t) or pt.is_large_string(t):
            return "string"
        if pt.is_binary(t) or pt.is_large_binary(t):
            return "bytes"
        if pt.is_fixed_size_binary(t):
            return {"type": "fixed", "name": record_name(), "size": t.byte_width}
        if pt.is_date(t):
            return {"type": "int", "logicalType": "date"}
        if pt.is_timestamp(t):
            return {"type": "long", "logicalType":
                    "timestamp-millis" if t.unit in ("s", "ms") else "timestamp-micros"}
        if pt.is_decimal(t):
            return {"type": "bytes", "logicalType": "decimal", "precision": t.precision,
                    "scale": t.scale}
        if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
            return {"type": "array", "items": nullable(t.value_type, True)}
        if pt.is_map(t) and (pt.is_string(t.key_type) or pt.is_large_string(t.key_type)):
            return {"type": "map", "values": nullable(t.item_type, True)}
        if pt.is_struct(t):
            return {"type": "record", "name": record_name(),
                    "fields": [{"name": f.name, "type": nullable(f.type, f.nullable)} for f in t]}
        if pt.is_dictionary(t):
            return convert(t.value_type)
        raise ValueError(f"Arrow type {t} has no Avro equivalent here; choose --output-format "
                         "parquet or jsonl")

    def nullable(t, is_nullable):
        avro = convert(t)
        return ["null", avro] if is_nullable and avro != "null" else avro

    fields = []
    for f in schema:
        entry = {"name": f.name, "type": nullable(f.type, f.nullable)}
        if f.nullable and entry["type"] != "null":
            entry["default"] = None
        fields.append(entry)
    return {"type": "record", "name": name, "namespace": "zipfit_beam", "fields": fields}


def avro_value(value, avro_type):
    """Python value shaped for fastavro from Arrow's ``to_pylist`` (maps come as lists of
    (key, value) pairs)."""
    if value is None:
        return None
    if isinstance(avro_type, list):
        inner = [t for t in avro_type if t != "null"]
        return avro_value(value, inner[0]) if len(inner) == 1 else value
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "map" and isinstance(value, list):
            return {k: avro_value(v, avro_type["values"]) for k, v in value}
        if kind == "array":
            return [avro_value(v, avro_type["items"]) for v in value]
        if kind == "record" and isinstance(value, dict):
            return {f["name"]: avro_value(value.get(f["name"]), f["type"]) for f in avro_type["fields"]}
    return value
