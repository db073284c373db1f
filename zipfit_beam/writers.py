"""Writing the selected records and the dead letters, in the output format.

    selected ScoredDocument --FetchSelected--> (key, record + zipfit_score)
        the selected records are read again from their files (grouped by file, so each
        worker reads only the files it was given): a JSONL line (JSONL out: spliced byte
        for byte; else json-decoded) or a whole Parquet/Avro row
    --WriteRowFiles (Parquet, Avro) or WriteToText (JSONL)--> staged shard paths

The output format follows the sources' (``--output-format`` or the ``--output-suffix``
override it). Parquet from Parquet keeps the sources' schema and adds ``zipfit_score``
(double); Avro from Avro extends the writer schema the same way; any other combination
infers the schema from the rows written (see ``formats.InferredSchema``). Shard files are
named ``{kind}-SSSSS-of-NNNNN{suffix}`` like ``WriteToText``'s, and always all N exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, AsSingleton

from zipfit_beam import formats, io
from zipfit_beam.parsing import dead_letter_json, with_score
from zipfit_beam.records import RowRecord, ScoredDocument
from zipfit_beam.sharding import WriteSelectedShards
from zipfit_beam.templates import TextSpec, TextTemplate, as_text_spec

_LOG = logging.getLogger(__name__)

ROWS_PER_SHARD = 100_000  # Parquet/Avro shards when --num-shards is 0
Key = Tuple[str, int]  # (source, position): names a record, orders rows deterministically


@dataclass(frozen=True)
class OutputPlan:
    """How the output is written; decided in the launcher from the config and the sources.

    ``schema``: ``"input"`` (the sources' own schema plus zipfit_score), ``"inferred"``
    (from the rows written) or ``None`` for JSONL. ``row_sources``: some sources are
    Parquet/Avro files, whose selected rows are read again for the output;
    ``format_overrides``: the format of those whose name does not say it (``--format``),
    so the job graph does not carry every path twice."""
    format: str
    suffix: str
    codec: Optional[str]
    num_shards: int
    schema: Optional[str] = None
    arrow_schema: Any = None  # pyarrow.Schema when Parquet output keeps the input schema
    avro_schema: Optional[dict] = None  # when Avro output has a fixed schema
    row_sources: bool = False
    format_overrides: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"format": self.format, "suffix": self.suffix, "codec": self.codec,
                "schema": self.schema}


def _check_fields(schemas: Sequence[Tuple[str, Any]], names_of, fmt: str,
                  text: TextSpec, what: str) -> None:
    """Fail before the job starts when a text field is a column of no source of ``fmt``."""
    readable = [s for _, s in schemas if s is not None]
    if not readable:
        return
    columns = set()
    for s in readable:
        columns.update(names_of(s))
    missing = [f for f in text.fields if f not in columns]
    if missing:
        raise ValueError(f"{what} {', '.join(map(repr, missing))} is not a field of any {fmt} "
                         f"source (fields: {', '.join(sorted(columns))})")


def _named_format(path: str) -> Optional[str]:
    try:
        return formats.detect_format(path)
    except ValueError:
        return None


def plan_output(files: Sequence[io.InputFile], output_format: Optional[str],
                output_suffix: Optional[str], num_shards: int,
                text: TextSpec | str = "text") -> OutputPlan:
    """Decide the output format, suffix, codec and schema; read the Parquet footers and
    Avro headers of the sources (in parallel) to check the text fields and to take their
    schemas. Raises ValueError for a combination that cannot be written."""
    text = as_text_spec(text)
    what = "--text-template field" if isinstance(text, TextTemplate) else "--text-field"
    input_formats = {f for _, f in files}
    fmt, suffix, codec = formats.resolve_output(output_format, output_suffix, input_formats)
    overrides = {p: f for p, f in files if f != formats.JSONL and _named_format(p) != f}
    plan = dict(format=fmt, suffix=suffix, codec=codec, num_shards=num_shards,
                row_sources=bool(input_formats - {formats.JSONL}), format_overrides=overrides)
    headers = {}
    for kind in (formats.PARQUET, formats.AVRO):
        if kind in input_formats:
            headers[kind] = io.read_headers(files, kind)
    if formats.PARQUET in headers:
        _check_fields(headers[formats.PARQUET], lambda s: s.names, "Parquet", text, what)
    if formats.AVRO in headers:
        _check_fields(headers[formats.AVRO], formats.avro_field_names, "Avro", text, what)
    if fmt == formats.JSONL:
        return OutputPlan(**plan)
    if input_formats == {formats.PARQUET} and fmt in (formats.PARQUET, formats.AVRO):
        readable = [(p, s) for p, s in headers[formats.PARQUET] if s is not None]
        if readable:
            unified = formats.unify_parquet_schemas([s for _, s in readable], [p for p, _ in readable])
            arrow = formats.with_score_column(unified)
            if fmt == formats.PARQUET:
                return OutputPlan(**plan, schema="input", arrow_schema=arrow)
            return OutputPlan(**plan, schema="input", avro_schema=formats.arrow_to_avro(arrow))
    if input_formats == {formats.AVRO} and fmt == formats.AVRO:
        distinct = {json.dumps(s, sort_keys=True): s for _, s in headers[formats.AVRO] if s is not None}
        if len(distinct) > 1:
            raise ValueError(f"the Avro sources have {len(distinct)} different schemas; Avro output "
                             "needs one. Choose --output-format parquet or jsonl (the schema is "
                             "then inferred from the selected rows)")
        if distinct:
            return OutputPlan(**plan, schema="input",
                              avro_schema=formats.avro_with_score(next(iter(distinct.values()))))
    return OutputPlan(**plan, schema="inferred")


# --- selected rows ----------------------------------------------------------------------

class FetchSelectedDoFn(beam.DoFn):
    """(source file, [(position, id, score), ...]) -> (Key, record) for the selected records
    of one file, read again: a JSONL line with ``zipfit_score`` spliced in, byte for byte
    (bytes), or a whole Parquet/Avro row with ``zipfit_score`` (dict; only the row groups
    holding selected rows are read). Each record is parsed again and must give the id that
    was scored, so a source file that changed since scoring is an error, never a wrong
    selection. ``counter``: the Metrics counter of fetched records."""

    def __init__(self, format_overrides: Dict[str, str], text, id_field: str,
                 counter: str = "fetched"):
        self._overrides, self._text, self._id_field = format_overrides, as_text_spec(text), id_field
        self._fetched = Metrics.counter("zipfit", counter)

    def _check(self, record, expected_id: str) -> None:
        parsed = io.parse_any(record, self._text, self._id_field)
        if getattr(parsed, "id", None) != expected_id:
            raise ValueError(f"{record.source}:{record.position} changed since it was scored "
                             f"(scored as id {expected_id!r})")

    def process(self, element):
        path, wanted = element
        by_position = {position: (doc_id, score) for position, doc_id, score in wanted}

        def key(position):  # the ranking key orders and shards the output deterministically
            doc_id, score = by_position[position]
            return (-score, doc_id, path, position)

        fmt = self._overrides.get(path) or formats.detect_format(path)
        found = 0
        if fmt == formats.JSONL:
            for raw in io.iter_records(path):
                if raw.position in by_position:
                    doc_id, score = by_position[raw.position]
                    self._check(raw, doc_id)
                    found += 1
                    yield key(raw.position), with_score(raw.data, score)
                    if found == len(by_position):
                        break
        else:
            take = formats.take_parquet_rows if fmt == formats.PARQUET else formats.take_avro_rows
            with io.open_file(path) as f:
                for position, row in take(f, sorted(by_position)):
                    doc_id, score = by_position[position]
                    self._check(RowRecord(path, position, row), doc_id)
                    row = dict(row)
                    row.pop(formats.SCORE_FIELD, None)
                    row[formats.SCORE_FIELD] = score
                    found += 1
                    yield key(position), row
        self._fetched.inc(found)
        if found != len(by_position):
            raise ValueError(f"{path}: {len(by_position) - found} selected records are missing; "
                             "the file changed since it was scored")


class FetchSelected(beam.PTransform):
    """PCollection[ScoredDocument] -> PCollection[(RankKey, record)]: the selected records
    read back from their source files (see FetchSelectedDoFn).

    Late materialisation: scoring keeps only small keys, so no step holds or shuffles the
    corpus text while the selection is found; the selected keys are grouped by source file
    and each file is read again by one worker. ``counter``: the Metrics counter of
    fetched records (``fetched`` for the selection)."""

    def __init__(self, format_overrides: Dict[str, str], text, id_field: str,
                 counter: str = "fetched"):
        super().__init__()
        self._args = (format_overrides, text, id_field, counter)

    def expand(self, selected):
        return (selected
                | "KeyByFile" >> beam.Map(lambda d: (d.source, (d.position, d.id, d.score)))
                | "GroupByFile" >> beam.GroupByKey()
                | "FetchRecords" >> beam.ParDo(FetchSelectedDoFn(*self._args)))


def _as_line(record) -> bytes:
    return record if isinstance(record, bytes) else formats.row_json(record)


def _as_row(keyed):
    key, record = keyed
    return key, (json.loads(record) if isinstance(record, bytes) else record)


# --- row files --------------------------------------------------------------------------

def _shard_of(key: Key, n: int) -> int:
    digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % n


class InferSchemaCombineFn(beam.CombineFn):
    """(Key, row) -> formats.InferredSchema over all rows (empty input: no fields)."""

    def create_accumulator(self):
        return formats.EMPTY_SCHEMA

    def add_input(self, acc, element):
        key, row = element
        return formats.merge_inferred(acc, formats.infer_row(row, key))

    def merge_accumulators(self, accs):
        out = formats.EMPTY_SCHEMA
        for a in accs:
            out = formats.merge_inferred(out, a)
        return out

    def extract_output(self, acc):
        return acc


def _shard_name(staging: str, kind: str, index: int, count: int, suffix: str) -> str:
    return posixpath.join(staging, f"{kind}-{index:05d}-of-{count:05d}{suffix}")


class _Schemas:
    """The writer's view of the schema: Arrow (+ JSON-text fields) and/or Avro."""

    def __init__(self, fmt: str, arrow=None, avro=None, inferred=None):
        self.json_fields: Tuple[str, ...] = ()
        if inferred is not None:
            arrow, self.json_fields = formats.inferred_arrow_schema(inferred)
            avro = formats.arrow_to_avro(arrow) if fmt == formats.AVRO else None
        self.arrow, self.avro = arrow, avro
        if fmt == formats.AVRO:
            import fastavro
            self.parsed_avro = fastavro.parse_schema(self.avro)
            self.names = formats.avro_field_names(self.avro)
            self.avro_types = {f["name"]: f["type"] for f in self.avro["fields"]}
        else:
            self.names = self.arrow.names

    def shape(self, row: dict, fmt: str) -> dict:
        out = formats.conform_row(row, self.names, self.json_fields)
        if fmt == formats.AVRO:
            out = {n: formats.avro_value(v, self.avro_types[n]) for n, v in out.items()}
        return out


def write_row_file(path: str, rows: Iterable[dict], fmt: str, codec: Optional[str],
                   schemas: _Schemas, batch_rows: int = 1000) -> int:
    """Write one Parquet or Avro file through FileSystems; returns the number of rows."""
    count = 0
    if fmt == formats.PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq
        with tempfile.TemporaryFile() as tmp:
            writer = pq.ParquetWriter(tmp, schemas.arrow, compression=codec)
            batch = []
            for row in rows:
                batch.append(schemas.shape(row, fmt))
                if len(batch) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schemas.arrow))
                    count += len(batch)
                    batch = []
            if batch or count == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=schemas.arrow))
                count += len(batch)
            writer.close()
            tmp.seek(0)
            with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
                shutil.copyfileobj(tmp, out, 1 << 20)
        return count
    import fastavro

    def shaped():
        nonlocal count
        for row in rows:
            count += 1
            yield schemas.shape(row, fmt)

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
        fastavro.writer(out, schemas.parsed_avro, shaped(), codec=codec or "null")
    return count


