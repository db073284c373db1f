"""Listing and opening files through Beam's ``FileSystems`` (local paths, gs://, ...), in
the launcher and on workers.

A source is a ``(path, format name)`` pair; the format follows the file's name unless
``--format`` sets it (see ``zipfit_beam.formats``).
"""

from __future__ import annotations

import logging
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Dict, List, Sequence, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from zipfit_beam import formats

__all__ = ["InputFile", "resolve_inputs", "resolve_sources", "open_file", "create_file",
           "read_headers"]

_LOG = logging.getLogger(__name__)

InputFile = Tuple[str, str]  # (path, format name)


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


def resolve_sources(patterns: Sequence[str], fmt: str = "auto") -> List[InputFile]:
    """Source patterns -> sorted (path, format) pairs; the format follows each file's name
    unless ``fmt`` (``--format``) sets it. Fails before the job starts on a pattern that
    matches nothing or a format that cannot be a source."""
    if fmt != "auto" and fmt not in formats.SOURCE_FORMATS:
        raise ValueError(f"--format must be auto or one of {', '.join(formats.SOURCE_FORMATS)}")
    return [(path, formats.detect_format(path) if fmt == "auto" else fmt)
            for path in resolve_inputs(patterns, "--source")]


def open_file(path: str) -> BinaryIO:
    """Open ``path`` as stored (no decompression: each format decompresses what it reads,
    so that a damaged stream is an error rather than a silent short read)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def create_file(path: str) -> BinaryIO:
    """Create ``path`` for writing bytes as given (each format compresses its own shards)."""
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_headers(files: Sequence[InputFile], threads: int = 16) -> Dict[str, List[Tuple[str, Any]]]:
    """Format name -> [(path, schema)] for every source whose format has a header (Parquet
    footer, Avro header); the schema is None for a file whose header cannot be read (the
    job turns that file into a ``corrupt_file`` dead letter). Read in parallel threads."""
    with_header = [(p, f) for p, f in files if formats.get(f).HEADER]

    def header(file: InputFile):
        path, fmt = file
        try:
            with open_file(path) as f:
                return fmt, path, formats.get(fmt).schema(f)
        except Exception as e:
            _LOG.warning("%s: header unreadable: %s", path, e)
            return fmt, path, None

    out: Dict[str, List[Tuple[str, Any]]] = {}
    if with_header:
        with ThreadPoolExecutor(max(1, min(threads, len(with_header)))) as pool:
            for fmt, path, schema in pool.map(header, with_header):
                out.setdefault(fmt, []).append((path, schema))
    return out
