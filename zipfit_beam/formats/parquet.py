"""Parquet (``.parquet``, ``.pq``), read and written with pyarrow. Pure: no Beam.

Scoring reads only the columns it needs (text, id, group), a row group at a time, with
page checksums verified where the writer stored them. The selected rows are read again,
whole, for the output, so every other column passes through; only the row groups that
hold them are read. Records are ``RowRecord(path, row index from 0, row)``.

Record size: the bytes of a row's string and binary values in the columns read (text,
id, group), measured by Arrow on each decoded batch before any Python object is made; a
row over the limit becomes a ``record_too_large`` dead letter and only the rows under it
are converted. Batches are made smaller where the row group's metadata (uncompressed
column chunk sizes) says rows are large, so a batch holds about one limit of text. Not
bounded: Arrow decodes a whole page, so a value of 1 GiB is held by Arrow (about twice:
the decompressed page and the array) before it can be measured; other columns are not
read while scoring, but a selected row is read again whole for the output.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, BinaryIO, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipfit_beam.formats.base import (DEAD_LETTER_FIELDS, SCORE_FIELD, Batch, Encodable,
                                      arrow_row_head, arrow_row_sizes, arrow_rows,
                                      reader_failure, rows_lenient, too_large)
from zipfit_beam.formats.schema import (InferredSchema, conform_row, inferred_arrow_schema,
                                        unify_arrow_schemas, with_score_column)
from zipfit_beam.records import DeadLetter, RowRecord

NAME = "parquet"
LABEL = "Parquet"
HEADER = True
NEEDS_SCHEMA = True
SUFFIXES = {".parquet": "snappy", ".snappy.parquet": "snappy", ".zstd.parquet": "zstd",
            ".gz.parquet": "gzip", ".lz4.parquet": "lz4", ".uncompressed.parquet": "none"}
BATCH_ROWS = 1024  # rows decoded at a time


def claims(name: str) -> bool:
    return name.endswith((".parquet", ".pq"))


def read(f: BinaryIO, path: str, fields: Sequence[str], batch_size: int = BATCH_ROWS,
         max_record_bytes: Optional[int] = None) -> Iterator[Batch]:
    """Rows of one file, only the ``fields`` it has, in batches.

    An unreadable footer gives one ``corrupt_file`` dead letter; an unreadable row group
    one ``corrupt_row_group`` dead letter at the first row not read (its detail says how
    many rows it covers), and reading goes on with the next group. A row whose string
    and binary values in ``fields`` hold more than ``max_record_bytes`` is a
    ``record_too_large`` dead letter."""
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(f, page_checksum_verification=True)
        names = set(pf.schema_arrow.names)
        groups = [pf.metadata.row_group(i) for i in range(pf.num_row_groups)]
        rows = [g.num_rows for g in groups]
    except Exception as e:
        yield [DeadLetter(path, 0, "corrupt_file", f"not a readable Parquet file: {reader_failure(e)}", b"")]
        return
    wanted = [c for c in dict.fromkeys(fields) if c in names]
    start = 0
    for index, (group, n) in enumerate(zip(groups, rows)):
        position = start
        try:
            step = _batch_rows(group, wanted, batch_size, max_record_bytes)
            for batch in pf.iter_batches(batch_size=step, row_groups=[index],
                                         columns=wanted, use_threads=False):
                yield list(_records(batch, path, position, max_record_bytes))
                position += batch.num_rows
            if position != start + n:
                raise EOFError(f"row group holds {position - start} rows, footer says {n}")
        except Exception as e:
            yield [DeadLetter(path, position, "corrupt_row_group",
                              f"row group {index} (rows {start}-{start + n - 1}): rows {position}-"
                              f"{start + n - 1} unreadable: {reader_failure(e)}", b"")]
        start += n


def _batch_rows(group, columns: Sequence[str], batch_size: int, max_bytes: Optional[int]) -> int:
    """Rows per decoded batch in one row group: ``batch_size``, fewer when the columns
    read hold more than ``max_bytes`` per ``batch_size`` rows on average (from the
    footer's uncompressed column chunk sizes; a damaged footer leaves ``batch_size``)."""
    if max_bytes is None or not group.num_rows:
        return batch_size
    try:
        wanted = set(columns)
        size = sum(group.column(j).total_uncompressed_size for j in range(group.num_columns)
                   if group.column(j).path_in_schema.split(".")[0] in wanted)
    except Exception:
        return batch_size
    per_row = max(1, size // group.num_rows)
    return max(1, min(batch_size, max_bytes // per_row))


def _records(batch, path: str, start: int, max_bytes: Optional[int]):
    """One decoded batch -> RowRecords, and record_too_large dead letters for the rows
    over ``max_bytes`` (which are never converted to Python)."""
    import numpy as np
    import pyarrow as pa
    sizes = arrow_row_sizes(batch) if max_bytes is not None else None
    if sizes is None or not len(sizes) or int(sizes.max()) <= max_bytes:
        for i, row in enumerate(arrow_rows(batch)):
            yield RowRecord(path, start + i, row)
        return
    over = sizes > max_bytes
    small = iter(arrow_rows(batch.take(pa.array(np.flatnonzero(~over), pa.int64()))))
    for i in range(batch.num_rows):
        if over[i]:
            yield too_large(path, start + i, int(sizes[i]), max_bytes, arrow_row_head(batch, i), "row")
        else:
            yield RowRecord(path, start + i, next(small))


def take(f: BinaryIO, path: str, positions: Sequence[int]) -> Iterator[RowRecord]:
    """The whole rows at these 0-based indices, reading only the row groups that hold them."""
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
            for batch in pf.iter_batches(batch_size=BATCH_ROWS * 8, row_groups=[index],
                                         use_threads=False):
                local = [p - offset for p in here if offset <= p < offset + batch.num_rows]
                if local:
                    taken = batch.take(pa.array(local, pa.int64()))
                    for p, row in zip((offset + x for x in local), rows_lenient(taken)):
                        yield RowRecord(path, p, row)
                offset += batch.num_rows
        start += n
        if i == len(wanted):
            return


def estimate(f: BinaryIO, path: str) -> int:
    """The rows, exactly, from the footer."""
    import pyarrow.parquet as pq
    return pq.ParquetFile(f).metadata.num_rows


def schema(f: BinaryIO):
    import pyarrow.parquet as pq
    return pq.ParquetFile(f).schema_arrow


def field_names(schema) -> List[str]:
    return list(schema.names)


def unified_schema(headers: Sequence[Tuple[str, Any]]):
    """One Arrow schema for Parquet sources' (path, schema) pairs, plus ``zipfit_score``."""
    return with_score_column(unify_arrow_schemas([s for _, s in headers], [p for p, _ in headers]))


def output_schema(input_formats: Iterable[str], headers: Mapping[str, Sequence[Tuple[str, Any]]]):
    """Parquet from Parquet keeps the sources' (unified) schema plus ``zipfit_score``;
    anything else is inferred from the rows. ``headers``: readable (path, schema) pairs
    per source format."""
    if set(input_formats) != {NAME} or not headers.get(NAME):
        return None
    return unified_schema(headers[NAME])


def dead_letter_schema():
    import pyarrow as pa
    types = {"string": pa.string(), "long": pa.int64()}
    return pa.schema([pa.field(n, types[t], nullable=False) for n, t in DEAD_LETTER_FIELDS])


def with_score(record: RowRecord, score: float) -> dict:
    row = dict(record.row)
    row.pop(SCORE_FIELD, None)
    row[SCORE_FIELD] = score
    return row


def encode(value: Encodable) -> Mapping:
    """A row as it is; a JSONL line decoded to its object."""
    import json
    return json.loads(value) if isinstance(value, bytes) else value


def write_shard(f: BinaryIO, values: Iterable[Mapping], codec: Optional[str], schema,
                batch_rows: int = 1000) -> int:
    """One Parquet file. ``schema``: a fixed Arrow schema or an ``InferredSchema``. Written
    to a local temporary file first: pyarrow's writer needs a seekable file, which an
    object store's upload stream is not."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    json_fields: tuple = ()
    if isinstance(schema, InferredSchema):
        schema, json_fields = inferred_arrow_schema(schema)
    names = schema.names
    count_ = 0
    with tempfile.TemporaryFile() as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression=codec)
        batch: list = []
        for row in values:
            batch.append(conform_row(row, names, json_fields))
            if len(batch) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count_ += len(batch)
                batch = []
        if batch or count_ == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count_ += len(batch)
        writer.close()
        tmp.seek(0)
        shutil.copyfileobj(tmp, f, 1 << 20)
    return count_