class WriteShardDoFn(beam.DoFn):
    """(shard index, rows) -> the staged path of that shard's file."""

    def __init__(self, staging: str, kind: str, fmt: str, suffix: str, codec: Optional[str],
                 arrow_schema=None, avro_schema=None):
        self._args = (staging, kind, suffix)
        self._fmt, self._codec = fmt, codec
        self._arrow, self._avro = arrow_schema, avro_schema
        self._schemas = None

    def _schemas_for(self, inferred):
        if inferred is not None:
            return _Schemas(self._fmt, inferred=inferred)
        if self._schemas is None:
            self._schemas = _Schemas(self._fmt, self._arrow, self._avro)
        return self._schemas

    def process(self, element, count: int, inferred=None):
        index, rows = element
        staging, kind, suffix = self._args
        path = _shard_name(staging, kind, index, count, suffix)
        write_row_file(path, (row for _, row in rows), self._fmt, self._codec,
                       self._schemas_for(inferred))
        yield index, path


class WriteEmptyShardsDoFn(WriteShardDoFn):
    """Writes an empty file (schema only) for every shard index that received no rows, so
    ``-of-N`` always names N files."""

    def process(self, _unused, written: List[int], count: int, inferred=None):
        staging, kind, suffix = self._args
        done = set(written)
        for index in range(count):
            if index not in done:
                path = _shard_name(staging, kind, index, count, suffix)
                write_row_file(path, [], self._fmt, self._codec, self._schemas_for(inferred))
                yield path


