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

from zipfit_beam.parsing import parse_record
from zipfit_beam.records import DeadLetter, Document, RawRecord

_LOG = logging.getLogger(__name__)

REJECTED_TAG = "rejected"
MANIFEST_NAME = "manifest.json"
OUTPUT_PREFIXES = ("selected-", "rejected-")
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


class ReadLinesDoFn(beam.DoFn):
    """file path -> RawRecord per line; a file that fails mid-read (a corrupt gzip member,
    a truncated stream) yields one ``corrupt_file`` dead letter at the failing line, on the
    ``rejected`` tag, after the records that were readable."""

    def __init__(self):
        self._read = Metrics.counter("zipfit", "read")

    def process(self, path: str):
        position = 0
        try:
            for record in iter_records(path):
                position = record.position
                self._read.inc()
                yield record
        except Exception as e:  # zlib.error, EOFError, OSError, ...
            _LOG.warning("%s: unreadable after line %d: %s", path, position, e)
            self._read.inc()
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, DeadLetter(
                path, position + 1, "corrupt_file", f"{type(e).__name__}: {e}", b""))


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
    patterns = [posixpath.join(output_dir, "*"), posixpath.join(output_dir, SCORES_DIR, "*")]
    names = []
    for pattern in patterns:
        try:
            names += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:
            pass
    return sorted(p for p in names if posixpath.basename(p) == MANIFEST_NAME
                  or posixpath.basename(p).startswith(OUTPUT_PREFIXES)
                  or posixpath.basename(posixpath.dirname(p)) == SCORES_DIR)


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
