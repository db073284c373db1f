"""The Beam transforms of ZIP-FIT selection. Thin: the maths is in ``ncd``/``selection``.

    files --ReadDocuments--> Document (+ DeadLetter)
          --ScoreDocuments(targets, target n-grams side inputs)--> ScoredDocument
              (score, tokens, bytes, group, the target it copies if any)
          --GuardContamination--> clean + contaminated ScoredDocuments
          --SelectDocuments(rule)--> ScoredDocument (a prefix of the ranking) + Cut

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

from zipfit_beam import contamination, ncd, progress
from zipfit_beam import selection as sel
from zipfit_beam.io import READ_COUNT_TAG, REJECTED_TAG, ParseDocumentDoFn, ReadRecordsDoFn, needed_fields
from zipfit_beam.ncd import DEFAULT_CHUNK_BYTES, TargetSet, document_score
from zipfit_beam.records import (ContaminationHit, DeadLetter, Document, RawRecord, RowRecord,
                                 ScoredDocument, rank_key)
from zipfit_beam.selection import SelectionKey, SelectionRule
from zipfit_beam.templates import TextSpec, as_text_spec
from zipfit_beam.tokens import load_counter


class ReadResult(NamedTuple):
    documents: PCollection  # PCollection[Document]
    rejected: PCollection  # PCollection[DeadLetter]
    read: PCollection  # PCollection[int]: a single count of records read


class ReadDocuments(beam.PTransform):
    """PBegin -> ReadResult. Reads a resolved file list (paths, whose format follows their
    name, or ``(path, format)`` pairs: JSONL, Parquet, Avro) record by record and parses
    each record; files are spread over workers before reading. Parquet files are read
    only in the columns the text (a field name or a TextSpec), the id and the group
    (``group_field``, kept as ``Document.group``) need."""

    def __init__(self, files: Sequence, text: Union[str, TextSpec], id_field: str,
                 group_field: Optional[str] = None):
        super().__init__()
        self._files = [tuple(f) if not isinstance(f, str) else f for f in files]
        self._text, self._id_field, self._group_field = as_text_spec(text), id_field, group_field

    def expand(self, pbegin):
        lines = (pbegin
                 | "ListFiles" >> beam.Create(self._files)
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadLines" >> beam.ParDo(ReadRecordsDoFn(
                     needed_fields(self._text, self._id_field, self._group_field)))
                 .with_output_types(Union[RawRecord, RowRecord])
                 .with_outputs(REJECTED_TAG, READ_COUNT_TAG, main="records"))
        read_count = lines[READ_COUNT_TAG] | "CountRead" >> beam.CombineGlobally(sum)
        parsed = (lines.records
                  | "Parse" >> beam.ParDo(ParseDocumentDoFn(self._text, self._id_field, self._group_field))
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
    """List[Document] + targets side input (+ target n-grams side input) -> one
    ScoredDocument per document, with its token count, text size, group and, when the
    contamination guard is on (``contamination_ngram`` > 0), the id of the target it
    shares an n-gram with (``contaminated_by``).

    The prepared TargetSet (target bytes and their compressed lengths), the n-gram index
    and the token counter are built once per worker process and shared by its threads; a
    batch is split over ``threads`` threads (the C kernel and zlib release the GIL). Long
    documents are truncated to ``max_doc_bytes`` and/or scored chunk by chunk
    (``ncd.document_score``); the n-gram check always reads the whole text. With
    ``progress_interval`` > 0 each batch is reported to the process's progress reporter
    (local runs; see ``progress``). At setup each worker checks that it gives the lengths the
    launcher would (``ncd.check_same_scoring``) and fails before scoring anything if not."""

    def __init__(self, compressor: str, level: int, threads: int,
                 max_doc_bytes: Optional[int] = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 chunk_reduce: str = "max", tokenizer: Optional[str] = None,
                 contamination_ngram: int = 0, progress_interval: float = 0.0):
        self._compressor, self._level, self._threads = compressor, level, threads
        # Built where the job is built (the launcher); setup() on each worker compares.
        self._scoring = ncd.scoring_identity(compressor, level)
        self._long_docs = dict(max_bytes=max_doc_bytes, chunk_bytes=chunk_bytes or None,
                               reduce=chunk_reduce)
        self._tokenizer = tokenizer
        self._ngram, self._progress_interval = contamination_ngram, progress_interval
        self._shared = shared.Shared()
        self._shared_counter = shared.Shared()
        self._shared_index = shared.Shared()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._targets_seen, self._target_set, self._counter, self._index = None, None, None, None
        self._progress: Optional[progress.ProgressReporter] = None
        self._scored = Metrics.counter("zipfit", "scored")
        self._chunked = Metrics.counter("zipfit", "scored_in_chunks")

    def setup(self):
        ncd.check_same_scoring(self._scoring, self._compressor, self._level)
        if self._threads > 1:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="zipfit-score")
        self._counter = self._shared_counter.acquire(
            lambda: _Holder(load_counter(self._tokenizer)), tag=f"tokens:{self._tokenizer}").value
        if self._progress_interval > 0:
            self._progress = progress.process_reporter(self._progress_interval)

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown()

    def process(self, batch: List[Document], targets: List[Document], ngrams=()):
        if targets is not self._targets_seen:  # side input lists are reused across batches
            self._targets_seen = targets
            tag = _fingerprint(targets)
            self._target_set = self._shared.acquire(
                lambda: _Holder(_prepare_targets(targets, self._compressor, self._level)),
                tag=tag).value
            if self._ngram:  # the n-grams follow from the targets, so their tag does too
                self._index = self._shared_index.acquire(
                    lambda: _Holder(contamination.ContaminationIndex(ngrams)),
                    tag=f"{tag}:{self._ngram}").value
        target_set, long_docs, index = self._target_set, self._long_docs, self._index
        texts = [d.text.encode("utf-8") for d in batch]

        def score_all(part):
            out = []
            for i in part:
                match = index.match(batch[i].text) if index is not None else None
                out.append((document_score(target_set, texts[i], **long_docs),
                            match.target_id if match is not None else ""))
            return out

        if self._pool is None or len(texts) < 2:
            results = score_all(range(len(texts)))
        else:
            step = -(-len(texts) // self._threads)
            parts = [range(i, min(i + step, len(texts))) for i in range(0, len(texts), step)]
            results = [r for part in self._pool.map(score_all, parts) for r in part]
        tokens = self._counter.count([d.text for d in batch])
        self._scored.inc(len(batch))
        if self._progress is not None:
            self._progress.add(len(batch))
        chunk, cap = long_docs["chunk_bytes"], long_docs["max_bytes"]
        chunked = sum(1 for t in texts if chunk and min(len(t), cap or len(t)) > chunk)
        if chunked:
            self._chunked.inc(chunked)
        for d, (score, copied), n_tokens, text in zip(batch, results, tokens, texts):
            yield ScoredDocument(d.id, score, d.source, d.position, n_tokens, len(text), d.group, copied)


class ScoreDocuments(beam.PTransform):
    """PCollection[Document] -> PCollection[ScoredDocument], scored against ``targets``
    (a PCollection[Document], used as a side input). With ``contamination_ngram`` > 0 the
    targets' n-gram hashes (``contamination.target_ngrams``) are computed in the pipeline
    and reach every worker as a second side input; each document is checked against them
    while its text is at hand (``ScoredDocument.contaminated_by``)."""

    def __init__(self, targets: PCollection, compressor: str = "gzip", level: int = 1,
                 threads: int = 1, batch_size: int = 64, max_doc_bytes: Optional[int] = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, chunk_reduce: str = "max",
                 tokenizer: Optional[str] = None, contamination_ngram: int = 0,
                 progress_interval: float = 0.0):
        super().__init__()
        self._targets = targets
        self._batch_size, self._ngram = batch_size, contamination_ngram
        self._dofn_args = (compressor, level, threads, max_doc_bytes, chunk_bytes, chunk_reduce,
                           tokenizer, contamination_ngram, progress_interval)

    def expand(self, documents):
        side = [AsList(self._targets)]
        if self._ngram:
            n = self._ngram
            side.append(AsList(self._targets | "TargetNgrams" >> beam.FlatMap(
                lambda t: [tuple(e) for e in contamination.target_ngrams(t.id, t.text, n)])))
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
                | "Score" >> beam.ParDo(ScoreBatchDoFn(*self._dofn_args), *side)
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
    """PCollection[ScoredDocument] (scored with ``contamination_ngram`` > 0) -> Guarded:
    the documents split by ``contaminated_by``, and a ContaminationHit (id, place, score,
    target) per contaminated one. No text is needed: the match was made while scoring."""

    def expand(self, scored):
        split = scored | "SplitContaminated" >> beam.ParDo(SplitContaminatedDoFn()).with_outputs(
            CONTAMINATED_TAG, main="clean")
        contaminated = split[CONTAMINATED_TAG]
        hits = contaminated | "Hits" >> beam.Map(contamination_hit).with_output_types(ContaminationHit)
        return Guarded(split.clean, contaminated, hits)


class Selection(NamedTuple):
    selected: PCollection  # PCollection[ScoredDocument]
    threshold: PCollection  # singleton PCollection[Optional[RankKey]]: None if nothing was cut
    cut: PCollection  # singleton PCollection[Cut]


class HistogramCombineFn(beam.CombineFn):
    """(digit, SelectionKey) -> Histogram: per 16-bit digit, the count, token sum and worst
    key (``selection.histogram_add``). At most 2**16 bins, whatever the input size."""

    def create_accumulator(self):
        return {}

    def add_input(self, hist, element):
        d, sk = element
        return sel.histogram_add(hist, d, sk)

    def merge_accumulators(self, hists):
        return sel.histogram_merge(hists)

    def extract_output(self, hist):
        return hist


def _with_digit(sk: SelectionKey, cursor: sel.Cursor):
    return sel.digit(sk, cursor), sk


def selection_key(doc: ScoredDocument) -> SelectionKey:
    return SelectionKey(rank_key(doc), doc.tokens)


class FindCut(beam.PTransform):
    """PCollection[ScoredDocument] -> singleton PCollection[Cut], by the radix rounds of
    ``selection`` (read its docstring): per round one histogram of at most 2**16 bins over
    the previous round's boundary bin; exact score ties at the boundary are the only keys
    gathered on one worker.

    Round 1 needs no side input, so it runs in the pass that produces the documents;
    round 2 reads the documents again (they are kept for the final filter anyway) and
    only the boundary bin's (key, tokens) pairs go on: no PCollection of all keys."""

    def __init__(self, rule: SelectionRule):
        super().__init__()
        self._rule = rule

    def expand(self, scored):
        rule = self._rule

        def round2_candidates(doc, cursor):
            sk = selection_key(doc)
            if sel.is_next_candidate(sk, cursor, rule):
                yield sk

        # CombineGlobally(...).without_defaults() + AsSingleton(default_value=...) instead of
        # the default-injecting CombineGlobally: the same result in fewer stages.
        hist = (scored
                | "Digits1" >> beam.Map(lambda d: (sel.first_digit(selection_key(d), rule),
                                                   selection_key(d)))
                | "Histogram1" >> beam.CombineGlobally(HistogramCombineFn()).without_defaults())
        cursor = (scored.pipeline
                  | "Once" >> beam.Create([None])
                  | "Advance1" >> beam.Map(lambda _, h: sel.first_round(h, rule),
                                           AsSingleton(hist, default_value={})))
        candidates = scored | "Candidates2" >> beam.FlatMap(
            round2_candidates, AsSingleton(cursor)).with_output_types(SelectionKey)
        for r in range(2, sel.ROUNDS + 1):
            hist = (candidates
                    | f"Digits{r}" >> beam.Map(_with_digit, AsSingleton(cursor))
                    | f"Histogram{r}" >> beam.CombineGlobally(HistogramCombineFn()).without_defaults())
            cursor = cursor | f"Advance{r}" >> beam.Map(
                lambda c, h: sel.advance(c, h, rule), AsSingleton(hist, default_value={}))
            candidates = candidates | f"Candidates{r + 1}" >> beam.Filter(
                sel.is_candidate, AsSingleton(cursor))
        ties = candidates | "GatherTies" >> beam.combiners.ToList()
        return cursor | "ResolveCut" >> beam.Map(
            lambda c, t: sel.resolve(c, t, rule), AsSingleton(ties))