class WriteRowFiles(beam.PTransform):
    """PCollection[(Key, row dict)] -> PCollection[str]: staged ``{kind}-SSSSS-of-NNNNN``
    Parquet or Avro files. Rows go to shard ``hash(key) % N`` (N = ``num_shards``, or one
    per ROWS_PER_SHARD rows when 0), so a record lands in the same shard on every run. With
    no fixed schema, the schema is inferred from all rows first (a side input)."""

    def __init__(self, staging: str, kind: str, fmt: str, suffix: str, codec: Optional[str],
                 num_shards: int, arrow_schema=None, avro_schema=None):
        super().__init__()
        self._args = (staging, kind, fmt, suffix, codec)
        self._num_shards = num_shards
        self._arrow, self._avro = arrow_schema, avro_schema

    def expand(self, rows):
        fixed = self._num_shards

        def shard_count(n):
            return fixed or max(1, math.ceil(n / ROWS_PER_SHARD))

        count = AsSingleton(rows
                            | "CountRows" >> beam.combiners.Count.Globally()
                            | "ShardCount" >> beam.Map(shard_count))
        extra = {}
        if self._arrow is None and self._avro is None:
            extra["inferred"] = AsSingleton(rows | "InferSchema" >> beam.CombineGlobally(InferSchemaCombineFn()))
        written = (rows
                   | "AssignShard" >> beam.Map(lambda kv, n: (_shard_of(kv[0], n), kv), count)
                   | "GroupByShard" >> beam.GroupByKey()
                   | "WriteShard" >> beam.ParDo(WriteShardDoFn(*self._args, self._arrow, self._avro),
                                                count, **extra))
        empty = (rows.pipeline
                 | "EmptyShardsTrigger" >> beam.Create([None])
                 | "WriteEmptyShards" >> beam.ParDo(
                     WriteEmptyShardsDoFn(*self._args, self._arrow, self._avro),
                     AsList(written | "WrittenIndices" >> beam.Map(lambda ip: ip[0])), count, **extra))
        return ((written | "WrittenPaths" >> beam.Map(lambda ip: ip[1]), empty)
                | "AllShards" >> beam.Flatten())


