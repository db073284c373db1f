"""The Beam side of selection. Thin: the cut maths (radix rounds over 16-bit digits of the
ranking key) is in ``select.cut``.

    ScoredDocument --SelectDocuments(rule)--> the selected prefix of the ranking + the Cut
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.pvalue import AsSingleton, PCollection

from zipfit_beam.combine import side_combine
from zipfit_beam.records import ScoredDocument, rank_key
from zipfit_beam.select import columns as col
from zipfit_beam.select import cut as sel
from zipfit_beam.select.cut import SelectionKey, SelectionRule

__all__ = ["Selection", "HistogramCombineFn", "MergeHistogramsCombineFn", "selection_key", "FindCut",
           "SelectDocuments", "SelectTopK"]


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


class MergeHistogramsCombineFn(HistogramCombineFn):
    """Histogram -> their sum (round 1 over key tables: one histogram per batch of rows)."""

    def add_input(self, hist, element):
        return sel.histogram_merge([hist, element])


def _with_digit(sk: SelectionKey, cursor: sel.Cursor):
    return sel.digit(sk, cursor), sk


def selection_key(doc: ScoredDocument) -> SelectionKey:
    return SelectionKey(rank_key(doc), doc.tokens)


class FindCut(beam.PTransform):
    """PCollection[ScoredDocument] -> singleton PCollection[Cut], by the radix rounds of
    ``select.cut`` (read its docstring): per round one histogram of at most 2**16 bins over
    the previous round's boundary bin; exact score ties at the boundary are the only keys
    gathered on one worker.

    Round 1 needs no side input, so it runs in the pass that produces the documents;
    round 2 reads the documents again and only the boundary bin's (key, tokens) pairs go
    on: no PCollection of all keys. ``batches``: the input holds key tables (or any
    handles), and ``batches(handle)`` -> iterator of ``io.keys.KeyBatch`` reads one again in
    each pass; round 1 and round 2's filter then run as array steps over each batch
    (``select.columns``), and only the boundary bin's keys become Python objects. Reading
    and the step are one FlatMap on purpose: a read of its own would run as soon as the
    tables exist, and a runner would then keep every key until the step's side inputs are
    ready (the spine of ``io.keys`` is that none does)."""

    def __init__(self, rule: SelectionRule, batches: Optional[Callable] = None):
        super().__init__()
        self._rule, self._batches = rule, batches

    def expand(self, source):
        rule, batches = self._rule, self._batches

        def round2_candidates(doc, cursor):
            sk = selection_key(doc)
            if sel.is_next_candidate(sk, cursor, rule):
                yield sk

        # Every histogram is read only as a side input (combine.side_combine: no
        # default-injecting steps; an empty input reads as {}).
        if batches is not None:  # key tables, read as columns: one histogram per batch
            digits = source | "Digits1" >> beam.FlatMap(
                lambda t: (col.first_histogram(b.columns, rule) for b in batches(t)))
            hist = side_combine(digits, "Histogram1", MergeHistogramsCombineFn())
        else:
            digits = source | "Digits1" >> beam.Map(
                lambda d: (sel.first_digit(selection_key(d), rule), selection_key(d)))
            hist = side_combine(digits, "Histogram1", HistogramCombineFn())
        cursor = (source.pipeline
                  | "Once" >> beam.Impulse()
                  | "Advance1" >> beam.Map(lambda _, h: sel.first_round(h, rule), hist))
        if batches is not None:
            candidates = source | "Candidates2" >> beam.FlatMap(
                lambda t, c: (sk for b in batches(t) for sk in col.candidates(b.columns, c, rule)),
                AsSingleton(cursor)).with_output_types(SelectionKey)
        else:
            candidates = source | "Candidates2" >> beam.FlatMap(
                round2_candidates, AsSingleton(cursor)).with_output_types(SelectionKey)
        for r in range(2, sel.ROUNDS + 1):
            hist = side_combine(candidates | f"Digits{r}" >> beam.Map(_with_digit, AsSingleton(cursor)),
                                f"Histogram{r}", HistogramCombineFn())
            cursor = cursor | f"Advance{r}" >> beam.Map(lambda c, h: sel.advance(c, h, rule), hist)
            candidates = candidates | f"Candidates{r + 1}" >> beam.Filter(
                sel.is_candidate, AsSingleton(cursor))
        ties = side_combine(candidates, "GatherTies", beam.combiners.ToListCombineFn())
        return cursor | "ResolveCut" >> beam.Map(lambda c, t: sel.resolve(c, t, rule), ties)


class SelectDocuments(beam.PTransform):
    """PCollection[ScoredDocument] -> Selection: the prefix of the ranking (score desc, id,
    source, position) that ``rule`` asks for (top-K, token budget or fraction, with an
    optional score floor).

    Only small (key, tokens) pairs go through the cut-finding rounds; the documents stay
    where they are and are filtered against the cut (a singleton side input).
    ``batches``: the input holds key tables, read again by each pass (see ``FindCut``),
    the filter an array step too."""

    def __init__(self, rule: Union[SelectionRule, int], batches: Optional[Callable] = None):
        super().__init__()
        self._rule = rule if isinstance(rule, SelectionRule) else SelectionRule(top_k=rule)
        self._batches = batches

    def expand(self, source):
        batches = self._batches
        cut = source | "FindCut" >> FindCut(self._rule, batches)
        if batches is not None:
            selected = source | "KeepSelected" >> beam.FlatMap(
                lambda t, c: (d for b in batches(t) for d in _kept_documents(b, c)),
                AsSingleton(cut)).with_output_types(ScoredDocument)
        else:
            selected = source | "KeepSelected" >> beam.Filter(
                lambda d, c: sel.keeps(c, rank_key(d)), AsSingleton(cut)).with_output_types(ScoredDocument)
        threshold = cut | "Threshold" >> beam.Map(lambda c: c.threshold)
        return Selection(selected, threshold, cut)


def _kept_documents(batch, cut):
    rows = col.kept(batch.columns, cut)
    return batch.documents(rows) if rows else ()


class SelectTopK(SelectDocuments):
    """PCollection[ScoredDocument] -> Selection: the K best documents (exactly min(K, N))."""

    def __init__(self, k: int):
        super().__init__(SelectionRule(top_k=k))