class SelectDocuments(beam.PTransform):
    """PCollection[ScoredDocument] -> Selection: the prefix of the ranking (score desc, id,
    source, position) that ``rule`` asks for (top-K, token budget or fraction, with an
    optional score floor).

    Only small (key, tokens) pairs go through the cut-finding rounds; the documents stay
    where they are and are filtered against the cut (a singleton side input)."""

    def __init__(self, rule: Union[SelectionRule, int]):
        super().__init__()
        self._rule = rule if isinstance(rule, SelectionRule) else SelectionRule(top_k=rule)

    def expand(self, scored):
        cut = scored | "FindCut" >> FindCut(self._rule)
        selected = scored | "KeepSelected" >> beam.Filter(
            lambda d, c: sel.keeps(c, rank_key(d)), AsSingleton(cut))
        threshold = cut | "Threshold" >> beam.Map(lambda c: c.threshold)
        return Selection(selected, threshold, cut)


class SelectTopK(SelectDocuments):
    """PCollection[ScoredDocument] -> Selection: the K best documents (exactly min(K, N))."""

    def __init__(self, k: int):
        super().__init__(SelectionRule(top_k=k))


class ZipFitResult(NamedTuple):
    scored: PCollection  # PCollection[ScoredDocument], every scored document, contaminated or not
    selected: PCollection  # PCollection[ScoredDocument], the selection
    rejected: PCollection
    threshold: PCollection
    read: PCollection
    cut: PCollection  # singleton PCollection[Cut]
    guarded: Optional[Guarded] = None  # None when the contamination guard is off


