"""The Beam transforms of ZIP-FIT selection. Thin: the maths is in ``ncd``/``records``.

    files --ReadDocuments--> Document (+ DeadLetter)
          --ScoreDocuments(targets side input)--> ScoredDocument
          --GuardContamination(target n-grams side input)--> clean + contaminated
          --SelectTopK--> ScoredDocument (the K best clean ones) + threshold key

``ZipFitSelect`` chains them; ``pipeline.build_pipeline`` adds the writers.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, AsSingleton, PCollection
from apache_beam.utils import shared

from zipfit_beam import contamination, progress
from zipfit_beam.io import REJECTED_TAG, ParseDocumentDoFn, ReadLinesDoFn
from zipfit_beam.ncd import TargetSet
from zipfit_beam.records import (ContaminationHit, DeadLetter, Document, RankKey, RawRecord,
                                 ScoredDocument, is_selected, rank_key, threshold_from_top)


class ReadResult(NamedTuple):
    documents: PCollection  # PCollection[Document]
    rejected: PCollection  # PCollection[DeadLetter]
    read: PCollection  # PCollection[int]: a single count of records read


class ReadDocuments(beam.PTransform):
    """PBegin -> ReadResult. Reads JSONL files (a resolved file list) line by line and
    parses each line; files are spread over workers before reading."""

    def __init__(self, files: Sequence[str], text_field: str, id_field: str):
        super().__init__()
        self._files, self._text_field, self._id_field = list(files), text_field, id_field

    def expand(self, pbegin):
        lines = (pbegin
                 | "ListFiles" >> beam.Create(self._files)
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadLines" >> beam.ParDo(ReadLinesDoFn()).with_output_types(RawRecord)
                 .with_outputs(REJECTED_TAG, main="records"))
        records = lines.records
        read_count = ((records, lines[REJECTED_TAG])
                      | "AllReadRecords" >> beam.Flatten()
                      | "CountRead" >> beam.combiners.Count.Globally())
        parsed = (records
                  | "Parse" >> beam.ParDo(ParseDocumentDoFn(self._text_field, self._id_field))
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
    (the C kernel and zlib release the GIL). With ``progress_interval`` > 0 each batch is
    reported to the process's progress reporter (local runs; see ``progress``)."""

    def __init__(self, compressor: str, level: int, threads: int, progress_interval: float = 0.0):
        self._compressor, self._level, self._threads = compressor, level, threads
        self._progress_interval = progress_interval
        self._progress: Optional[progress.ProgressReporter] = None
        self._shared = shared.Shared()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._targets_seen, self._target_set = None, None
        self._scored = Metrics.counter("zipfit", "scored")

    def setup(self):
        if self._progress_interval > 0:
            self._progress = progress.process_reporter(self._progress_interval)
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
        if self._progress is not None:
            self._progress.add(len(batch))
        for d, score in zip(batch, scores):
            yield ScoredDocument(d.id, score, d.source, d.position, d.record)


class ScoreDocuments(beam.PTransform):
    """PCollection[Document] -> PCollection[ScoredDocument], scored against ``targets``
    (a PCollection[Document], used as a side input)."""

    def __init__(self, targets: PCollection, compressor: str = "gzip", level: int = 1,
                 threads: int = 1, batch_size: int = 64, progress_interval: float = 0.0):
        super().__init__()
        self._targets = targets
        self._compressor, self._level = compressor, level
        self._threads, self._batch_size = threads, batch_size
        self._progress_interval = progress_interval

    def expand(self, documents):
        score = ScoreBatchDoFn(self._compressor, self._level, self._threads, self._progress_interval)
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
                | "Score" >> beam.ParDo(score, AsList(self._targets)).with_output_types(ScoredDocument))


CONTAMINATED_TAG = "contaminated"
HITS_TAG = "hits"


