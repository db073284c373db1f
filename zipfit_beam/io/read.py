"""Reading sources into documents, with every bad record routed to dead letters.

    (path, format) --ReadRecordsDoFn--> RawRecord (JSONL line) / RowRecord (Parquet, Avro
                   row: only the fields scoring needs) + DeadLetter (damaged file, row
                   group or row) + per-file read counts
    --ParseDocumentDoFn--> Document + DeadLetter (with its reason; see ``io.parse``)

``ReadDocuments`` chains them over a resolved file list.
"""

from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection

from zipfit_beam import formats
from zipfit_beam.io.files import InputFile, open_file
from zipfit_beam.io.parse import parse_any
from zipfit_beam.io.templates import TextSpec, as_text_spec
from zipfit_beam.records import DeadLetter, Document, RawRecord, RowRecord

__all__ = ["REJECTED_TAG", "READ_COUNT_TAG", "iter_input", "needed_fields", "route_dead_letter",
           "ReadRecordsDoFn", "ParseDocumentDoFn", "ReadResult", "ReadDocuments"]

REJECTED_TAG = "rejected"
READ_COUNT_TAG = "read_count"
READ_BATCH = 1024  # records a format reader hands over at a time


def iter_input(path: str, fmt: str, fields: Sequence[str]) -> Iterator[Union[RawRecord, RowRecord, DeadLetter]]:
    """Every record of one input file (only ``fields`` kept of a row), or a DeadLetter.
    Never raises for bad data: a file that cannot be opened is one ``corrupt_file`` dead
    letter, a file that fails mid-read ends with one after the records that were readable."""
    try:
        f = open_file(path)
    except Exception as e:
        yield DeadLetter(path, 0, "corrupt_file", f"cannot be opened: {type(e).__name__}: {e}", b"")
        return
    with f:
        for batch in formats.get(fmt).read(f, path, fields, READ_BATCH):
            yield from batch


def needed_fields(text: Union[str, TextSpec], id_field: str,
                  group_field: Optional[str] = None) -> List[str]:
    """The fields a columnar reader must read: the text field(s), the id and the group."""
    group = (group_field,) if group_field else ()
    return list(dict.fromkeys(as_text_spec(text).fields + (id_field,) + group))


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

    def __init__(self, fields: Sequence[str]):
        self._fields = list(fields)
        self._read = Metrics.counter("zipfit", "read")

    def process(self, file: InputFile):
        path, fmt = file
        count = 0
        for record in iter_input(path, fmt, self._fields):
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
        yield route_dead_letter(parse_any(raw, self._text, self._id_field, self._group_field))


class ReadResult(NamedTuple):
    documents: PCollection  # PCollection[Document]
    rejected: PCollection  # PCollection[DeadLetter]
    read: PCollection  # PCollection[int]: a single count of records read


class ReadDocuments(beam.PTransform):
    """PBegin -> ReadResult. Reads a resolved file list (paths, whose format follows their
    name, or ``(path, format)`` pairs) record by record and parses each record; files are
    spread over workers before reading. Columnar files are read only in the columns the
    text (a field name or a TextSpec), the id and the group (``group_field``, kept as
    ``Document.group``) need."""

    def __init__(self, files: Sequence, text: Union[str, TextSpec], id_field: str,
                 group_field: Optional[str] = None):
        super().__init__()
        self._files = [(f, formats.detect_format(f)) if isinstance(f, str) else tuple(f) for f in files]
        self._text, self._id_field, self._group_field = as_text_spec(text), id_field, group_field

    def expand(self, pbegin):
        lines = (pbegin
                 | "ListFiles" >> beam.Create(self._files)
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadLines" >> beam.ParDo(ReadRecordsDoFn(
                     needed_fields(self._text, self._id_field, self._group_field)))
                 .with_output_types(Union[RawRecord, RowRecord])
                 .with_outputs(REJECTED_TAG, READ_COUNT_TAG, main="records"))
        read_count = lines[READ_COUNT_TAG] | "CountRead" >> beam.CombineGlobally(sum)
        parsed = (lines.records
                  | "Parse" >> beam.ParDo(ParseDocumentDoFn(self._text, self._id_field, self._group_field))
                  .with_output_types(Document).with_outputs(REJECTED_TAG, main="documents"))
        rejected = ((lines[REJECTED_TAG], parsed[REJECTED_TAG])
                    | "AllRejected" >> beam.Flatten().with_output_types(DeadLetter))
        return ReadResult(parsed.documents, rejected, read_count)
