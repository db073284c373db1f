"""The Beam side of scoring. Thin: the maths is in ``ncd``, ``contamination`` and ``tokens``.

    (path, format) --ScoreFiles(prepared targets side input, ScoringSpec)--> KeyTable
             (the file's scores written as a table, or found in the cache; see io.keys)
    Document --ScoreDocuments(prepared targets side input, ScoringSpec)--> ScoredDocument
             (score, tokens, bytes, group, the target it copies if any)
    ScoredDocument --GuardContamination--> clean + contaminated + ContaminationHit
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, PCollection
from apache_beam.utils import shared
from apache_beam.utils.windowed_value import WindowedValue

from zipfit_beam.io import keys
from zipfit_beam.io.files import InputFile
from zipfit_beam.io.keys import KeyTable
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.io.parse import needed_fields, parse_batch
from zipfit_beam.io.read import iter_input_batches
from zipfit_beam.io.templates import TextSpec
from zipfit_beam.records import ContaminationHit, DeadLetter, Document, ScoredDocument
from zipfit_beam.report import progress
from zipfit_beam.score import ncd
from zipfit_beam.score.docwork import DocumentWork, ResultColumns, Submitted
from zipfit_beam.score.spec import PreparedTargets, ScoringSpec
from zipfit_beam.score.tokens import load_counter

__all__ = ["BatchScorer", "ScoreBatchDoFn", "ScoreDocuments", "ScoreFilesDoFn", "ScoreFiles", "SplitContaminatedDoFn", "Guarded",
           "GuardContamination", "ContaminationHitDoFn", "CONTAMINATED_TAG"]


class _Holder:
    """A weak-referenceable box for ``shared.Shared``."""

    def __init__(self, value):
        self.value = value


class BatchScorer:
    """Scores lists of Documents against PreparedTargets as a ScoringSpec says: one per
    DoFn instance, with ``setup``/``teardown`` called from the DoFn's.

    The target set's compressed lengths, the n-gram index and the token counter are built
    once per worker process, under tags the launcher's fingerprint names, and shared by
    its threads. The work on each document (score, guard, tokens) is ``docwork.DocumentWork``.
    With ``spec.threads`` = 1 a batch is scored on the calling thread (``score``); with more,
    each batch is split over a pool of that many threads, and ``submit``/``collect`` and
    ``score_stream`` keep up to ``IN_FLIGHT`` batches on it while the calling thread goes on
    reading and parsing (the C kernel and the C guard and counter release the GIL for a whole
    part). Long documents are truncated and/or scored chunk by chunk
    (``ncd.document_score``); the n-gram check always reads the whole text. With
    ``spec.progress_interval`` > 0 each batch is reported to the process's progress
    reporter (local runs; see ``report.progress``). At setup each worker checks that it gives
    the lengths the launcher would (``ncd.check_same_scoring``) and fails before scoring
    anything if not."""

    def __init__(self, spec: ScoringSpec):
        self._spec = spec
        # Taken where the job is built (the launcher); setup() on each worker compares.
        self._scoring = ncd.scoring_identity(spec.compressor, spec.level)
        self._shared_targets, self._shared_index, self._shared_counter = (
            shared.Shared(), shared.Shared(), shared.Shared())
        self._pool: Optional[ThreadPoolExecutor] = None
        self._targets_seen = self._target_set = self._index = self._counter = self._work = None
        self._progress: Optional[progress.ProgressReporter] = None
        self._scored = Metrics.counter("zipfit", "scored")
        self._chunked = Metrics.counter("zipfit", "scored_in_chunks")

    def setup(self):
        spec = self._spec
        ncd.check_same_scoring(self._scoring, spec.compressor, spec.level)
        if spec.threads > 1:
            self._pool = ThreadPoolExecutor(spec.threads, thread_name_prefix="zipfit-score")
        self._counter = self._shared_counter.acquire(
            lambda: _Holder(load_counter(spec.tokenizer)), tag=f"tokens:{spec.tokenizer}").value
        if spec.progress_interval > 0:
            self._progress = progress.process_reporter(spec.progress_interval)

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown()

    def _prepare(self, targets: PreparedTargets) -> None:
        spec = self._spec
        self._targets_seen = targets
        self._target_set = self._shared_targets.acquire(
            lambda: _Holder(targets.target_set(spec)),
            tag=targets.tag(spec.compressor, spec.level)).value
        if spec.contamination_ngram:
            self._index = self._shared_index.acquire(
                lambda: _Holder(targets.ngram_index(spec.contamination_ngram)),
                tag=targets.tag("ngrams", spec.contamination_ngram)).value
        self._work = DocumentWork(self._target_set, self._index, self._counter, spec.long_documents)

    @property
    def pooled(self) -> bool:
        """Whether batches are scored on a pool (``submit`` returns before they are done)."""
        return self._pool is not None

    def submit(self, batch: List[Document], targets: PreparedTargets) -> Tuple[List[Document], Submitted]:
        """Start scoring a batch (on the pool, or here and now without one)."""
        if targets is not self._targets_seen:  # the side input is reused across batches
            self._prepare(targets)
        return batch, self._work.submit([d.text for d in batch], self._pool, self._spec.threads)

    def collect(self, submitted: Tuple[List[Document], Submitted]) -> List[ScoredDocument]:
        """A submitted batch's ScoredDocuments, in order (waits for it)."""
        batch, r = self.collect_columns(submitted)
        return [ScoredDocument(d.id, score, d.source, d.position, n, size, d.group, copied)
                for d, score, copied, n, size in zip(batch, *r)]

    def collect_columns(self, submitted: Tuple[List[Document], Submitted]
                        ) -> Tuple[List[Document], ResultColumns]:
        """``collect`` as the batch and its results' columns (no object per document)."""
        batch, handle = submitted
        results = self._work.collect_columns(handle)
        self._scored.inc(len(batch))
        if self._progress is not None:
            self._progress.add(len(batch))
        chunked_above = self._spec.chunked_above
        if chunked_above is not None:
            chunked = sum(1 for size in results.sizes if size > chunked_above)
            if chunked:
                self._chunked.inc(chunked)
        return batch, results

    def score(self, batch: List[Document], targets: PreparedTargets) -> List[ScoredDocument]:
        return self.collect(self.submit(batch, targets))

    def score_stream(self, batches: Iterable[List[Document]], targets: PreparedTargets
                     ) -> Iterator[Tuple[List[Document], ResultColumns]]:
        """Each batch with its results' columns (``collect_columns``), in order; with a pool,
        the next batches are read (the iterator advanced) while up to ``IN_FLIGHT`` are being
        scored."""
        in_flight: collections.deque = collections.deque()
        for batch in batches:
            in_flight.append(self.submit(batch, targets))
            while in_flight and (len(in_flight) > IN_FLIGHT or in_flight[0][1].done()):
                yield self.collect_columns(in_flight.popleft())
        while in_flight:
            yield self.collect_columns(in_flight.popleft())