# --- the two outputs --------------------------------------------------------------------

class WriteSelected(beam.PTransform):
    """PCollection[ScoredDocument] -> PCollection[str] (staged ``selected-*`` files): the
    selected records are fetched from their sources and written in the output format.
    ``text``/``id_field``: how the sources were parsed (to check fetched records)."""

    def __init__(self, plan: OutputPlan, staging: str, text="text", id_field: str = "id"):
        super().__init__()
        self._plan, self._staging = plan, staging
        self._text, self._id_field = text, id_field

    def expand(self, selected):
        plan = self._plan
        records = selected | "Fetch" >> FetchSelected(plan.format_overrides, self._text, self._id_field)
        if plan.format == formats.JSONL:
            return (records
                    | "Lines" >> beam.Map(lambda keyed: (keyed[0], _as_line(keyed[1])))
                    | "WriteShards" >> WriteSelectedShards(self._staging, "selected", plan.suffix,
                                                           plan.num_shards))
        rows = records | "Rows" >> beam.Map(_as_row)
        return rows | "WriteRows" >> WriteRowFiles(
            self._staging, "selected", plan.format, plan.suffix, plan.codec, plan.num_shards,
            plan.arrow_schema, plan.avro_schema)


class WriteRejected(beam.PTransform):
    """PCollection[DeadLetter] -> PCollection[str] (staged ``rejected-*`` files): JSON lines
    for JSONL output, else rows of the dead-letter schema (source, position, reason,
    detail, record) in the output format."""

    def __init__(self, plan: OutputPlan, staging: str):
        super().__init__()
        self._plan, self._staging = plan, staging

    def expand(self, rejected):
        plan = self._plan
        if plan.format == formats.JSONL:
            return (rejected
                    | "FormatRejected" >> beam.Map(dead_letter_json)
                    | "WriteText" >> beam.io.WriteToText(
                        posixpath.join(self._staging, "rejected"), file_name_suffix=plan.suffix,
                        num_shards=plan.num_shards, shard_name_template="-SSSSS-of-NNNNN"))
        arrow = formats.dead_letter_arrow_schema() if plan.format == formats.PARQUET else None
        avro = formats.dead_letter_avro_schema() if plan.format == formats.AVRO else None
        return (rejected
                | "Rows" >> beam.Map(lambda d: ((d.source, d.position), formats.dead_letter_row(d)))
                | "WriteRows" >> WriteRowFiles(self._staging, "rejected", plan.format, plan.suffix,
                                               plan.codec, plan.num_shards, arrow, avro))
