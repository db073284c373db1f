"""Writing the selected records and the dead letters: one shard writer for every output
format.

    selected ScoredDocument --FetchSelected--> (RankKey, record + zipfit_score)
    rejected DeadLetter --> ((source, position), dead-letter row)
    --WriteShards--> staged ``{kind}-SSSSS-of-NNNNN{suffix}`` files

One rule for every format and both outputs: a record's shard is a hash of its place
(source, position: the end of both keys), so it lands in the same shard on every run,
runner and worker count; each shard is sorted by key (best first for the selection) and
written whole by one worker; the shard count is ``--num-shards``, or one per
``SHARD_BYTES`` of records (a row counted as its JSON) when 0; every shard index gets a
file, empty or not. Format modules make the bytes deterministic (gzip without a
timestamp, a fixed Avro sync marker), so the same selection gives the same files.

The output format follows the sources' (``--output-format`` or the ``--output-suffix``
override it). ``plan_output`` decides it in the launcher, with the schema: the sources'
own plus ``zipfit_score`` where the format allows (``Format.output_schema``), else
inferred from the rows written (``formats.schema.InferredSchema``).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from zipfit_beam import formats
from zipfit_beam.combine import global_combine, side_combine
from zipfit_beam.formats import schema as schemas
from zipfit_beam.io.fetch import FetchSelected
from zipfit_beam.io.files import InputFile, create_file, read_headers
from zipfit_beam.io.templates import TextSpec, TextTemplate, as_text_spec

__all__ = ["SHARD_BYTES", "OutputPlan", "plan_output", "shard_of", "shard_count", "shard_name",
           "WriteShards", "WriteSelected", "WriteRejected"]

SHARD_BYTES = 128 * 1024 * 1024  # shard size when --num-shards is 0


@dataclass(frozen=True)
class OutputPlan:
    """How the output is written; decided in the launcher from the config and the sources.

    ``schema``: ``"input"`` (the sources' own schema plus zipfit_score: ``fixed_schema``),
    ``"inferred"`` (from the rows written) or None for a format without schemas.
    ``source_format``: ``--format`` (``auto``: each source's follows its name), so the job
    graph carries no list of paths."""
    format: str
    suffix: str
    codec: Optional[str]
    num_shards: int
    schema: Optional[str] = None
    fixed_schema: Any = None
    source_format: str = "auto"

    def describe(self) -> dict:
        return {"format": self.format, "suffix": self.suffix, "codec": self.codec,
                "schema": self.schema}


def _check_fields(headers: Dict[str, Sequence[Tuple[str, Any]]], text: TextSpec, what: str) -> None:
    """Fail before the job starts when a text field is a column of no source of a format
    with headers (whose headers could be read)."""
    for fmt, pairs in headers.items():
        readable = [s for _, s in pairs if s is not None]
        if not readable:
            continue
        columns = set()
        for s in readable:
            columns.update(formats.get(fmt).field_names(s))
        missing = [f for f in text.fields if f not in columns]
        if missing:
            raise ValueError(f"{what} {', '.join(map(repr, missing))} is not a field of any "
                             f"{formats.get(fmt).LABEL} "
                             f"source (fields: {', '.join(sorted(columns))})")


def plan_output(files: Sequence[InputFile], output_format: Optional[str],
                output_suffix: Optional[str], num_shards: int,
                text: TextSpec | str = "text", source_format: str = "auto") -> OutputPlan:
    """Decide the output format, suffix, codec and schema; read the sources' headers (in
    parallel) to check the text fields and to take their schemas. Raises ValueError for a
    combination that cannot be written."""
    text = as_text_spec(text)
    what = "--text-template field" if isinstance(text, TextTemplate) else "--text-field"
    input_formats = {f for _, f in files}
    fmt, suffix, codec = formats.resolve_output(output_format, output_suffix, input_formats)
    plan = dict(format=fmt, suffix=suffix, codec=codec, num_shards=num_shards,
                source_format=source_format)
    headers = read_headers(files)
    _check_fields(headers, text, what)
    out = formats.get(fmt)
    if not out.NEEDS_SCHEMA:
        return OutputPlan(**plan)
    readable = {f: [(p, s) for p, s in pairs if s is not None] for f, pairs in headers.items()}
    fixed = out.output_schema(input_formats, readable)
    return OutputPlan(**plan, schema="inferred" if fixed is None else "input", fixed_schema=fixed)


# --- the shard writer -------------------------------------------------------------------

def shard_of(key: tuple, num_shards: int) -> int:
    """A stable shard number for a record key: a hash of its place, the key's last two
    fields (source, position), the same in every process and run."""
    source, position = key[-2:]
    digest = hashlib.blake2b(f"{source}\0{position}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % num_shards


def shard_count(num_shards: int, total_bytes: int) -> int:
    return num_shards or max(1, math.ceil(total_bytes / SHARD_BYTES))


def shard_name(kind: str, index: int, count: int, suffix: str) -> str:
    return f"{kind}-{index:05d}-of-{count:05d}{suffix}"


class InferSchemaCombineFn(beam.CombineFn):
    """(key, row) -> formats.schema.InferredSchema over all rows (empty input: no fields)."""

    def create_accumulator(self):
        return schemas.EMPTY_SCHEMA

    def add_input(self, acc, element):
        key, row = element
        return schemas.merge_inferred(acc, schemas.infer_row(row, key))

    def merge_accumulators(self, accs):
        out = schemas.EMPTY_SCHEMA
        for a in accs:
            out = schemas.merge_inferred(out, a)
        return out

    def extract_output(self, acc):
        return acc


class WriteShardDoFn(beam.DoFn):
    """(shard index, [(key, value) or None, ...]) + shard count (+ inferred schema) -> the
    path of that shard, written in key order. None entries only make sure every shard
    index, even an empty one, gets a file."""

    def __init__(self, directory: str, kind: str, fmt: str, suffix: str, codec: Optional[str],
                 schema: Any = None):
        self._directory, self._kind, self._suffix = directory, kind, suffix
        self._fmt, self._codec, self._schema = fmt, codec, schema

    def process(self, element, count: int, inferred=None):
        index, items = element
        ordered = sorted((item for item in items if item is not None), key=lambda kv: kv[0])
        path = posixpath.join(self._directory, shard_name(self._kind, index, count, self._suffix))
        with create_file(path) as f:
            formats.get(self._fmt).write_shard(f, [value for _, value in ordered], self._codec,
                                               self._schema if inferred is None else inferred)
        yield path


class WriteShards(beam.PTransform):
    """PCollection[(key, record)] -> PCollection[str]: the staged paths of
    ``kind-SSSSS-of-NNNNN{suffix}`` shards in ``directory``, in the plan's format (see the
    module docstring for the rule). A key ends with (source, position); a record is a
    JSONL line (bytes) or a row dict, encoded for the output format first. ``schema``:
    the shards' fixed schema; None for a format that needs one: inferred from the rows."""

    def __init__(self, directory: str, kind: str, plan: OutputPlan, schema: Any = None):
        super().__init__()
        self._directory, self._kind, self._plan, self._schema = directory, kind, plan, schema

    def expand(self, records):
        plan, num_shards = self._plan, self._plan.num_shards
        out = formats.get(plan.format)
        encoded = records | "Encode" >> beam.MapTuple(lambda key, value: (key, out.encode(value)))
        sizes = encoded | "RecordBytes" >> beam.MapTuple(lambda _, value: formats.record_size(value))
        count = (global_combine(sizes, "TotalBytes", sum)
                 | "ShardCount" >> beam.Map(lambda total: shard_count(num_shards, total)))
        side = {}
        if out.NEEDS_SCHEMA and self._schema is None:
            side["inferred"] = side_combine(encoded, "InferSchema", InferSchemaCombineFn())
        keyed = encoded | "AssignShards" >> beam.Map(
            lambda kv, n: (shard_of(kv[0], n), kv), AsSingleton(count))
        every_shard = count | "EveryShard" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])
        return ((keyed, every_shard)
                | "AllShardEntries" >> beam.Flatten()
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(
                    WriteShardDoFn(self._directory, self._kind, plan.format, plan.suffix,
                                   plan.codec, self._schema), AsSingleton(count), **side))


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
        return (selected
                | "Fetch" >> FetchSelected(plan.source_format, self._text, self._id_field)
                | "WriteShards" >> WriteShards(self._staging, "selected", plan, plan.fixed_schema))


class WriteRejected(beam.PTransform):
    """PCollection[DeadLetter] -> PCollection[str] (staged ``rejected-*`` files): rows of
    (source, position, reason, detail, record) in the output format."""

    def __init__(self, plan: OutputPlan, staging: str):
        super().__init__()
        self._plan, self._staging = plan, staging

    def expand(self, rejected):
        plan = self._plan
        return (rejected
                | "Rows" >> beam.Map(lambda d: ((d.source, d.position), formats.dead_letter_row(d)))
                | "WriteShards" >> WriteShards(self._staging, "rejected", plan,
                                               formats.get(plan.format).dead_letter_schema()))