class ZipFitSelect(beam.PTransform):
    """PBegin -> ZipFitResult: read, parse, score against ``targets``, set aside the
    documents that share a ``contamination_ngram``-token run with a target (left out of
    the candidates unless ``allow_contaminated``; 0 turns the check off) and select.

    ``rule``: a ``SelectionRule`` (top-K, token budget or fraction, optional score floor),
    or an int K for top-K. ``text_field``: a field name or a TextSpec. ``group_field``: a
    record field carried as ``ScoredDocument.group``. ``score_options``:
    ``ScoreDocuments``'s long-document, token and progress settings (max_doc_bytes,
    chunk_bytes, chunk_reduce, tokenizer, progress_interval). ``scored``/``selected`` are
    small ScoredDocument keys; ``writers.WriteSelected`` fetches the selected records from
    their files."""

    def __init__(self, files: Sequence, targets: Sequence[Document],
                 rule: Union[SelectionRule, int], text_field: Union[str, TextSpec] = "text",
                 id_field: str = "id", compressor: str = "gzip", level: int = 1, threads: int = 1,
                 batch_size: int = 64, group_field: Optional[str] = None,
                 contamination_ngram: int = contamination.DEFAULT_NGRAM,
                 allow_contaminated: bool = False, **score_options):
        super().__init__()
        self._files, self._targets, self._rule = files, list(targets), rule
        self._fields = (text_field, id_field, group_field)
        self._guard, self._allow_contaminated = contamination_ngram, allow_contaminated
        self._score_args = dict(compressor=compressor, level=level, threads=threads,
                                batch_size=batch_size, contamination_ngram=contamination_ngram,
                                **score_options)

    def expand(self, pbegin):
        read = pbegin | "ReadSources" >> ReadDocuments(self._files, *self._fields)
        targets = pbegin | "CreateTargets" >> beam.Create(self._targets).with_output_types(Document)
        scored = read.documents | "ScoreDocuments" >> ScoreDocuments(targets, **self._score_args)
        candidates, guarded = scored, None
        if self._guard:
            guarded = scored | "GuardContamination" >> GuardContamination()
            if not self._allow_contaminated:
                candidates = guarded.clean
        selection = candidates | "SelectDocuments" >> SelectDocuments(self._rule)
        return ZipFitResult(scored, selection.selected, read.rejected, selection.threshold, read.read,
                            selection.cut, guarded)
