"""Reading inputs into records, loading the target set, and publishing a job's output
atomically.

Files are opened through Beam's ``FileSystems`` (local paths, gs://, ...); the format
of an input follows its name or ``--format`` (see ``formats``) and the compression of a
JSONL input its extension (``.gz``, ``.zst``, ``.bz2``, ``.xz``). A JSONL line becomes a
``RawRecord(source=path, position=line number, data)``; a Parquet or Avro row a
``RowRecord(source=path, position=row index, row)`` with the fields scoring needs.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import posixpath
import os
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from zipfit_beam import formats, hf
from zipfit_beam.parsing import parse_object, parse_record
from zipfit_beam.records import DeadLetter, Document, RawRecord, RowRecord
from zipfit_beam.templates import TextSpec, as_text_spec

_LOG = logging.getLogger(__name__)

REJECTED_TAG = "rejected"
MANIFEST_NAME = "manifest.json"
OUTPUT_PREFIXES = ("selected-", "rejected-", "report")  # report.html, report-*.png
SUMMARY_NAME = "summary.json"  # the report's data, computed by the job
SCORES_DIR = "scores"  # DIR/scores/scores-*.parquet (select --write-scores)


def resolve_inputs(patterns: Sequence[str], what: str = "--source") -> List[str]:
    """Expand file patterns to a sorted, de-duplicated file list; fail early and clearly."""
    files = set()
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as e:  # BeamIOError for a missing bucket, bad scheme, ...
            raise FileNotFoundError(f"{what} {pattern!r}: cannot be listed: {e}") from e
        if not matched:
            raise FileNotFoundError(f"{what} {pattern!r} matches no files")
        for m in matched:
            if m.path.endswith("/"):
                continue
            if os.path.isdir(m.path):
                raise FileNotFoundError(f"{what} {pattern!r}: {m.path} is a directory; give a "
                                        f"glob of its files, e.g. {posixpath.join(m.path, '*.parquet')}")
            files.add(m.path)
    return sorted(files)


InputFile = Tuple[str, str]  # (path, format)


def resolve_sources(patterns: Sequence[str], fmt: str = "auto") -> List[InputFile]:
    """Source patterns -> sorted (path, format) pairs; the format follows each file's name
    unless ``fmt`` (``--format``) sets it. Fails before the job starts on a pattern that
    matches nothing or a format that cannot be a source."""
    if fmt != "auto" and fmt not in formats.SOURCE_FORMATS:
        raise ValueError(f"--format must be auto or one of {', '.join(formats.SOURCE_FORMATS)}")
    return [(path, formats.detect_format(path) if fmt == "auto" else fmt)
            for path in resolve_inputs(patterns, "--source")]


def open_file(path: str) -> BinaryIO:
    """Open ``path`` through Beam's FileSystems as stored (no decompression): the readers of
    Parquet and Avro need the bytes as written, and seeking."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_decompressed(path: str) -> BinaryIO:
    """Open ``path`` through Beam's FileSystems, decompressing by extension.

    Beam's own decompressing reader silently stops at a truncated or damaged gzip stream
    (measured on 2.77), which would drop records without a trace; the standard library
    readers raise instead, so we decompress with them."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    name = path.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    if name.endswith((".xz", ".lzma")):
        return lzma.LZMAFile(raw, mode="rb")
    if name.endswith((".zst", ".zstd")):
        return formats.open_zstd(raw)
    return raw


def iter_records(path: str) -> Iterator[RawRecord]:
    """Yield the lines of one file as RawRecords (line terminators stripped).

    Raises on a corrupt compressed stream; ``ReadRecordsDoFn`` turns that into a dead letter.
    """
    with open_decompressed(path) as f:
        yield from formats.iter_jsonl(f, path)


def iter_input(path: str, fmt: str, fields: Sequence[str]) -> Iterator[Union[RawRecord, RowRecord, DeadLetter]]:
    """Every record of one input file, as RawRecord (JSONL), RowRecord (Parquet, Avro; only
    ``fields`` kept) or DeadLetter (a damaged file, row group or row). Never raises for bad
    data: a file that fails mid-read ends with one ``corrupt_file`` dead letter at the first
    record not read, after the records that were readable."""
    if fmt == formats.JSONL:
        position = 0
        try:
            for record in iter_records(path):
                position = record.position
                yield record
        except Exception as e:  # zlib.error, EOFError, OSError, zstd errors, ...
            _LOG.warning("%s: unreadable after line %d: %s", path, position, e)
            yield DeadLetter(path, position + 1, "corrupt_file", f"{type(e).__name__}: {e}", b"")
        return
    try:
        f = open_file(path)
    except Exception as e:
        yield DeadLetter(path, 0, "corrupt_file", f"cannot be opened: {type(e).__name__}: {e}", b"")
        return
    with f:
        if fmt == formats.PARQUET:
            yield from formats.iter_parquet(f, path, fields)
        elif fmt == formats.AVRO:
            yield from formats.iter_avro(f, path, fields)
        else:
            raise ValueError(f"{path}: unknown source format {fmt!r}")


def needed_fields(text: Union[str, TextSpec], id_field: str,
                  group_field: Optional[str] = None) -> List[str]:
    """The fields a columnar reader must read: the text field(s), the id and the group."""
    group = (group_field,) if group_field else ()
    return list(dict.fromkeys(as_text_spec(text).fields + (id_field,) + group))


READ_COUNT_TAG = "read_count"


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

    def process(self, file: Union[str, InputFile]):
        path, fmt = (file, formats.detect_format(file)) if isinstance(file, str) else file
        count = 0
        for record in iter_input(path, fmt, self._fields):
            count += 1
            yield route_dead_letter(record)
        self._read.inc(count)
        yield beam.pvalue.TaggedOutput(READ_COUNT_TAG, count)


def parse_any(record: Union[RawRecord, RowRecord], text: Union[str, TextSpec],
              id_field: str, group_field: Optional[str] = None) -> Union[Document, DeadLetter]:
    """A JSONL line or a decoded row -> Document or DeadLetter (which carries the row as
    JSON, so the dead-letter file shows what was rejected)."""
    if isinstance(record, RawRecord):
        return parse_record(record, text, id_field, group_field)
    parsed = parse_object(record.row, record.source, record.position, b"", text, id_field,
                          group_field)
    if isinstance(parsed, DeadLetter):
        return parsed._replace(record=formats.row_json(record.row))
    return parsed


class ParseDocumentDoFn(beam.DoFn):
    """RawRecord / RowRecord -> Document, or a DeadLetter with its reason on the
    ``rejected`` tag. ``text``: a field name or a TextSpec (field or template);
    ``group_field``: the field that becomes ``Document.group`` (None: none)."""

    def __init__(self, text: Union[str, TextSpec], id_field: str, group_field: Optional[str] = None):
        self._text, self._id_field, self._group_field = as_text_spec(text), id_field, group_field

    def process(self, raw: Union[RawRecord, RowRecord]):
        yield route_dead_letter(parse_any(raw, self._text, self._id_field, self._group_field))


def load_targets(patterns: Sequence[str], text: Union[str, TextSpec], id_field: str,
                 fmt: str = "auto") -> List[Document]:
    """Read and parse the (small) target set in the launcher, so a broken target file is a
    clear error before the job starts rather than a silently smaller target set.

    A pattern is a file glob (JSONL, Parquet, Avro; .csv/.tsv/.arrow/.txt through
    ``datasets``), a directory written by ``datasets``' ``save_to_disk``, or
    ``hf:NAME[:CONFIG][:SPLIT]`` for a dataset on the Hugging Face Hub. ``fmt`` (from
    ``--target-format``) overrides the format of matched files."""
    if fmt != "auto" and fmt not in formats.TARGET_FORMATS:
        raise ValueError(f"--target-format must be auto or one of {', '.join(formats.TARGET_FORMATS)}")
    spec = as_text_spec(text)
    fields = needed_fields(spec, id_field)
    docs, problems = [], []

    def add(record):
        parsed = record if isinstance(record, DeadLetter) else parse_any(record, spec, id_field)
        if isinstance(parsed, DeadLetter):
            problems.append(f"{parsed.source}:{parsed.position}: {parsed.reason} ({parsed.detail})")
        else:
            docs.append(parsed)

    for pattern in patterns:
        if hf.is_hf_target(pattern):
            for record in hf.load_rows(pattern):
                add(record)
            continue
        for path in resolve_inputs([pattern], "--target"):
            kind = formats.detect_format(path, targets=True) if fmt == "auto" else fmt
            if kind == formats.HF:
                for record in hf.load_file_rows(path, open_file):
                    add(record)
            else:
                for record in iter_input(path, kind, fields):
                    add(record)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"{len(problems)} target record(s) cannot be used:\n  {shown}")
    if not docs:
        raise ValueError("the target set is empty")
    return docs


def read_headers(files: Sequence[InputFile], fmt: str, threads: int = 16) -> List[Tuple[str, object]]:
    """(path, schema) of every ``fmt`` source: the Parquet footer's Arrow schema or the Avro
    header's writer schema; None for a file whose header cannot be read (the job turns
    that file into a ``corrupt_file`` dead letter). Footers are read in parallel threads."""
    read = formats.parquet_schema if fmt == formats.PARQUET else formats.avro_schema
    paths = [p for p, f in files if f == fmt]

    def header(path):
        try:
            with open_file(path) as f:
                return path, read(f)
        except Exception as e:
            _LOG.warning("%s: header unreadable: %s", path, e)
            return path, None

    with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as pool:
        return list(pool.map(header, paths))


def existing_outputs(output_dir: str) -> List[str]:
    """Files of a previous run in ``output_dir`` (shards or manifest)."""
    patterns = [posixpath.join(output_dir, "*"), posixpath.join(output_dir, SCORES_DIR, "*")]
    names = []
    for pattern in patterns:
        try:
            names += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:
            pass
    return sorted(p for p in names if posixpath.basename(p) in (MANIFEST_NAME, SUMMARY_NAME)
                  or posixpath.basename(p).startswith(OUTPUT_PREFIXES)
                  or posixpath.basename(posixpath.dirname(p)) == SCORES_DIR)


class WriteJsonDoFn(beam.DoFn):
    """dict -> the JSON file at ``path`` (any Beam filesystem), with ``extra`` entries
    added; emits the path."""

    def __init__(self, path: str, extra: Optional[dict] = None, indent: Optional[int] = 2):
        self._path, self._extra, self._indent = path, dict(extra or {}), indent

    def process(self, value: dict):
        text = json.dumps(dict(value, **self._extra), indent=self._indent, sort_keys=True)
        with FileSystems.create(self._path) as f:
            f.write(text.encode("utf-8"))
        yield self._path


def staged_to_final(path: str, staging_dir: str, output_dir: str) -> str:
    """A staged file's final path: the same path relative to the output directory."""
    prefix = staging_dir.rstrip("/") + "/"
    relative = path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path)
    return posixpath.join(output_dir, relative)


