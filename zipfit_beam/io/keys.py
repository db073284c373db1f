"""Key tables: the scores of one source file as data, the spine of a selection job.

Scoring one source file writes, next to each other (in ``--cache DIR``, else in the run's
staging area):

    keys-<name>.parquet       one row per scored document: id, score, tokens, bytes,
                              source, position, group, contaminated_by
    rejected-<name>.parquet   one row per dead letter: source, position, reason, detail, record
    keys-<name>.done          the completion marker, written last and whole (a rename): the
                              file's fingerprint and its counts (read, scored, rejected by reason)

``<name>`` is a digest of the scoring fingerprint (targets, compressor, level, long-document
settings, tokenizer, guard, text/id/group fields, format, the scores version) and the
source file's fingerprint (path, size, modification time). A table whose marker exists is
complete; a table without one is a leftover of a killed run and is scored again. Every
later step (the cut's rounds, the keep-filter, the summary, the counts, ``--write-scores``,
``reselect``) reads the tables again, a batch at a time, so no step holds every key.

The source fingerprint is (path, size, mtime), the one ``make`` and ``rsync`` use: it
costs one metadata lookup per file, where a content hash would read the whole corpus
again on every scheduled run (the cost the cache exists to avoid). Object stores give a
new mtime to every new object generation, so a rewritten gs:// object misses. A file
rewritten in place with the same size within the filesystem's timestamp resolution would
be missed: replace files, do not edit them, or pass a new ``--cache``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import uuid
from typing import TYPE_CHECKING, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from zipfit_beam.io.files import create_file, open_file
from zipfit_beam.records import DeadLetter, Document, ScoredDocument
from zipfit_beam.select.columns import KeyColumns

if TYPE_CHECKING:
    from zipfit_beam.score.docwork import ResultColumns

__all__ = ["KeyTable", "key_schema", "rejected_schema", "file_fingerprint", "file_digest",
           "table_name", "find_table", "tables_in", "TableWriter", "KeyBatch", "read_key_batches",
           "read_keys", "read_rejected", "stage_table", "KEYS_GLOB"]

KEYS_GLOB = "keys-*.parquet"
MARKERS_GLOB = "keys-*.done"
ROW_GROUP_ROWS = 65536  # rows buffered before a row group is written


class KeyTable(NamedTuple):
    """One source file's key table: where it is and what its marker says."""
    source: str
    keys: str  # path of keys-<name>.parquet
    rejected: str  # path of rejected-<name>.parquet
    read: int
    scored: int
    reasons: Tuple[Tuple[str, int], ...]  # (reason, count) of its dead letters, sorted
    reused: bool = False  # found complete in the cache, not scored by this run

    @property
    def rejected_count(self) -> int:
        return sum(n for _, n in self.reasons)


def key_schema():
    import pyarrow as pa
    return pa.schema([("id", pa.string()), ("score", pa.float64()), ("tokens", pa.int64()),
                      ("bytes", pa.int64()), ("source", pa.string()), ("position", pa.int64()),
                      ("group", pa.string()), ("contaminated_by", pa.string())])


def rejected_schema():
    import pyarrow as pa
    return pa.schema([("source", pa.string()), ("position", pa.int64()), ("reason", pa.string()),
                      ("detail", pa.string()), ("record", pa.binary())])


def file_fingerprint(path: str) -> dict:
    """(path, size, mtime) of a source file, from one metadata lookup."""
    meta = FileSystems.match([path])[0].metadata_list[0]
    return {"path": path, "size": meta.size_in_bytes, "mtime": meta.last_updated_in_seconds}