# Batches on a scoring pool at once, per DoFn: enough that a thread finishing its part of one
# finds the next one queued.
IN_FLIGHT = 2
# A file's scoring batch ends early once its texts hold this many characters, so a batch of
# long documents is not held (IN_FLIGHT + 1 times) at once.
BATCH_CHARS = 8 << 20


class ScoreBatchDoFn(beam.DoFn):
    """List[Document] + PreparedTargets side input -> one ScoredDocument per document, with
    its token count, text size, group and, when the contamination guard is on
    (``spec.contamination_ngram`` > 0), the id of the target it shares an n-gram with
    (``contaminated_by``). See ``BatchScorer``. With a scoring pool, a batch's outputs come
    out while a later batch is processed (or in ``finish_bundle``), each as a WindowedValue
    of its own element's timestamp and window."""

    def __init__(self, spec: ScoringSpec):
        self._scorer = BatchScorer(spec)
        self._in_flight: collections.deque = collections.deque()

    def setup(self):
        self._scorer.setup()

    def teardown(self):
        self._scorer.teardown()

    def start_bundle(self):
        self._in_flight = collections.deque()  # (submitted, window, timestamp), oldest first

    def process(self, batch: List[Document], targets: PreparedTargets,
                window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        if not self._scorer.pooled:  # one scoring thread: here, now
            yield from self._scorer.score(batch, targets)
            return
        in_flight = self._in_flight
        in_flight.append((self._scorer.submit(batch, targets), window, timestamp))
        while in_flight and (len(in_flight) > IN_FLIGHT or in_flight[0][0][1].done()):
            yield from self._emit_oldest()

    def finish_bundle(self):
        while self._in_flight:
            yield from self._emit_oldest()

    def _emit_oldest(self):
        submitted, window, timestamp = self._in_flight.popleft()
        for doc in self._scorer.collect(submitted):
            yield WindowedValue(doc, timestamp, (window,))


class ScoreDocuments(beam.PTransform):
    """PCollection[Document] -> PCollection[ScoredDocument], scored as ``spec`` says against
    ``targets``: a singleton PCollection[PreparedTargets], used as a side input. With the
    guard on, each document is checked against the targets' n-grams while its text is at
    hand (``ScoredDocument.contaminated_by``)."""

    def __init__(self, targets: PCollection, spec: ScoringSpec):
        super().__init__()
        self._targets, self._spec = targets, spec

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._spec.batch_size)
                | "Score" >> beam.ParDo(ScoreBatchDoFn(self._spec), AsSingleton(self._targets))
                .with_output_types(ScoredDocument))