class PublishOutputDoFn(beam.DoFn):
    """Runs once, after every shard is written to the staging directory: removes a previous
    run's output (only when overwriting was allowed), moves the staged shards to their final
    names and writes ``manifest.json`` last. Until then nothing appears under final names,
    so a reader that waits for the manifest never sees half an output."""

    def __init__(self, output_dir: str, staging_dir: str, manifest: dict):
        self._output_dir, self._staging_dir, self._manifest = output_dir, staging_dir, manifest

    def process(self, _unused, staged_files: Iterable[str], **facts):
        staged = sorted(set(staged_files))
        finals = [staged_to_final(p, self._staging_dir, self._output_dir) for p in staged]
        old = [p for p in existing_outputs(self._output_dir) if p not in finals]
        if old:
            FileSystems.delete(old)
        for directory in sorted({posixpath.dirname(p) for p in finals} - {self._output_dir}):
            try:
                FileSystems.mkdirs(directory)  # local filesystems; object stores need none
            except Exception:  # already there
                pass
        for src, dst in zip(staged, finals):
            if FileSystems.exists(src):  # a retried bundle may have moved it already
                if FileSystems.exists(dst):
                    FileSystems.delete([dst])
                FileSystems.rename([src], [dst])
        manifest = dict(self._manifest, **facts)
        manifest["outputs"] = sorted(p[len(self._output_dir) + 1:] for p in finals)
        with FileSystems.create(posixpath.join(self._output_dir, MANIFEST_NAME)) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        try:
            FileSystems.delete([self._staging_dir])
        except Exception:  # already gone, or an object store without directories
            pass
        yield posixpath.join(self._output_dir, MANIFEST_NAME)