def file_digest(path: str) -> str:
    """SHA-256 of a file's content (the tokenizer's, for the scoring fingerprint)."""
    h = hashlib.sha256()
    with open_file(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def table_name(scoring_fingerprint: str, source: dict) -> str:
    h = hashlib.sha256(scoring_fingerprint.encode())
    h.update(json.dumps(source, sort_keys=True).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _paths(directory: str, name: str) -> Tuple[str, str, str]:
    return (posixpath.join(directory, f"keys-{name}.parquet"),
            posixpath.join(directory, f"rejected-{name}.parquet"),
            posixpath.join(directory, f"keys-{name}.done"))


def _from_marker(marker: str, reused: bool = True) -> KeyTable:
    with open_file(marker) as f:
        done = json.loads(f.read())
    name = posixpath.basename(marker)[len("keys-"):-len(".done")]
    keys, rejected, _ = _paths(posixpath.dirname(marker), name)
    return KeyTable(done["source"]["path"], keys, rejected, done["read"], done["scored"],
                    tuple(sorted((r, n) for r, n in done["reasons"].items())), reused)


def find_table(directory: str, name: str) -> Optional[KeyTable]:
    """The complete table ``name`` in ``directory``, or None."""
    try:
        return _from_marker(_paths(directory, name)[2])
    except Exception:  # no marker: never written, or the run was killed before the end
        return None


def tables_in(directory: str) -> list:
    """Every complete key table in ``directory`` (a --write-scores run's ``scores/``), by
    source file."""
    matched = FileSystems.match([posixpath.join(directory, MARKERS_GLOB)])[0].metadata_list
    return sorted((_from_marker(m.path, reused=False) for m in matched), key=lambda t: t.source)


class TableWriter:
    """Writes one source file's key and dead-letter tables as the rows come, a row group at
    a time, then the marker; ``close`` returns the KeyTable. Parquet needs a seekable file,
    so each table is written to a local temporary file and copied (as the shard writer does)."""

    def __init__(self, directory: str, name: str, source: str, fingerprint: dict):
        import tempfile

        import pyarrow.parquet as pq
        self._paths, self._source, self._fingerprint = _paths(directory, name), source, fingerprint
        self._tmp = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
        self._writers = [pq.ParquetWriter(self._tmp[0], key_schema(), compression="zstd"),
                         pq.ParquetWriter(self._tmp[1], rejected_schema(), compression="zstd")]
        self._keys: Dict[str, list] = {name: [] for name in key_schema().names}  # columns
        self._rejected: list = []  # rows
        self.read, self.scored, self.reasons = 0, 0, {}

    def _flush_keys(self) -> None:
        import pyarrow as pa
        self._writers[0].write_table(pa.Table.from_pydict(self._keys, schema=key_schema()))
        for column in self._keys.values():
            column.clear()

    def _flush_rejected(self) -> None:
        import pyarrow as pa
        self._writers[1].write_table(pa.Table.from_pylist(self._rejected, schema=rejected_schema()))
        self._rejected.clear()

    def add_scored(self, docs: Sequence[Document], results: "ResultColumns") -> None:
        """Documents' keys from their results' columns (``DocumentWork.collect_columns``),
        no object per document."""
        columns = {"id": [d.id for d in docs], "score": results.scores, "tokens": results.tokens,
                   "bytes": results.sizes, "source": [d.source for d in docs],
                   "position": [d.position for d in docs], "group": [d.group for d in docs],
                   "contaminated_by": results.copied}
        for name, column in self._keys.items():
            column.extend(columns[name])
        self.scored += len(docs)
        self.read += len(docs)
        if len(self._keys["id"]) >= ROW_GROUP_ROWS:
            self._flush_keys()

    def add_rejected(self, dead: DeadLetter) -> None:
        self._rejected.append(dead._asdict())
        self.reasons[dead.reason] = self.reasons.get(dead.reason, 0) + 1
        self.read += 1
        if len(self._rejected) >= ROW_GROUP_ROWS:
            self._flush_rejected()

    def close(self) -> KeyTable:
        import shutil
        if self._keys["id"]:
            self._flush_keys()
        if self._rejected:
            self._flush_rejected()
        for which in (0, 1):
            self._writers[which].close()
            self._tmp[which].seek(0)
            with create_file(self._paths[which]) as out:
                shutil.copyfileobj(self._tmp[which], out, 1 << 20)
            self._tmp[which].close()
        marker = {"source": self._fingerprint, "read": self.read, "scored": self.scored,
                  "reasons": self.reasons}
        _write_whole(self._paths[2], json.dumps(marker, sort_keys=True).encode("utf-8"))
        return KeyTable(self._source, self._paths[0], self._paths[1], self.read, self.scored,
                        tuple(sorted(self.reasons.items())))


def _write_whole(path: str, data: bytes) -> None:
    """Write ``path`` so that it appears whole or not at all: a temporary name first, then a
    rename. A run killed while writing a marker leaves only ``*.partial``, which no glob of
    markers matches (a local file opened for writing exists, empty, before its bytes do)."""
    partial = f"{path}.{uuid.uuid4().hex}.partial"  # its own per writer: retries may race
    with create_file(partial) as out:
        out.write(data)
    FileSystems.rename([partial], [path])


READ_BATCH_ROWS = 8192  # rows of a key table read at a time


class KeyBatch:
    """A batch of a key table's rows: ``columns`` for the cut's array steps
    (``select.columns``), ``documents(rows)`` for ScoredDocuments of some or all rows."""

    def __init__(self, batch):
        self.batch = batch  # the pyarrow RecordBatch, in key_schema()

    @functools.cached_property
    def columns(self) -> KeyColumns:
        import numpy as np
        rest = [self.batch.column(name) for name in ("id", "source", "position")]
        return KeyColumns(self.array("score").astype(np.float64), self.array("tokens").astype(np.int64),
                          lambda i: tuple(c[i].as_py() for c in rest))

    @classmethod
    def of_documents(cls, docs: Sequence[ScoredDocument]) -> "KeyBatch":
        import pyarrow as pa
        return cls(pa.RecordBatch.from_pylist([_row(d) for d in docs], schema=key_schema()))

    def __len__(self) -> int:
        return self.batch.num_rows

    def array(self, name: str):
        """A numeric column as a numpy array."""
        return self.batch.column(name).to_numpy(zero_copy_only=False)

    def flagged(self):
        """Per row, whether the guard flagged it (``contaminated_by`` set), as numpy bools."""
        return _flagged(self.batch).to_numpy(zero_copy_only=False)

    def documents(self, rows: Optional[Sequence[int]] = None) -> List[ScoredDocument]:
        """The ScoredDocuments of ``rows`` (indices, in that order), or of every row."""
        if rows is not None and not len(rows):
            return []
        batch = self.batch if rows is None else self.batch.take(rows)
        cols = [batch.column(name).to_pylist() for name in
                ("id", "score", "source", "position", "tokens", "bytes", "group", "contaminated_by")]
        cols[-1] = [c or "" for c in cols[-1]]
        return list(map(ScoredDocument, *cols))


def _flagged(batch):
    import pyarrow.compute as pc
    return pc.fill_null(pc.not_equal(batch.column("contaminated_by"), ""), False)


def _row(d: ScoredDocument) -> dict:
    return {"id": d.id, "score": d.score, "tokens": d.tokens, "bytes": d.text_bytes,
            "source": d.source, "position": d.position, "group": d.group,
            "contaminated_by": d.contaminated_by}


def read_key_batches(table: KeyTable, only: Optional[str] = None) -> Iterator[KeyBatch]:
    """The rows of one table, ``READ_BATCH_ROWS`` at a time. ``only``: ``"clean"`` or
    ``"contaminated"`` keeps the rows that share no n-gram with a target, or those that do."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    with open_file(table.keys) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_BATCH_ROWS):
            if only is not None:
                flagged = _flagged(batch)
                batch = batch.filter(flagged if only == "contaminated" else pc.invert(flagged))
            if batch.num_rows:
                yield KeyBatch(batch)


def read_keys(table: KeyTable, only: Optional[str] = None) -> Iterator[ScoredDocument]:
    """The scored documents of one table (``only``: see ``read_key_batches``)."""
    for batch in read_key_batches(table, only):
        yield from batch.documents()


def read_rejected(table: KeyTable) -> Iterator[DeadLetter]:
    import pyarrow.parquet as pq
    with open_file(table.rejected) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                yield DeadLetter(row["source"], row["position"], row["reason"], row["detail"],
                                 row["record"])


def stage_table(table: KeyTable, directory: str, copy: bool) -> Iterator[str]:
    """The paths of a table's three files in ``directory`` (``--write-scores``), copied
    there first when ``copy`` (the table lives in the cache)."""
    marker = table.keys[:-len(".parquet")] + ".done"
    if copy:
        try:
            FileSystems.mkdirs(directory)  # local filesystems; object stores need none
        except Exception:  # already there
            pass
    for path in (table.keys, table.rejected, marker):
        target = posixpath.join(directory, posixpath.basename(path))
        if copy and path != target:
            if FileSystems.exists(target):
                FileSystems.delete([target])
            FileSystems.copy([path], [target])
        yield target
