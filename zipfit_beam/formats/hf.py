"""Target files only ``datasets`` reads: ``.csv``, ``.tsv``, ``.arrow``, ``.txt`` (or any file
with ``--target-format hf``), through ``datasets.load_dataset(<builder>, data_files=...)``.
Targets only, and reading only: the launcher loads them, never a worker. Pure: no Beam.
Records are ``RowRecord(path, row index from 0, row)``.

The Hub (``hf:NAME``) and ``save_to_disk`` directories are not files; ``io.hf`` reads them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from typing import BinaryIO, Iterator, Optional, Sequence

from zipfit_beam.formats.base import (HEAD_BYTES, Batch, batched, measure_value, safe_row_json,
                                      strip_compression, too_large)
from zipfit_beam.records import RowRecord

NAME = "hf"
LABEL = "Hugging Face datasets"
# Extensions only ``datasets`` reads; value: the ``load_dataset`` builder.
BUILDERS = {".csv": "csv", ".tsv": "csv", ".arrow": "arrow", ".txt": "text",
            ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet"}
ONLY_HERE = (".csv", ".tsv", ".arrow", ".txt")  # what no source format reads


def claims(name: str) -> bool:
    return posixpath.splitext(strip_compression(name))[1] in ONLY_HERE


def builder_for(path: str) -> str:
    ext = posixpath.splitext(strip_compression(posixpath.basename(path)))[1]
    if ext not in BUILDERS:
        raise ValueError(f"--target {path}: `datasets` has no builder for {ext or 'this name'}; "
                         f"known: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[ext]


def require_datasets(what: str):
    """The ``datasets`` module, or a clear error naming the extra that installs it."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"--target {what}: reading it needs Hugging Face `datasets`: "
                         "pip install 'zipfit-beam[hf]'") from None
    return datasets


@contextlib.contextmanager
def no_download_counts():
    """``load_dataset`` of local files sends a HEAD request to count downloads
    (``HF_UPDATE_DOWNLOAD_COUNTS``); a local load must not touch the network."""
    import datasets
    saved = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def rows(source: str, dataset) -> Iterator[RowRecord]:
    for position, row in enumerate(dataset):
        yield RowRecord(source, position, dict(row))


def read(f: BinaryIO, path: str, fields: Sequence[str] = (), batch_size: int = 1024,
         max_record_bytes: Optional[int] = None) -> Iterator[Batch]:
    """Rows of one data file. A file that is not local (gs://) is copied from ``f`` to a
    temporary local file first; ``.tsv`` is read tab-separated. A row whose strings hold
    more than ``max_record_bytes`` is a ``record_too_large`` dead letter (``datasets``
    has loaded it by then: targets are small, this only keeps the rule the same)."""
    datasets = require_datasets(path)
    builder = builder_for(path)
    kwargs = {"delimiter": "\t"} if strip_compression(path).endswith(".tsv") else {}
    tmp = None
    try:
        local = path
        if not os.path.exists(path):
            tmp = tempfile.mkdtemp(prefix="zipfit-target-")
            local = os.path.join(tmp, posixpath.basename(path))
            with open(local, "wb") as dst:
                shutil.copyfileobj(f, dst)
        with no_download_counts():
            loaded = datasets.load_dataset(builder, data_files=[local], split="train", **kwargs)
        records = [_checked(r, max_record_bytes) for r in rows(path, loaded)]
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    yield from batched(records, batch_size)


def _checked(record: RowRecord, max_bytes: Optional[int]):
    if max_bytes is None:
        return record
    size, _ = measure_value(record.row)
    if size <= max_bytes:
        return record
    head = {k: v[:HEAD_BYTES] if isinstance(v, (str, bytes)) else v for k, v in record.row.items()}
    return too_large(record.source, record.position, size, max_bytes, safe_row_json(head), "row")
