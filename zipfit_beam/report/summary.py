"""What the report needs, computed in the pipeline with combiners over the small scored keys:
score histograms, totals per group, a deterministic sample, and the top and bottom examples.
The result is one small dict (``summary.json`` next to the output), whatever the corpus
size: the launcher renders the report from it and never reads the corpus.

    scored, selected ScoredDocument --combiners--> histograms, totals, groups, sample,
                                                  example keys
    example keys --io.fetch.FetchSelected--> their records, read again --> text snippets
    --AssembleSummary--> {summary dict}

Only ScoredDocument fields (score, tokens, text_bytes, group, contaminated_by, place) are
summarized; the text of the few example documents is fetched from their files at the end,
like the selected records, so no step holds text for every document.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import AsSingleton, PCollection

from zipfit_beam.io.fetch import FetchSelected
from zipfit_beam.io.parse import parse_any
from zipfit_beam.records import ScoredDocument, rank_key
from zipfit_beam.report import stats

__all__ = ["NamedCombineFn", "ScoredParts", "SelectedParts", "GroupParts", "SummarizeSelection",
           "assemble_summary"]

SAMPLE_SIZE = 2000  # points in the score-vs-length plot
EXAMPLES = 10  # documents in each example table
MAX_GROUPS = 30  # groups listed (by corpus size and by selection size)


class NamedCombineFn(beam.CombineFn):
    """Several CombineFns over the same input in one pass; the output is a ``named``
    NamedTuple whose fields are the results, so they are read by name, never by position
    (``NamedCombineFn(Parts, count=CountCombineFn(), top=TopCombineFn(10))``)."""

    def __init__(self, named, **fns: beam.CombineFn):
        if set(fns) != set(named._fields):
            raise ValueError(f"{named.__name__} needs combiners for {named._fields}, got {tuple(fns)}")
        self._named = named
        self._tuple = beam.combiners.SingleInputTupleCombineFn(*(fns[f] for f in named._fields))

    def create_accumulator(self):
        return self._tuple.create_accumulator()

    def add_input(self, acc, element):
        return self._tuple.add_input(acc, element)

    def merge_accumulators(self, accs):
        return self._tuple.merge_accumulators(accs)

    def compact(self, acc):
        return self._tuple.compact(acc)

    def extract_output(self, acc):
        return self._named(*self._tuple.extract_output(acc))


class ScoredParts(NamedTuple):
    """The summary of every scored document."""
    histogram: dict
    totals: tuple  # (docs, bytes, tokens)
    contaminated_histogram: dict
    contaminated_totals: tuple
    sample: list  # the sample: ScoredDocuments with the smallest sample keys
    bottom: list  # the worst scored


class SelectedParts(NamedTuple):
    """The summary of the selection."""
    histogram: dict
    totals: tuple
    sample: list
    top: list  # the best selected
    boundary: list  # the last selected


class GroupParts(NamedTuple):
    distinct: int  # how many groups there are
    by_corpus: list  # (group, 6 sums) of the largest groups by corpus size
    by_selection: list  # ... and by selection size


class ScoreHistogramCombineFn(beam.CombineFn):
    """ScoredDocument -> {bin: count} over fixed bins of width ``stats.HISTOGRAM_BIN_WIDTH``
    (sparse, so it stays small; partial histograms add up)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, doc: ScoredDocument):
        b = stats.histogram_bin(doc.score)
        acc[b] = acc.get(b, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        return stats.merge_counts(accs)

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


class SumTuplesCombineFn(beam.CombineFn):
    """Tuples of ``width`` numbers -> their element-wise sum (zeros when empty)."""

    def __init__(self, width: int):
        self._width = width

    def create_accumulator(self):
        return (0,) * self._width

    def add_input(self, acc, row):
        return _add(acc, row)

    def merge_accumulators(self, accs):
        # Not through add_input: subclasses take other inputs there (TotalsCombineFn: a
        # ScoredDocument). Beam merges only when there are two or more accumulators (two
        # bundles or workers), which a local run of a small job never has.
        out = self.create_accumulator()
        for acc in accs:
            out = _add(out, acc)
        return out

    def extract_output(self, acc):
        return acc


class TotalsCombineFn(SumTuplesCombineFn):
    """ScoredDocument -> (docs, UTF-8 bytes, tokens)."""

    def __init__(self):
        super().__init__(3)

    def add_input(self, acc, doc: ScoredDocument):
        return super().add_input(acc, _totals(doc))


class WhereCombineFn(beam.CombineFn):
    """``fn`` over the inputs for which ``keep(input)`` holds."""

    def __init__(self, fn: beam.CombineFn, keep):
        self._fn, self._keep = fn, keep

    def create_accumulator(self):
        return self._fn.create_accumulator()

    def add_input(self, acc, element):
        return self._fn.add_input(acc, element) if self._keep(element) else acc

    def merge_accumulators(self, accs):
        return self._fn.merge_accumulators(accs)

    def extract_output(self, acc):
        return self._fn.extract_output(acc)


Totals = Tuple[int, int, int]  # docs, bytes, tokens


def _add(acc: tuple, row: tuple) -> tuple:
    return tuple(a + b for a, b in zip(acc, row))


def _totals(doc: ScoredDocument) -> Totals:
    return (1, doc.text_bytes, doc.tokens)


def _group(doc: ScoredDocument) -> str:
    return doc.group if doc.group is not None else ""


def _is_contaminated(doc: ScoredDocument) -> bool:
    return bool(doc.contaminated_by)


def _sample_key(doc: ScoredDocument) -> int:
    return stats.sample_key(doc.source, doc.position)


def _sample_point(d: ScoredDocument, selected_keys) -> dict:
    return {"score": d.score, "bytes": d.text_bytes, "tokens": d.tokens, "group": _group(d),
            "contaminated": bool(d.contaminated_by), "selected": rank_key(d) in selected_keys}


def _example(d: ScoredDocument, snippets: Dict[Tuple[str, int], str]) -> dict:
    return {"id": d.id, "score": d.score, "source": d.source, "position": d.position,
            "group": _group(d), "bytes": d.text_bytes, "tokens": d.tokens,
            "snippet": snippets.get((d.source, d.position), ""),
            "contaminated": bool(d.contaminated_by), "target": d.contaminated_by}


def _group_row(group: str, sums: Tuple[int, ...]) -> dict:
    docs, nbytes, tokens, sel_docs, sel_bytes, sel_tokens = sums
    return {"group": group, "docs": docs, "bytes": nbytes, "tokens": tokens,
            "selected_docs": sel_docs, "selected_bytes": sel_bytes, "selected_tokens": sel_tokens}


def group_table(parts: GroupParts) -> dict:
    """(group, 6 sums) pairs of the largest groups by corpus and by selection size -> the
    rows of both, largest first (a group leading the selection is listed even when small
    in the corpus)."""
    rows = dict(parts.by_corpus)
    rows.update((g, sums) for g, sums in parts.by_selection if sums[3])
    table = [_group_row(g, sums) for g, sums in rows.items()]
    return {"distinct": parts.distinct,
            "rows": sorted(table, key=lambda r: (-r["docs"], -r["selected_docs"], r["group"]))}


def assemble_summary(scored: ScoredParts, selected: SelectedParts, groups: dict, snippet_pairs,
                     group_field: Optional[str], sample_size: int, token_measure: str) -> dict:
    """The partial results of ``SummarizeSelection`` -> the summary dict."""
    # The sampled documents that were selected: both samples take the smallest sample keys,
    # so a scored sample member is selected iff it is in the selected sample.
    selected_keys = {rank_key(d) for d in selected.sample}
    snippets = dict(snippet_pairs)
    examples = {"top": selected.top, "boundary": selected.boundary, "bottom": scored.bottom}
    return {
        "histogram": {"bin_width": stats.HISTOGRAM_BIN_WIDTH, "all": scored.histogram,
                      "selected": selected.histogram, "contaminated": scored.contaminated_histogram},
        "totals": {name: dict(zip(("docs", "bytes", "tokens"), t))
                   for name, t in (("corpus", scored.totals), ("selected", selected.totals),
                                   ("contaminated", scored.contaminated_totals))},
        "token_measure": token_measure,
        "groups": dict(groups, field=group_field),
        "sample": {"size": len(scored.sample), "requested": sample_size,
                   "points": [_sample_point(d, selected_keys) for d in scored.sample]},
        "examples": {name: [_example(d, snippets) for d in docs] for name, docs in examples.items()},
    }


class FetchSnippets(beam.PTransform):
    """PCollection[ScoredDocument] (a few) -> PCollection[((source, position), snippet)]:
    the first ``stats.SNIPPET_CHARS`` characters of each document's text, read again from
    its file through ``io.fetch.FetchSelected`` (the same path, checks and formats as the
    selected records) and parsed with the run's text spec (a field or a template)."""

    def __init__(self, source_format: str, text, id_field: str):
        super().__init__()
        self._args = (source_format, text, id_field)

    def expand(self, docs):
        source_format, text, id_field = self._args

        def snippet(keyed):
            _, record = keyed
            return (record.source, record.position), parse_any(record, text, id_field).text[:stats.SNIPPET_CHARS]

        return (docs
                | "Fetch" >> FetchSelected(source_format, text, id_field, counter="fetched_examples",
                                           with_score=False)
                | "Snippet" >> beam.Map(snippet))


class SummarizeSelection(beam.PTransform):
    """(scored, selected) PCollection[ScoredDocument] -> a singleton PCollection with the
    summary dict:

    ``histogram`` (fine sparse score histograms of all, selected and contaminated documents),
    ``totals`` (docs, bytes, tokens of corpus, selection, contaminated), ``groups`` (per
    ``group_field`` value: corpus and selection totals; the ``max_groups`` largest by corpus
    size plus the largest by selection size, and how many there are), ``sample`` (a
    deterministic uniform sample of ``sample_size`` scored documents: score, bytes, tokens,
    group, flags) and ``examples`` (the best selected, the last selected before the
    threshold, and the worst scored, each with an unescaped text snippet: the renderer
    escapes).

    ``scored`` holds every scored document (``contaminated_by`` set on the ones the guard
    flagged); ``selected`` the selection. ``fetch``: (--format, text spec, id
    field) to read the examples' text again. Each side is reduced by one tuple of
    combiners (``SingleInputTupleCombineFn``), the groups by a per-key sum, so nothing but
    small partial results meets on one worker and the job gains few stages."""

    def __init__(self, fetch: Tuple[str, object, str], group_field: Optional[str] = None,
                 token_measure: str = "tokens", sample_size: int = SAMPLE_SIZE,
                 examples: int = EXAMPLES, max_groups: int = MAX_GROUPS):
        super().__init__()
        self._fetch, self._group_field, self._token_measure = fetch, group_field, token_measure
        self._sample_size, self._examples, self._max_groups = sample_size, examples, max_groups

    def expand(self, docs: Tuple[PCollection, PCollection]):
        scored, selected = docs
        n_ex, n_groups, n_sample = self._examples, self._max_groups, self._sample_size
        Top = beam.combiners.TopCombineFn  # noqa: N806  (smaller rank key = better document)
        scored_parts = scored | "SummarizeScored" >> beam.CombineGlobally(NamedCombineFn(
            ScoredParts, histogram=ScoreHistogramCombineFn(), totals=TotalsCombineFn(),
            contaminated_histogram=WhereCombineFn(ScoreHistogramCombineFn(), _is_contaminated),
            contaminated_totals=WhereCombineFn(TotalsCombineFn(), _is_contaminated),
            sample=Top(n_sample, key=_sample_key, reverse=True),  # smallest keys
            bottom=Top(n_ex, key=rank_key)))  # smaller rank key = better document
        selected_parts = selected | "SummarizeSelected" >> beam.CombineGlobally(NamedCombineFn(
            SelectedParts, histogram=ScoreHistogramCombineFn(), totals=TotalsCombineFn(),
            sample=Top(n_sample, key=_sample_key, reverse=True),
            top=Top(n_ex, key=rank_key, reverse=True), boundary=Top(n_ex, key=rank_key)))

        groups = (((scored | "CorpusGroupRows" >> beam.Map(lambda d: (_group(d), _totals(d) + (0, 0, 0)))),
                   (selected | "SelectedGroupRows" >> beam.Map(lambda d: (_group(d), (0, 0, 0) + _totals(d)))))
                  | "AllGroupRows" >> beam.Flatten()
                  | "SumPerGroup" >> beam.CombinePerKey(SumTuplesCombineFn(6))
                  | "GroupTable" >> beam.CombineGlobally(NamedCombineFn(
                      GroupParts, distinct=beam.combiners.CountCombineFn(),
                      by_corpus=Top(n_groups, key=lambda kv: (kv[1][0], kv[0])),
                      by_selection=Top(n_groups, key=lambda kv: (kv[1][3], kv[0]))))
                  | "GroupRows" >> beam.Map(group_table))

        snippets = ((scored_parts | "BottomExamples" >> beam.FlatMap(lambda parts: parts.bottom),
                     selected_parts | "SelectedExamples" >> beam.FlatMap(
                         lambda parts: parts.top + parts.boundary))
                    | "AllExamples" >> beam.Flatten()
                    | "FetchSnippets" >> FetchSnippets(*self._fetch)
                    | "SnippetList" >> beam.combiners.ToList())
        return scored_parts | "AssembleSummary" >> beam.Map(
            assemble_summary, AsSingleton(selected_parts), AsSingleton(groups), AsSingleton(snippets),
            self._group_field, n_sample, self._token_measure)
