"""Avro (``.avro``), read and written with fastavro. Pure: no Beam.

Scoring keeps a record's text, id and group fields; the selected rows are read again,
whole, for the output. Records are ``RowRecord(path, row index from 0, row)``. Output
shards use a fixed sync marker (fastavro picks a random one by default), so equal rows
give equal bytes.

Reading goes block by block (``fastavro.block_reader``): a record that cannot be decoded
(too deeply nested for the decoder's recursion, or damaged data inside an intact block)
loses only the rest of its block, reading goes on with the next one; a damaged block
frame loses the rest of the file.

Record size: the UTF-8 bytes of every string and bytes value of the decoded record
(every field, as a JSONL line counts every field). Bounded only after decoding: fastavro
holds the whole decompressed block and decodes the whole record (about twice the
record) before it can be measured; a record over the limit is then dropped before any
further copy (no Document, no scoring), keeping its values' first ``HEAD_BYTES`` bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, BinaryIO, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipfit_beam.formats import parquet
from zipfit_beam.formats.base import (BATCH_BYTES, DEAD_LETTER_FIELDS, HEAD_BYTES, SCORE_FIELD,
                                      Batch, measure_value, reader_failure,
                                      safe_row_json, too_large)
from zipfit_beam.formats.schema import (InferredSchema, arrow_to_avro, avro_value, conform_row,
                                        inferred_arrow_schema)
from zipfit_beam.records import DeadLetter, RowRecord

NAME = "avro"
LABEL = "Avro"
HEADER = True
NEEDS_SCHEMA = True
# fastavro's zstandard and snappy codecs need further packages (backports.zstd, cramjam);
# these need only the standard library.
SUFFIXES = {".avro": "null", ".deflate.avro": "deflate", ".bz2.avro": "bzip2", ".xz.avro": "xz"}
SYNC_MARKER = hashlib.blake2b(b"zipfit-beam avro shard", digest_size=16).digest()


def claims(name: str) -> bool:
    return name.endswith(".avro")


def read(f: BinaryIO, path: str, fields: Sequence[str], batch_size: int = 1024,
         max_record_bytes: Optional[int] = None) -> Iterator[Batch]:
    """Records of one file, keeping only ``fields``, in batches. A datum that is not a
    record (the file's schema is a primitive) is ``not_an_object``; one holding invalid
    UTF-8 in any string is ``invalid_utf8`` (as a JSONL line would be); one whose strings
    and bytes hold more than ``max_record_bytes`` is ``record_too_large``. A record that
    cannot be decoded gives one dead letter for the rest of its block
    (``too_deeply_nested`` or ``corrupt_block``); a damaged block frame one
    ``corrupt_file`` dead letter for the rest of the file."""
    batch: Batch = []
    held = 0
    position = 0
    try:
        for block in blocks(f):
            end = position + block.num_records
            records = iter(block)
            while position < end:
                try:
                    record = next(records)
                except Exception as e:  # StopIteration included: fewer records than promised
                    reason = "too_deeply_nested" if isinstance(e, RecursionError) else "corrupt_block"
                    batch.append(DeadLetter(
                        path, position, reason,
                        f"block at byte {block.offset} (rows {end - block.num_records}-{end - 1}): "
                        f"rows {position}-{end - 1} unreadable: {reader_failure(e)}", b""))
                    position = end
                    break
                out, size = _checked(record, path, position, fields, max_record_bytes)
                batch.append(out)
                held += size
                position += 1
                if len(batch) >= batch_size or held >= BATCH_BYTES:
                    yield batch
                    batch, held = [], 0
    except Exception as e:
        batch.append(DeadLetter(path, position, "corrupt_file",
                                f"unreadable from row {position}: {reader_failure(e)}", b""))
    if batch:
        yield batch


def _checked(record, path: str, position: int, fields: Sequence[str], max_bytes: Optional[int]):
    """One decoded datum -> (RowRecord or DeadLetter, bytes it holds)."""
    size, bad = measure_value(record)
    if max_bytes is not None and size > max_bytes:
        return too_large(path, position, size, max_bytes, _head(record), "record"), 0
    if not isinstance(record, dict):
        return DeadLetter(path, position, "not_an_object",
                          f"Avro datum is a {type(record).__name__}, not a record",
                          safe_row_json(record)), size
    if bad is not None:
        return DeadLetter(path, position, "invalid_utf8", f"field {bad!r} is not valid UTF-8",
                          safe_row_json(record)), size
    return RowRecord(path, position, {k: record[k] for k in fields if k in record}), size


def _head(value: Any) -> bytes:
    """A record as JSON with every string and bytes value cut to ``HEAD_BYTES``."""
    def cut(v):
        if isinstance(v, (str, bytes, bytearray)):
            return v[:HEAD_BYTES]
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [cut(x) for x in v]
        return v
    try:
        return safe_row_json(cut(value))
    except RecursionError:
        return b"(too deeply nested to show)"


def take(f: BinaryIO, path: str, positions: Sequence[int]) -> Iterator[RowRecord]:
    """The whole records at these 0-based indices. Rows not taken may hold invalid UTF-8
    (they were rejected); the taken ones were checked. A block whose records could not
    be decoded when it was read holds none of them: it is skipped from the record that
    fails."""
    wanted = set(positions)
    if not wanted:
        return
    last = max(wanted)
    position = 0
    for block in blocks(f):  # the block after the last wanted one is never read: it may be damaged
        end = position + block.num_records
        if not wanted.isdisjoint(range(position, end)):
            records = iter(block)
            try:
                for position in range(position, end):
                    record = next(records)
                    if position in wanted:
                        yield RowRecord(path, position, record)
            except Exception:  # read() made the rest of this block a dead letter
                pass
        position = end
        if position > last:
            return


def blocks(f: BinaryIO):
    """fastavro's block reader over ``f``, or its pure-Python one when the file's schema
    is recursive (a record type that holds itself): the compiled decoder recurses in C
    with no limit, and a record nested 100,000 deep (a 1 MB file) crashes the process
    (SIGSEGV, measured with fastavro 1.13); the pure-Python decoder raises RecursionError
    instead, which costs that record's block. Other schemas nest as deep as they are
    written, a bounded depth."""
    import fastavro
    start = f.tell()
    reader = fastavro.block_reader(f, handle_unicode_errors="surrogateescape")
    if not is_recursive(reader.writer_schema):
        return reader
    from fastavro import _read_py
    f.seek(start)
    return _read_py.block_reader(f, handle_unicode_errors="surrogateescape")


def is_recursive(schema: Any) -> bool:
    """Whether an Avro schema (as JSON) refers to a record type inside that record type."""
    def walk(s, ancestors, namespace) -> bool:
        if isinstance(s, str):
            return s in ancestors or f"{namespace}.{s}" in ancestors
        if isinstance(s, list):
            return any(walk(x, ancestors, namespace) for x in s)
        if not isinstance(s, dict):
            return False
        kind = s.get("type")
        if kind in ("record", "error"):
            name = str(s.get("name", ""))
            ns = str(s.get("namespace", namespace if "." not in name else name.rsplit(".", 1)[0]))
            full = name if "." in name else f"{ns}.{name}"
            inner = ancestors | {name, full, full.rsplit(".", 1)[-1]}
            return any(walk(fld.get("type"), inner, ns) for fld in s.get("fields", [])
                       if isinstance(fld, dict))
        if kind == "array":
            return walk(s.get("items"), ancestors, namespace)
        if kind == "map":
            return walk(s.get("values"), ancestors, namespace)
        return isinstance(kind, (dict, list)) and walk(kind, ancestors, namespace)
    return walk(schema, frozenset(), "")


def estimate(f: BinaryIO, path: str) -> int:
    """The records, exactly, from the block headers."""
    import fastavro
    return sum(block.num_records for block in fastavro.block_reader(f))


def schema(f: BinaryIO) -> dict:
    import fastavro
    return fastavro.reader(f).writer_schema


def field_names(schema) -> List[str]:
    return [f["name"] for f in schema.get("fields", [])] if isinstance(schema, dict) else []


def with_score_field(schema: dict) -> dict:
    """An Avro record schema plus a ``zipfit_score: double`` field (replacing one that exists)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("Avro output needs record schemas in the Avro sources")
    fields = [f for f in schema["fields"] if f["name"] != SCORE_FIELD]
    return dict(schema, fields=fields + [{"name": SCORE_FIELD, "type": "double"}])


def output_schema(input_formats: Iterable[str], headers: Mapping[str, Sequence[Tuple[str, Any]]]):
    """Avro from Avro keeps the sources' one writer schema plus ``zipfit_score``; Avro from
    Parquet converts the sources' unified Arrow schema; anything else is inferred."""
    formats = set(input_formats)
    if formats == {parquet.NAME} and headers.get(parquet.NAME):
        return arrow_to_avro(parquet.unified_schema(headers[parquet.NAME]))
    if formats == {NAME} and headers.get(NAME):
        distinct = {json.dumps(s, sort_keys=True): s for _, s in headers[NAME]}
        if len(distinct) > 1:
            raise ValueError(f"the Avro sources have {len(distinct)} different schemas; Avro output "
                             "needs one. Choose --output-format parquet or jsonl (the schema is "
                             "then inferred from the selected rows)")
        return with_score_field(next(iter(distinct.values())))
    return None


def dead_letter_schema() -> dict:
    return {"type": "record", "name": "DeadLetter", "namespace": "zipfit_beam",
            "fields": [{"name": n, "type": t} for n, t in DEAD_LETTER_FIELDS]}


def with_score(record: RowRecord, score: float) -> dict:
    return parquet.with_score(record, score)


encode = parquet.encode  # a row as it is; a JSONL line decoded to its object


def write_shard(f: BinaryIO, values: Iterable[Mapping], codec: Optional[str], schema) -> int:
    """One Avro file. ``schema``: a fixed Avro schema or an ``InferredSchema``."""
    import fastavro
    json_fields: tuple = ()
    if isinstance(schema, InferredSchema):
        arrow, json_fields = inferred_arrow_schema(schema)
        schema = arrow_to_avro(arrow)
    names = field_names(schema)
    types = {fld["name"]: fld["type"] for fld in schema["fields"]}
    written = 0

    def shaped():
        nonlocal written
        for row in values:
            written += 1
            out = conform_row(row, names, json_fields)
            yield {n: avro_value(v, types[n]) for n, v in out.items()}

    fastavro.writer(f, fastavro.parse_schema(schema), shaped(), codec=codec or "null",
                    sync_marker=SYNC_MARKER)
    return written
