"""Reading sources into documents, with every bad record routed to dead letters.

    (path, format) --ReadRecordsDoFn--> RawRecord (JSONL line) / RowRecord (Parquet, Avro
                   row: only the fields scoring needs) + DeadLetter (damaged file, row
                   group or row) + per-file read counts
    --ParseDocumentDoFn--> Document + DeadLetter (with its reason; see ``io.parse``)

``ReadDocuments`` chains them over a resolved file list. ``max_record_bytes`` (from
``--max-record-bytes``) travels as a plain int into each format's reader, which turns a
larger record into a ``record_too_large`` dead letter without holding it. No record can
fail the job: a reader that raises ends its file with one dead letter, and parsing never
raises (``io.parse.parse_any``; ``ParseDocumentDoFn`` catches what might still escape).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from zipfit_beam import formats
from zipfit_beam.combine import global_combine
from zipfit_beam.io.files import InputFile, open_file
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES, Batch, reader_failure
from zipfit_beam.io.parse import failed, needed_fields, parse_any
from zipfit_beam.io.templates import TextSpec, as_text_spec
from zipfit_beam.records import DeadLetter, Document, RawRecord, RowRecord

__all__ = ["REJECTED_TAG", "READ_COUNT_TAG", "iter_input", "iter_input_batches", "route_dead_letter",
           "ReadRecordsDoFn", "ParseDocumentDoFn", "ReadResult", "ReadDocuments"]

REJECTED_TAG = "rejected"
READ_COUNT_TAG = "read_count"
READ_BATCH = 1024  # records a format reader hands over at a time


def iter_input_batches(path: str, fmt: str, fields: Sequence[str],
                       max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES,
                       ) -> Iterator[Batch]:
    """Every record of one input file (only ``fields`` kept of a row), or a DeadLetter, in
    the format reader's batches; a record over ``max_record_bytes`` (None: no limit) is a
    ``record_too_large`` one. Never raises for bad data: a file that cannot be opened is one
    ``corrupt_file`` dead letter, a file that fails mid-read ends with one after the records
    that were readable, and so does a reader that raises (an ``unparseable`` one: a reader's
    bug, never a failed job)."""
    try:
        f = open_file(path)
    except Exception as e:
        yield [DeadLetter(path, 0, "corrupt_file", f"cannot be opened: {type(e).__name__}: {e}", b"")]
        return
    last = None
    with f:
        try:
            for batch in formats.get(fmt).read(f, path, fields, READ_BATCH, max_record_bytes):
                if batch:
                    last = batch[-1].position
                    yield batch
                del batch  # handed on, not also held here
        except Exception as e:
            position = 0 if last is None else last + 1
            yield [DeadLetter(path, position, "unparseable",
                              f"the {fmt} reader failed from here on: {reader_failure(e)}", b"")]


def iter_input(path: str, fmt: str, fields: Sequence[str],
               max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES,
               ) -> Iterator[Union[RawRecord, RowRecord, DeadLetter]]:
    """``iter_input_batches``' records one at a time."""
    for batch in iter_input_batches(path, fmt, fields, max_record_bytes):
        batch.reverse()
        while batch:  # popped, so that a record handed on is not also held here
            record = batch.pop()
            yield record
            del record


def route_dead_letter(element):
    """A DeadLetter goes to the ``rejected`` tag and is counted (total and by reason);
    anything else stays on the main output."""
    if not isinstance(element, DeadLetter):
        return element
    Metrics.counter("zipfit", "rejected").inc()
    Metrics.counter("zipfit", f"rejected_{element.reason}").inc()
    return beam.pvalue.TaggedOutput(REJECTED_TAG, element)


class ReadRecordsDoFn(beam.DoFn):
    """(path, format) -> RawRecord / RowRecord per record; dead letters from the reader
    (damaged files and row groups, undecodable rows) go to the ``rejected`` tag. Every
    element emitted counts as one record read; the file's count goes to the ``read_count``
    tag (counting there keeps the record stream single-consumer, so no runner has to
    buffer it)."""

    def __init__(self, fields: Sequence[str],
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        self._fields = list(fields)
        self._max_record_bytes = max_record_bytes
        self._read = Metrics.counter("zipfit", "read")

    def process(self, file: InputFile):
        path, fmt = file
        count = 0
        for record in iter_input(path, fmt, self._fields, self._max_record_bytes):
            count += 1
            yield route_dead_letter(record)
        self._read.inc(count)
        yield beam.pvalue.TaggedOutput(READ_COUNT_TAG, count)


class ParseDocumentDoFn(beam.DoFn):
    """RawRecord / RowRecord -> Document, or a DeadLetter with its reason on the
    ``rejected`` tag. ``text``: a field name or a TextSpec (field or template);
    ``group_field``: the field that becomes ``Document.group`` (None: none)."""

    def __init__(self, text: Union[str, TextSpec], id_field: str, group_field: Optional[str] = None):
        self._text, self._id_field, self._group_field = as_text_spec(text), id_field, group_field

    def process(self, raw: Union[RawRecord, RowRecord]):
        try:  # parse_any does not raise; this keeps one record from ever failing the job
            parsed = parse_any(raw, self._text, self._id_field, self._group_field)
        except Exception as e:
            parsed = failed(raw, e)
        yield route_dead_letter(parsed)


class ReadResult(NamedTuple):
    documents: PCollection  # PCollection[Document]
    rejected: PCollection  # PCollection[DeadLetter]
    read: PCollection  # PCollection[int]: a single count of records read


class ReadDocuments(beam.PTransform):
    """PBegin -> ReadResult. Reads a resolved file list (paths, whose format follows their
    name, or ``(path, format)`` pairs) record by record and parses each record; files are
    spread over workers before reading. Columnar files are read only in the columns the
    text (a field name or a TextSpec), the id and the group (``group_field``, kept as
    ``Document.group``) need. A record over ``max_record_bytes`` (None: no limit) is a
    ``record_too_large`` dead letter."""

    def __init__(self, files: Sequence, text: Union[str, TextSpec], id_field: str,
                 group_field: Optional[str] = None,
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self._files = [(f, formats.detect_format(f)) if isinstance(f, str) else tuple(f) for f in files]
        self._text, self._id_field, self._group_field = as_text_spec(text), id_field, group_field
        self._max_record_bytes = max_record_bytes

    def expand(self, pbegin):
        lines = (pbegin
                 | "ListFiles" >> beam.Create(self._files)
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadLines" >> beam.ParDo(ReadRecordsDoFn(
                     needed_fields(self._text, self._id_field, self._group_field),
                     self._max_record_bytes))
                 .with_output_types(Union[RawRecord, RowRecord])
                 .with_outputs(REJECTED_TAG, READ_COUNT_TAG, main="records"))
        read_count = global_combine(lines[READ_COUNT_TAG], "CountRead", sum)
        parsed = (lines.records
                  | "Parse" >> beam.ParDo(ParseDocumentDoFn(self._text, self._id_field, self._group_field))
                  .with_output_types(Document).with_outputs(REJECTED_TAG, main="documents"))
        rejected = ((lines[REJECTED_TAG], parsed[REJECTED_TAG])
                    | "AllRejected" >> beam.Flatten().with_output_types(DeadLetter))
        return ReadResult(parsed.documents, rejected, read_count)
