"""Reading JSONL shards into records, and publishing a job's output atomically.

Files are opened through Beam's ``FileSystems`` (local paths, gs://, ...); the
compression of an input follows its extension (``.gz``, ``.zst``, ``.bz2``, ...).
Each line becomes a ``RawRecord(source=path, position=line number, data)``.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import posixpath
from typing import BinaryIO, Iterable, Iterator, List, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from zipfit_beam.parsing import parse_record, with_score
from zipfit_beam.records import DeadLetter, Document, RawRecord

_LOG = logging.getLogger(__name__)

REJECTED_TAG = "rejected"
MANIFEST_NAME = "manifest.json"
OUTPUT_PREFIXES = ("selected-", "rejected-")


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
        files.update(m.path for m in matched if not m.path.endswith("/"))
    return sorted(files)


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
    return raw


def iter_records(path: str) -> Iterator[RawRecord]:
    """Yield the lines of one file as RawRecords (line terminators stripped).

    Raises on a corrupt compressed stream; ``ReadLinesDoFn`` turns that into a dead letter.
    """
    with open_decompressed(path) as f:
        position = 0
        for line in iter(f.readline, b""):
            position += 1
            yield RawRecord(path, position, line.rstrip(b"\r\n"))


READ_COUNT_TAG = "read_count"


class ReadLinesDoFn(beam.DoFn):
    """file path -> RawRecord per line; a file that fails mid-read (a corrupt gzip member,
    a truncated stream) yields one ``corrupt_file`` dead letter at the failing line, on the
    ``rejected`` tag, after the records that were readable. The number of records read from
    the file (the dead letter included) goes to the ``read_count`` tag: counting there keeps
    the record stream single-consumer, so runners need not buffer it."""

    def __init__(self):
        self._read = Metrics.counter("zipfit", "read")

    def process(self, path: str):
        position = 0
        try:
            for record in iter_records(path):
                position = record.position
                yield record
        except Exception as e:  # zlib.error, EOFError, OSError, ...
            _LOG.warning("%s: unreadable after line %d: %s", path, position, e)
            position += 1
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, DeadLetter(
                path, position, "corrupt_file", f"{type(e).__name__}: {e}", b""))
        self._read.inc(position)
        yield beam.pvalue.TaggedOutput(READ_COUNT_TAG, position)


class ParseDocumentDoFn(beam.DoFn):
    """RawRecord -> Document, or a DeadLetter with its reason on the ``rejected`` tag."""

    def __init__(self, text_field: str, id_field: str):
        self._text_field, self._id_field = text_field, id_field

    def process(self, raw: RawRecord):
        parsed = parse_record(raw, self._text_field, self._id_field)
        if isinstance(parsed, DeadLetter):
            Metrics.counter("zipfit", "rejected").inc()
            Metrics.counter("zipfit", f"rejected_{parsed.reason}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, parsed)
        else:
            yield parsed


class FetchRecordsDoFn(beam.DoFn):
    """(source file, [(position, id, score), ...]) -> the selected records of that file, each
    a JSON line with ``zipfit_score`` spliced in. Reads the file once, in order; checks that
    each fetched record still parses to the id that was scored, so a source file that
    changed during the job is an error rather than a wrong selection."""

    def __init__(self, text_field: str, id_field: str):
        self._text_field, self._id_field = text_field, id_field

    def process(self, element):
        path, wanted = element
        by_position = {position: (doc_id, score) for position, doc_id, score in wanted}
        found = 0
        for raw in iter_records(path):
            if raw.position in by_position:
                doc_id, score = by_position[raw.position]
                parsed = parse_record(raw, self._text_field, self._id_field)
                if getattr(parsed, "id", None) != doc_id:
                    raise RuntimeError(f"{path}:{raw.position} changed during the job "
                                       f"(scored as id {doc_id!r})")
                found += 1
                yield with_score(raw.data, score)
                if found == len(by_position):
                    return
        raise RuntimeError(f"{path}: {len(by_position) - found} selected records are missing; "
                           "the file changed during the job")


def load_targets(patterns: Sequence[str], text_field: str, id_field: str) -> List[Document]:
    """Read and parse the (small) target set in the launcher, so a broken target file is a
    clear error before the job starts rather than a silently smaller target set."""
    docs, problems = [], []
    for path in resolve_inputs(patterns, "--target"):
        try:
            for raw in iter_records(path):
                parsed = parse_record(raw, text_field, id_field)
                if isinstance(parsed, DeadLetter):
                    problems.append(f"{parsed.source}:{parsed.position}: {parsed.reason} ({parsed.detail})")
                else:
                    docs.append(parsed)
        except Exception as e:
            problems.append(f"{path}: unreadable: {e}")
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"{len(problems)} target record(s) cannot be used:\n  {shown}")
    if not docs:
        raise ValueError("the target set is empty")
    return docs


def existing_outputs(output_dir: str) -> List[str]:
    """Files of a previous run in ``output_dir`` (shards or manifest)."""
    pattern = posixpath.join(output_dir, "*")
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception:
        return []
    names = [m.path for m in found]
    return sorted(p for p in names if posixpath.basename(p) == MANIFEST_NAME
                  or posixpath.basename(p).startswith(OUTPUT_PREFIXES))


class PublishOutputDoFn(beam.DoFn):
    """Runs once, after every shard is written to the staging directory: removes a previous
    run's output (only when overwriting was allowed), moves the staged shards to their final
    names and writes ``manifest.json`` last. Until then nothing appears under final names,
    so a reader that waits for the manifest never sees half an output."""

    def __init__(self, output_dir: str, staging_dir: str, manifest: dict):
        self._output_dir, self._staging_dir, self._manifest = output_dir, staging_dir, manifest

    def process(self, _unused, staged_files: Iterable[str], **facts):
        staged = sorted(set(staged_files))
        finals = [posixpath.join(self._output_dir, posixpath.basename(p)) for p in staged]
        old = [p for p in existing_outputs(self._output_dir) if p not in finals]
        if old:
            FileSystems.delete(old)
        for src, dst in zip(staged, finals):
            if FileSystems.exists(src):  # a retried bundle may have moved it already
                if FileSystems.exists(dst):
                    FileSystems.delete([dst])
                FileSystems.rename([src], [dst])
        manifest = dict(self._manifest, **facts)
        manifest["outputs"] = sorted(posixpath.basename(p) for p in finals)
        with FileSystems.create(posixpath.join(self._output_dir, MANIFEST_NAME)) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        try:
            FileSystems.delete([self._staging_dir])
        except Exception:  # already gone, or an object store without directories
            pass
        yield posixpath.join(self._output_dir, MANIFEST_NAME)