class FlagContaminatedDoFn(beam.DoFn):
    """ScoredDocument + target n-grams side input (``contamination.TargetNgram`` tuples) ->
    the document on the main output when it shares no n-gram with a target; otherwise the
    document on the ``contaminated`` tag and a ``ContaminationHit`` on the ``hits`` tag.

    The text is read back from the record (parsing accepted it, so it is a JSON object with
    a string in ``text_field``). The index is built once per process (``shared.Shared``,
    tagged with a fingerprint of the targets computed where the pipeline is built)."""

    def __init__(self, text_field: str, index_tag: str):
        self._text_field, self._index_tag = text_field, index_tag
        self._shared = shared.Shared()
        self._entries_seen, self._index = None, None
        self._contaminated = Metrics.counter("zipfit", "contaminated")

    def process(self, doc: ScoredDocument, entries):
        if entries is not self._entries_seen:  # side input lists are reused across bundles
            self._entries_seen = entries
            self._index = self._shared.acquire(
                lambda: _Holder(contamination.ContaminationIndex(entries)), tag=self._index_tag).value
        match = self._index.match(json.loads(doc.record)[self._text_field])
        if match is None:
            yield doc
            return
        self._contaminated.inc()
        yield beam.pvalue.TaggedOutput(CONTAMINATED_TAG, doc)
        yield beam.pvalue.TaggedOutput(HITS_TAG, ContaminationHit(
            doc.id, doc.score, doc.source, doc.position, match.target_id, match.windows))


class Guarded(NamedTuple):
    clean: PCollection  # PCollection[ScoredDocument]: shares no n-gram with a target
    contaminated: PCollection  # PCollection[ScoredDocument]: shares one
    hits: PCollection  # PCollection[ContaminationHit]: one per contaminated document


class GuardContamination(beam.PTransform):
    """PCollection[ScoredDocument] -> Guarded: splits off the documents that share an
    ``ngram``-token run (normalized, see ``contamination``) with any of ``targets``.

    The targets' n-gram hashes are computed in the pipeline from the targets PCollection
    and reach every worker as a side input, so the check is spread over the corpus."""

    def __init__(self, targets: PCollection, target_fingerprint: str, text_field: str = "text",
                 ngram: int = contamination.DEFAULT_NGRAM):
        super().__init__()
        self._targets, self._fingerprint = targets, target_fingerprint
        self._text_field, self._ngram = text_field, ngram

    def expand(self, scored):
        ngram = self._ngram
        entries = (self._targets
                   | "TargetNgrams" >> beam.FlatMap(
                       lambda t: [tuple(e) for e in contamination.target_ngrams(t.id, t.text, ngram)]))
        flagged = scored | "FlagContaminated" >> beam.ParDo(
            FlagContaminatedDoFn(self._text_field, f"{self._fingerprint}:{ngram}"),
            AsList(entries)).with_outputs(CONTAMINATED_TAG, HITS_TAG, main="clean")
        return Guarded(flagged.clean, flagged[CONTAMINATED_TAG], flagged[HITS_TAG])


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
    scored: PCollection  # every scored document, contaminated or not
    selected: PCollection
    rejected: PCollection
    threshold: PCollection
    read: PCollection
    guarded: Optional[Guarded] = None  # None when the contamination guard is off


class ZipFitSelect(beam.PTransform):
    """PBegin -> ZipFitResult: read, parse, score against ``targets``, set aside documents
    that share a ``guard_ngram``-token run with a target (unless ``allow_contaminated``;
    ``guard_ngram=0`` turns the check off) and select the top K of the rest."""

    def __init__(self, files: Sequence[str], targets: Sequence[Document], top_k: int,
                 text_field: str = "text", id_field: str = "id", compressor: str = "gzip",
                 level: int = 1, threads: int = 1, batch_size: int = 64,
                 guard_ngram: int = contamination.DEFAULT_NGRAM, allow_contaminated: bool = False,
                 progress_interval: float = 0.0):
        super().__init__()
        self._files, self._targets, self._k = files, list(targets), top_k
        self._fields = (text_field, id_field)
        self._score_args = dict(compressor=compressor, level=level, threads=threads,
                                batch_size=batch_size, progress_interval=progress_interval)
        self._guard_ngram, self._allow_contaminated = guard_ngram, allow_contaminated

    def expand(self, pbegin):
        read = pbegin | "ReadSources" >> ReadDocuments(self._files, *self._fields)
        targets = pbegin | "CreateTargets" >> beam.Create(self._targets).with_output_types(Document)
        scored = read.documents | "ScoreDocuments" >> ScoreDocuments(targets, **self._score_args)
        candidates, guarded = scored, None
        if self._guard_ngram:
            guarded = scored | "GuardContamination" >> GuardContamination(
                targets, _fingerprint(self._targets), self._fields[0], self._guard_ngram)
            if not self._allow_contaminated:
                candidates = guarded.clean
        selection = candidates | "SelectTopK" >> SelectTopK(self._k)
        return ZipFitResult(scored, selection.selected, read.rejected, selection.threshold,
                            read.read, guarded)