class ScoreFilesDoFn(beam.DoFn):
    """(path, format) + PreparedTargets -> KeyTable: one source file read, parsed and scored
    into its key table (``io.keys``), or the complete table found in ``tables`` (the cache)
    for the same source file and scoring fingerprint. Dead letters go into the file's
    rejected table; the Metrics counters (read, scored, rejected, rejected_<reason>,
    files_scored, files_reused, documents_reused) count reused files as well, so a run's
    metrics do not depend on what the cache held."""

    def __init__(self, spec: ScoringSpec, text: TextSpec, id_field: str,
                 group_field: Optional[str], tables: str, fingerprint: str,
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        self._max_record_bytes = max_record_bytes  # larger records: record_too_large
        self._spec, self._scorer = spec, BatchScorer(spec)
        self._text, self._id_field, self._group_field = text, id_field, group_field
        self._fields = needed_fields(text, id_field, group_field)
        self._tables, self._fingerprint = tables, fingerprint
        self._read = Metrics.counter("zipfit", "read")
        self._reused_files = Metrics.counter("zipfit", "files_reused")
        self._reused_docs = Metrics.counter("zipfit", "documents_reused")
        self._scored_files = Metrics.counter("zipfit", "files_scored")

    def setup(self):
        self._scorer.setup()

    def teardown(self):
        self._scorer.teardown()

    def _count(self, table: KeyTable) -> None:
        self._read.inc(table.read)
        if table.rejected_count:
            Metrics.counter("zipfit", "rejected").inc(table.rejected_count)
        for reason, n in table.reasons:
            Metrics.counter("zipfit", f"rejected_{reason}").inc(n)

    def process(self, file: InputFile, targets: PreparedTargets):
        path, fmt = file
        try:
            source = keys.file_fingerprint(path)
        except Exception:  # unlistable: the reader makes it a corrupt_file dead letter
            source = {"path": path, "size": None, "mtime": None}
        name = keys.table_name(f"{self._fingerprint}:{fmt}", source)
        found = keys.find_table(self._tables, name) if source["size"] is not None else None
        if found is not None:
            self._count(found)
            Metrics.counter("zipfit", "scored").inc(found.scored)
            self._reused_files.inc()
            self._reused_docs.inc(found.scored)
            yield found
            return
        writer = keys.TableWriter(self._tables, name, path, source)

        def batches():  # of batch_size documents, or fewer holding BATCH_CHARS characters
            batch: List[Document] = []
            held = 0
            size = self._spec.batch_size
            for records in iter_input_batches(path, fmt, self._fields, self._max_record_bytes):
                for parsed in parse_batch(records, self._text, self._id_field, self._group_field):
                    if type(parsed) is DeadLetter:
                        writer.add_rejected(parsed)
                        continue
                    batch.append(parsed)
                    held += len(parsed.text)
                    if len(batch) >= size or held >= BATCH_CHARS:
                        yield batch
                        batch, held = [], 0
            if batch:
                yield batch

        # with a scoring pool, the next batches are read and parsed while earlier ones score
        for batch, results in self._scorer.score_stream(batches(), targets):
            writer.add_scored(batch, results)
        table = writer.close()
        self._count(table)
        self._scored_files.inc()
        yield table


class ScoreFiles(beam.PTransform):
    """PCollection[(path, format)] -> PCollection[KeyTable]: every source file scored into
    its key table in ``tables`` (or found there complete), files spread over workers
    first. ``targets``: a singleton PCollection[PreparedTargets]; ``fingerprint``: the
    scoring fingerprint (``score.spec.scoring_fingerprint``)."""

    def __init__(self, targets: PCollection, spec: ScoringSpec, text: TextSpec, id_field: str,
                 group_field: Optional[str], tables: str, fingerprint: str,
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self._targets = targets
        self._dofn = ScoreFilesDoFn(spec, text, id_field, group_field, tables, fingerprint,
                                    max_record_bytes)

    def expand(self, files):
        return (files
                | "SpreadFiles" >> beam.Reshuffle()
                | "ScoreFile" >> beam.ParDo(self._dofn, AsSingleton(self._targets))
                .with_output_types(KeyTable))


CONTAMINATED_TAG = "contaminated"


class SplitContaminatedDoFn(beam.DoFn):
    """ScoredDocument -> the main output when ``contaminated_by`` is empty, else the
    ``contaminated`` tag (counted in the ``contaminated`` metric)."""

    def __init__(self):
        self._contaminated = Metrics.counter("zipfit", "contaminated")

    def process(self, doc: ScoredDocument):
        if not doc.contaminated_by:
            yield doc
            return
        self._contaminated.inc()
        yield beam.pvalue.TaggedOutput(CONTAMINATED_TAG, doc)


def contamination_hit(doc: ScoredDocument) -> ContaminationHit:
    return ContaminationHit(doc.id, doc.score, doc.source, doc.position, doc.contaminated_by)


class ContaminationHitDoFn(beam.DoFn):
    """A contaminated ScoredDocument -> its ContaminationHit, counted in the
    ``contaminated`` metric."""

    def __init__(self):
        self._contaminated = Metrics.counter("zipfit", "contaminated")

    def process(self, doc: ScoredDocument):
        self._contaminated.inc()
        yield contamination_hit(doc)


class Guarded(NamedTuple):
    clean: PCollection  # PCollection[ScoredDocument]: shares no n-gram with a target
    contaminated: PCollection  # PCollection[ScoredDocument]: shares one
    hits: PCollection  # PCollection[ContaminationHit]: one per contaminated document


class GuardContamination(beam.PTransform):
    """PCollection[ScoredDocument] (scored with the guard on) -> Guarded: the documents
    split by ``contaminated_by``, and a ContaminationHit (id, place, score, target) per
    contaminated one. No text is needed: the match was made while scoring."""

    def expand(self, scored):
        split = scored | "SplitContaminated" >> beam.ParDo(SplitContaminatedDoFn()).with_outputs(
            CONTAMINATED_TAG, main="clean")
        contaminated = split[CONTAMINATED_TAG]
        hits = contaminated | "Hits" >> beam.Map(contamination_hit).with_output_types(ContaminationHit)
        return Guarded(split.clean, contaminated, hits)
