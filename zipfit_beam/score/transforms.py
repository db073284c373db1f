"""The Beam side of scoring. Thin: the maths is in ``ncd``, ``contamination`` and ``tokens``.

    Document --ScoreDocuments(prepared targets side input, ScoringSpec)--> ScoredDocument
             (score, tokens, bytes, group, the target it copies if any)
    ScoredDocument --GuardContamination--> clean + contaminated + ContaminationHit
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, PCollection
from apache_beam.utils import shared
from apache_beam.utils.windowed_value import WindowedValue

from zipfit_beam.records import ContaminationHit, Document, ScoredDocument
from zipfit_beam.report import progress
from zipfit_beam.score.docwork import DocumentWork
from zipfit_beam.score.spec import PreparedTargets, ScoringSpec
from zipfit_beam.score.tokens import load_counter

__all__ = ["ScoreBatchDoFn", "ScoreDocuments", "SplitContaminatedDoFn", "Guarded",
           "GuardContamination", "CONTAMINATED_TAG"]


class _Holder:
    """A weak-referenceable box for ``shared.Shared``."""

    def __init__(self, value):
        self.value = value


class ScoreBatchDoFn(beam.DoFn):
    """List[Document] + PreparedTargets side input -> one ScoredDocument per document, with
    its token count, text size, group and, when the contamination guard is on
    (``spec.contamination_ngram`` > 0), the id of the target it shares an n-gram with
    (``contaminated_by``).

    The target set's compressed lengths, the n-gram index and the token counter are built
    once per worker process, under tags the launcher's fingerprint names, and shared by
    its threads. The work on each document (score, guard, tokens) is ``docwork.DocumentWork``.
    With ``spec.threads`` = 1 a batch is scored on the calling thread; with more, each batch is
    split over a pool of that many threads, and up to two batches are in flight while the
    calling thread goes on with Beam's work (the C kernel and the C guard and counter release
    the GIL); outputs then come out a batch or two later, each in its own element's window
    and timestamp, the rest in ``finish_bundle``. Long documents are truncated and/or scored chunk by chunk
    (``ncd.document_score``); the n-gram check always reads the whole text. With
    ``spec.progress_interval`` > 0 each batch is reported to the process's progress
    reporter (local runs; see ``report.progress``)."""

    def __init__(self, spec: ScoringSpec):
        self._spec = spec
        self._shared_targets, self._shared_index, self._shared_counter = (
            shared.Shared(), shared.Shared(), shared.Shared())
        self._pool: Optional[ThreadPoolExecutor] = None
        self._targets_seen = self._target_set = self._index = self._counter = self._work = None
        self._progress: Optional[progress.ProgressReporter] = None
        self._in_flight: collections.deque = collections.deque()
        self._scored = Metrics.counter("zipfit", "scored")
        self._chunked = Metrics.counter("zipfit", "scored_in_chunks")

    def setup(self):
        spec = self._spec
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

    def start_bundle(self):
        self._in_flight = collections.deque()  # (batch, Submitted, window, timestamp), oldest first

    def process(self, batch: List[Document], targets: PreparedTargets,
                window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        if targets is not self._targets_seen:  # the side input is reused across batches
            self._prepare(targets)
        texts = [d.text for d in batch]
        if self._pool is None:  # one scoring thread: here, now
            yield from self._outputs(batch, self._work.score_batch(texts))
            return
        # On the pool: the scoring threads work on this batch and the one before while this
        # thread goes on reading and parsing (the C pass holds no GIL); finished batches are
        # emitted as WindowedValues of their own element's window.
        in_flight = self._in_flight
        in_flight.append((batch, self._work.submit(texts, self._pool, self._spec.threads), window, timestamp))
        while in_flight and (len(in_flight) > _IN_FLIGHT or in_flight[0][1].done()):
            yield from self._emit_oldest()

    def finish_bundle(self):
        while self._in_flight:
            yield from self._emit_oldest()

    def _emit_oldest(self):
        batch, submitted, window, timestamp = self._in_flight.popleft()
        for doc in self._outputs(batch, self._work.collect(submitted)):
            yield WindowedValue(doc, timestamp, (window,))

    def _outputs(self, batch, results):
        spec = self._spec
        self._scored.inc(len(batch))
        if self._progress is not None:
            self._progress.add(len(batch))
        chunked = sum(1 for r in results if spec.is_chunked(r.size))
        if chunked:
            self._chunked.inc(chunked)
        for d, r in zip(batch, results):
            yield ScoredDocument(d.id, r.score, d.source, d.position, r.tokens, r.size, d.group, r.copied)


# batches on the scoring pool at once, per DoFn: enough that a thread finishing its part of one
# finds the next one queued
_IN_FLIGHT = 2


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
