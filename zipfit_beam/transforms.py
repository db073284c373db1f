"""The Beam transforms of ZIP-FIT selection. Thin: the maths is in ``ncd``/``records``.

    files --ReadDocuments--> Document (+ DeadLetter)
          --ScoreDocuments(targets side input)--> ScoredDocument
          --SelectTopK--> ScoredDocument (the K best) + threshold key

``ZipFitSelect`` chains them; ``pipeline.build_pipeline`` adds the writers.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, AsSingleton, PCollection
from apache_beam.utils import shared

from zipfit_beam.io import READ_COUNT_TAG, REJECTED_TAG, ParseDocumentDoFn, ReadRecordsDoFn, needed_fields
from zipfit_beam.ncd import TargetSet
from zipfit_beam.records import (DeadLetter, Document, RankKey, RawRecord, RowRecord,
                                 ScoredDocument, is_selected, rank_key, threshold_from_top)
from zipfit_beam.templates import TextSpec, as_text_spec


class ReadResult(NamedTuple):
    documents: PCollection  # PCollection[Document]
    rejected: PCollection  # PCollection[DeadLetter]
    read: PCollection  # PCollection[int]: a single count of records read


class ReadDocuments(beam.PTransform):
    """PBegin -> ReadResult. Reads a resolved file list (paths, whose format follows their
    name, or ``(path, format)`` pairs: JSONL, Parquet, Avro) record by record and parses
    each record; files are spread over workers before reading. Parquet files are read
    only in the columns the text (a field name or a TextSpec) and the id need."""

    def __init__(self, files: Sequence, text: Union[str, TextSpec], id_field: str):
        super().__init__()
        self._files = [tuple(f) if not isinstance(f, str) else f for f in files]
        self._text, self._id_field = as_text_spec(text), id_field

    def expand(self, pbegin):
        lines = (pbegin
                 | "ListFiles" >> beam.Create(self._files)
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadLines" >> beam.ParDo(ReadRecordsDoFn(needed_fields(self._text, self._id_field)))
                 .with_output_types(Union[RawRecord, RowRecord])
                 .with_outputs(REJECTED_TAG, READ_COUNT_TAG, main="records"))
        read_count = lines[READ_COUNT_TAG] | "CountRead" >> beam.CombineGlobally(sum)
        parsed = (lines.records
                  | "Parse" >> beam.ParDo(ParseDocumentDoFn(self._text, self._id_field))
                  .with_output_types(Document).with_outputs(REJECTED_TAG, main="documents"))
        rejected = ((lines[REJECTED_TAG], parsed[REJECTED_TAG])
                    | "AllRejected" >> beam.Flatten().with_output_types(DeadLetter))
        return ReadResult(parsed.documents, rejected, read_count)


def _prepare_targets(targets: Sequence[Document], compressor: str, level: int) -> TargetSet:
    # Side-input order is not defined; file order is, and the float sum follows it.
    ordered = sorted(targets, key=lambda d: (d.source, d.position))
    return TargetSet([d.text.encode("utf-8") for d in ordered], compressor, level)


def _fingerprint(targets: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in sorted(targets, key=lambda d: (d.source, d.position)):
        h.update(d.text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class _Holder:
    """A weak-referenceable box for ``shared.Shared``."""

    def __init__(self, value):
        self.value = value


class ScoreBatchDoFn(beam.DoFn):
    """List[Document] + targets side input -> one ScoredDocument per document.

    The prepared TargetSet (target bytes and their compressed lengths) is built once per
    worker process and shared by its threads; a batch is split over ``threads`` threads
    (the C kernel and zlib release the GIL)."""

    def __init__(self, compressor: str, level: int, threads: int):
        self._compressor, self._level, self._threads = compressor, level, threads
        self._shared = shared.Shared()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._targets_seen, self._target_set = None, None
        self._scored = Metrics.counter("zipfit", "scored")

    def setup(self):
        if self._threads > 1:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="zipfit-score")

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown()

    def process(self, batch: List[Document], targets: List[Document]):
        if targets is not self._targets_seen:  # side input lists are reused across batches
            self._targets_seen = targets
            self._target_set = self._shared.acquire(
                lambda: _Holder(_prepare_targets(targets, self._compressor, self._level)),
                tag=_fingerprint(targets)).value
        target_set = self._target_set
        texts = [d.text.encode("utf-8") for d in batch]
        if self._pool is None or len(texts) < 2:
            scores = [target_set.alignment(t) for t in texts]
        else:
            step = -(-len(texts) // self._threads)
            chunks = [texts[i:i + step] for i in range(0, len(texts), step)]
            scores = [s for part in self._pool.map(
                lambda chunk: [target_set.alignment(t) for t in chunk], chunks) for s in part]
        self._scored.inc(len(batch))
        for d, score in zip(batch, scores):
            yield ScoredDocument(d.id, score, d.source, d.position)


class ScoreDocuments(beam.PTransform):
    """PCollection[Document] -> PCollection[ScoredDocument], scored against ``targets``
    (a PCollection[Document], used as a side input)."""

    def __init__(self, targets: PCollection, compressor: str = "gzip", level: int = 1,
                 threads: int = 1, batch_size: int = 64):
        super().__init__()
        self._targets = targets
        self._compressor, self._level = compressor, level
        self._threads, self._batch_size = threads, batch_size

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
                | "Score" >> beam.ParDo(ScoreBatchDoFn(self._compressor, self._level, self._threads),
                                        AsList(self._targets)).with_output_types(ScoredDocument))


class Selection(NamedTuple):
    selected: PCollection  # PCollection[ScoredDocument]
    threshold: PCollection  # singleton PCollection[Optional[RankKey]]


def _keep(doc: ScoredDocument, threshold: Optional[RankKey]) -> bool:
    return is_selected(rank_key(doc), threshold)


class SelectTopK(beam.PTransform):
    """PCollection[ScoredDocument] -> Selection: the K best documents by (score desc, id asc).

    Only small ``(-score, id, source, position)`` keys go through the global Top-K
    combiner; the documents themselves stay where they are and are filtered against the
    K-th key (a singleton side input). Keys are unique, so exactly min(K, N) are kept."""

    def __init__(self, k: int):
        super().__init__()
        self._k = k

    def expand(self, scored):
        threshold = (scored
                     | "RankKeys" >> beam.Map(rank_key)
                     | "TopKeys" >> beam.combiners.Top.Smallest(self._k)
                     | "KthKey" >> beam.Map(threshold_from_top, self._k))
        selected = scored | "KeepTopK" >> beam.Filter(_keep, AsSingleton(threshold))
        return Selection(selected, threshold)


class ZipFitResult(NamedTuple):
    scored: PCollection  # PCollection[ScoredDocument], every scored document
    selected: PCollection  # PCollection[ScoredDocument], the selection
    rejected: PCollection
    threshold: PCollection
    read: PCollection


class ZipFitSelect(beam.PTransform):
    """PBegin -> ZipFitResult: read, parse, score against ``targets`` and select the top-K
    (``scored``/``selected``: small ScoredDocument keys; ``writers.WriteSelected`` fetches
    the selected records from their files)."""

    def __init__(self, files: Sequence, targets: Sequence[Document], top_k: int,
                 text_field: Union[str, TextSpec] = "text", id_field: str = "id", compressor: str = "gzip",
                 level: int = 1, threads: int = 1, batch_size: int = 64):
        super().__init__()
        self._files, self._targets, self._k = files, list(targets), top_k
        self._fields = (text_field, id_field)
        self._score_args = dict(compressor=compressor, level=level, threads=threads,
                                batch_size=batch_size)

    def expand(self, pbegin):
        read = pbegin | "ReadSources" >> ReadDocuments(self._files, *self._fields)
        targets = pbegin | "CreateTargets" >> beam.Create(self._targets).with_output_types(Document)
        scored = read.documents | "ScoreDocuments" >> ScoreDocuments(targets, **self._score_args)
        selection = scored | "SelectTopK" >> SelectTopK(self._k)
        return ZipFitResult(scored, selection.selected, read.rejected, selection.threshold, read.read)
