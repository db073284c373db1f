"""Avro (``.avro``), read and written with fastavro. Pure: no Beam.

Scoring keeps a record's text, id and group fields; the selected rows are read again,
whole, for the output. Records are ``RowRecord(path, row index from 0, row)``. Output
shards use a fixed sync marker (fastavro picks a random one by default), so equal rows
give equal bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, BinaryIO, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipfit_beam.formats import parquet
from zipfit_beam.formats.base import (DEAD_LETTER_FIELDS, SCORE_FIELD, Batch,
                                      first_bad_string, reader_failure, row_json)
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


def read(f: BinaryIO, path: str, fields: Sequence[str], batch_size: int = 1024) -> Iterator[Batch]:
    """Records of one file, keeping only ``fields``, in batches. A datum that is not a
    record (the file's schema is a primitive) is ``not_an_object``; one holding invalid
    UTF-8 in any string is ``invalid_utf8`` (as a JSONL line would be); a damaged block
    gives one ``corrupt_file`` dead letter for the rest of the file."""
    import fastavro
    batch: Batch = []
    position = 0
    try:
        for record in fastavro.reader(f, handle_unicode_errors="surrogateescape"):
            if not isinstance(record, dict):
                batch.append(DeadLetter(path, position, "not_an_object",
                                        f"Avro datum is a {type(record).__name__}, not a record",
                                        row_json(record)))
            else:
                bad = first_bad_string(record)
                if bad is not None:
                    batch.append(DeadLetter(path, position, "invalid_utf8",
                                            f"field {bad!r} is not valid UTF-8", row_json(record)))
                else:
                    batch.append(RowRecord(path, position, {k: record[k] for k in fields if k in record}))
            position += 1
            if len(batch) >= batch_size:
                yield batch
                batch = []
    except Exception as e:
        batch.append(DeadLetter(path, position, "corrupt_file",
                                f"unreadable from row {position}: {reader_failure(e)}", b""))
    if batch:
        yield batch


def take(f: BinaryIO, path: str, positions: Sequence[int]) -> Iterator[RowRecord]:
    """The whole records at these 0-based indices. Rows not taken may hold invalid UTF-8
    (they were rejected); the taken ones were checked."""
    import fastavro
    wanted = set(positions)
    last = max(wanted) if wanted else -1
    for position, record in enumerate(fastavro.reader(f, handle_unicode_errors="surrogateescape")):
        if position > last:
            return
        if position in wanted:
            yield RowRecord(path, position, record)


def count(f: BinaryIO, path: str) -> int:
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
