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

import functools
import heapq
from typing import Callable, Dict, Iterable, Iterator, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import PCollection

from zipfit_beam.combine import NamedCombineFn, global_combine, side_combine
from zipfit_beam.io import keys
from zipfit_beam.io.fetch import FetchSelected
from zipfit_beam.io.keys import KeyBatch
from zipfit_beam.io.parse import parse_any
from zipfit_beam.records import ScoredDocument, rank_key
from zipfit_beam.report import stats

__all__ = ["Parts", "BatchSummary", "GroupParts", "batch_summary", "table_summaries", "PartsCombineFn",
           "SumTuplesCombineFn", "SummarizeSelection", "assemble_summary"]

SAMPLE_SIZE = 2000  # points in the score-vs-length plot
EXAMPLES = 10  # documents in each example table
MAX_GROUPS = 30  # groups listed (by corpus size and by selection size)


class Parts(NamedTuple):
    """The summary of a set of scored documents (every scored one, or the selection), from
    pieces that merge (``PartsCombineFn``)."""
    histogram: dict  # {stats.histogram_bin: count}
    totals: tuple  # (docs, bytes, tokens)
    contaminated_histogram: dict  # the same over the documents the guard flagged
    contaminated_totals: tuple
    sample: list  # ScoredDocuments with the smallest sample keys, smallest first
    best: list  # the best ranked, best first
    worst: list  # the worst ranked, worst first


class BatchSummary(NamedTuple):
    """What one batch of key rows adds to the summary: its Parts and its per-group sums."""
    parts: Parts
    groups: list  # [(group, (docs, bytes, tokens))]


class GroupParts(NamedTuple):
    distinct: int  # how many groups there are
    by_corpus: list  # (group, 6 sums) of the largest groups by corpus size
    by_selection: list  # ... and by selection size


class SumTuplesCombineFn(beam.CombineFn):
    """Tuples of ``width`` numbers -> their element-wise sum (zeros when empty)."""

    def __init__(self, width: int):
        self._width = width

    def create_accumulator(self):
        return (0,) * self._width

    def add_input(self, acc, row):
        return _add(acc, row)

    def merge_accumulators(self, accs):
        # Beam merges only when there are two or more accumulators (two bundles or workers),
        # which a local run of a small job never has (tests/unit/test_summary_merge.py).
        out = self.create_accumulator()
        for acc in accs:
            out = _add(out, acc)
        return out

    def extract_output(self, acc):
        return acc


def _sample_order(doc: ScoredDocument) -> tuple:
    return stats.sample_key(doc.source, doc.position), doc.source, doc.position


def batch_summary(batch: KeyBatch, sample_size: int, examples: int) -> BatchSummary:
    """One batch's BatchSummary, by array operations: only the rows that may be in the
    sample (its ``sample_size`` smallest sample keys) or among the ``examples`` best or
    worst become ScoredDocuments."""
    return _batch_summary(batch, sample_size, examples, None)[0]


def table_summaries(batches: Iterable[KeyBatch], sample_size: int, examples: int) -> Iterator[BatchSummary]:
    """The BatchSummary of each batch of one table, in order, where a batch's sample holds
    only its rows whose sample keys are at most the ``sample_size``-th smallest of the
    table's earlier batches: a row past that key has ``sample_size`` rows before it in the
    sample order, so it is in no merged sample, and the merged Parts are those of
    ``batch_summary`` per batch. So about ``sample_size * (1 + ln(batches))`` rows of a
    table become ScoredDocuments, not ``sample_size`` per batch."""
    import numpy as np
    smallest = np.empty(0, dtype=np.uint64)  # the table's smallest sample keys so far
    for batch in batches:
        below = smallest.max() if sample_size and len(smallest) >= sample_size else None
        summary, keys = _batch_summary(batch, sample_size, examples, below)
        smallest = np.concatenate([smallest, keys])
        if len(smallest) > sample_size:
            smallest = np.partition(smallest, sample_size - 1)[:sample_size]
        yield summary


def _batch_summary(batch: KeyBatch, sample_size: int, examples: int, below) -> Tuple[BatchSummary, object]:
    """``batch_summary``, its sample only from rows whose sample key is at most ``below``
    (None: any), and the sample's keys (numpy uint64)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rb, n = batch.batch, len(batch)
    score, tokens, nbytes = batch.columns.score, batch.columns.tokens, batch.array("bytes").astype(np.int64)
    flagged = batch.flagged()
    sources = pc.dictionary_encode(rb.column("source"))
    hashes = np.array([stats.source_hash(x) for x in sources.dictionary.to_pylist()], dtype=np.uint64)
    keys = stats.sample_keys(hashes[sources.indices.to_numpy(zero_copy_only=False)], batch.array("position"))
    in_sample = np.arange(n) if below is None else np.flatnonzero(keys <= below)
    if len(in_sample) > sample_size:
        in_sample = in_sample[np.argpartition(keys[in_sample], sample_size - 1)[:sample_size]]
    # -0.0 folded into 0.0 so that Arrow's order is the rank key's
    ranked = pa.record_batch([pa.array(score + 0.0), rb.column("id"), rb.column("source"), rb.column("position")],
                             names=["score", "id", "source", "position"])
    k = min(examples, n)
    best = pc.select_k_unstable(ranked, k, [("score", "descending"), ("id", "ascending"),
                                            ("source", "ascending"), ("position", "ascending")]) if k else []
    worst = pc.select_k_unstable(ranked, k, [("score", "ascending"), ("id", "descending"),
                                             ("source", "descending"), ("position", "descending")]) if k else []
    groups = pa.table({"group": pc.fill_null(rb.column("group"), ""), "bytes": nbytes, "tokens": tokens}) \
        .group_by("group").aggregate([("bytes", "count"), ("bytes", "sum"), ("tokens", "sum")])
    parts = Parts(stats.histogram_of(score), (n, int(nbytes.sum()), int(tokens.sum())),
                  stats.histogram_of(score[flagged]),
                  (int(flagged.sum()), int(nbytes[flagged].sum()), int(tokens[flagged].sum())),
                  sorted(batch.documents(in_sample.tolist()), key=_sample_order),
                  sorted(batch.documents(list(best)), key=rank_key),
                  sorted(batch.documents(list(worst)), key=rank_key, reverse=True))
    return BatchSummary(parts, [(g, (c, b, t)) for g, c, b, t in zip(
        *(groups.column(name).to_pylist() for name in ("group", "bytes_count", "bytes_sum", "tokens_sum")))]), \
        keys[in_sample]


class PartsCombineFn(beam.CombineFn):
    """Parts -> Parts: histograms and totals added, the ``sample_size`` smallest sample keys
    and the ``examples`` best and worst documents kept."""

    def __init__(self, sample_size: int, examples: int):
        self._sample_size, self._examples = sample_size, examples

    def create_accumulator(self):
        return Parts({}, (0, 0, 0), {}, (0, 0, 0), [], [], [])

    def add_input(self, acc, parts: Parts):
        return self.merge_accumulators([acc, parts])

    def merge_accumulators(self, accs):
        accs = list(accs)
        if len(accs) == 1:
            return accs[0]
        n, k = self._sample_size, self._examples

        def each(field):
            return [x for acc in accs for x in getattr(acc, field)]

        return Parts(stats.merge_counts(a.histogram for a in accs),
                     functools.reduce(_add, (a.totals for a in accs)),
                     stats.merge_counts(a.contaminated_histogram for a in accs),
                     functools.reduce(_add, (a.contaminated_totals for a in accs)),
                     heapq.nsmallest(n, each("sample"), key=_sample_order),
                     heapq.nsmallest(k, each("best"), key=rank_key),
                     heapq.nlargest(k, each("worst"), key=rank_key))

    def extract_output(self, acc):
        return acc._replace(histogram=dict(sorted(acc.histogram.items())),
                            contaminated_histogram=dict(sorted(acc.contaminated_histogram.items())))


def _add(acc: tuple, row: tuple) -> tuple:
    return tuple(a + b for a, b in zip(acc, row))


def _group(doc: ScoredDocument) -> str:
    return doc.group if doc.group is not None else ""


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


def assemble_summary(scored: Parts, selected: Parts, groups: GroupParts, snippet_pairs,
                     group_field: Optional[str], sample_size: int, token_measure: str) -> dict:
    """The partial results of ``SummarizeSelection`` -> the summary dict."""
    # The sampled documents that were selected: both samples take the smallest sample keys,
    # so a scored sample member is selected iff it is in the selected sample.
    selected_keys = {rank_key(d) for d in selected.sample}
    snippets = dict(snippet_pairs)
    examples = {"top": selected.best, "boundary": selected.worst, "bottom": scored.worst}
    return {
        "histogram": {"bin_width": stats.HISTOGRAM_BIN_WIDTH, "all": scored.histogram,
                      "selected": selected.histogram, "contaminated": scored.contaminated_histogram},
        "totals": {name: dict(zip(("docs", "bytes", "tokens"), t))
                   for name, t in (("corpus", scored.totals), ("selected", selected.totals),
                                   ("contaminated", scored.contaminated_totals))},
        "token_measure": token_measure,
        "groups": dict(group_table(groups), field=group_field),
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
    flagged), or, with ``batches`` (handle -> iterator of ``io.keys.KeyBatch``), the key
    tables that hold them; ``selected`` the selection. ``fetch``: (--format, text spec, id
    field) to read the examples' text again. Each side is summarized a batch of rows at a
    time by array operations (``batch_summary``), and the pieces merge in one combiner
    (``PartsCombineFn``), the groups in a per-key sum, so nothing but small partial results
    meets on one worker and hardly any document becomes a Python object."""

    def __init__(self, fetch: Tuple[str, object, str], group_field: Optional[str] = None,
                 token_measure: str = "tokens", sample_size: int = SAMPLE_SIZE,
                 examples: int = EXAMPLES, max_groups: int = MAX_GROUPS,
                 batches: Optional[Callable] = None):
        super().__init__()
        self._fetch, self._group_field, self._token_measure = fetch, group_field, token_measure
        self._sample_size, self._examples, self._max_groups = sample_size, examples, max_groups
        self._batches = batches

    def _summaries(self, pcoll, name: str, batches: Optional[Callable], side: bool):
        """PCollection -> (Parts, per-group sums): a BatchSummary per batch of rows, read from
        key tables (``batches``) or gathered from ScoredDocuments. The Parts are a singleton
        PCollection, or with ``side`` a side input (``combine.side_combine``)."""
        n_sample, n_ex = self._sample_size, self._examples
        if batches is not None:
            summaries = pcoll | f"{name}Batches" >> beam.FlatMap(
                lambda t: table_summaries(batches(t), n_sample, n_ex))
        else:
            summaries = (pcoll
                         | f"Batch{name}" >> beam.BatchElements(max_batch_size=keys.READ_BATCH_ROWS)
                         | f"{name}Batches" >> beam.Map(
                             lambda docs: batch_summary(KeyBatch.of_documents(docs), n_sample, n_ex)))
        parts = summaries | f"{name}Parts" >> beam.Map(lambda b: b.parts)
        combine = PartsCombineFn(n_sample, n_ex)
        parts = (side_combine if side else global_combine)(parts, f"Summarize{name}", combine)
        groups = (summaries
                  | f"{name}GroupRows" >> beam.FlatMap(lambda b: b.groups)
                  | f"Sum{name}PerGroup" >> beam.CombinePerKey(SumTuplesCombineFn(3)))
        return parts, groups

    def expand(self, docs: Tuple[PCollection, PCollection]):
        scored, selected = docs
        n_groups, n_sample = self._max_groups, self._sample_size
        Top = beam.combiners.TopCombineFn  # noqa: N806
        # The scored Parts are AssembleSummary's main input (so it runs on an empty corpus
        # too); everything else is only read as a side input.
        scored_parts, corpus_groups = self._summaries(scored, "Scored", self._batches, side=False)
        selected_parts, selected_groups = self._summaries(selected, "Selected", None, side=True)

        # Each side is summed per group before the two meet: a Flatten of per-document rows
        # from two stages is a buffer of every row on the local runner (250 MB at 2M documents).
        group_sums = ((corpus_groups | "AsCorpusSums" >> beam.MapTuple(lambda g, sums: (g, sums + (0, 0, 0))),
                       selected_groups | "AsSelectedSums" >> beam.MapTuple(lambda g, sums: (g, (0, 0, 0) + sums)))
                      | "AllGroupSums" >> beam.Flatten()
                      | "SumPerGroup" >> beam.CombinePerKey(SumTuplesCombineFn(6)))
        groups = side_combine(group_sums, "GroupTable", NamedCombineFn(
            GroupParts, distinct=beam.combiners.CountCombineFn(),
            by_corpus=Top(n_groups, key=lambda kv: (kv[1][0], kv[0])),
            by_selection=Top(n_groups, key=lambda kv: (kv[1][3], kv[0]))))

        examples = ((scored_parts | "BottomExamples" >> beam.FlatMap(lambda parts: parts.worst),
                     selected_parts.pvalue | "SelectedExamples" >> beam.FlatMap(
                         lambda parts: parts.best + parts.worst))
                    | "AllExamples" >> beam.Flatten()
                    | "FetchSnippets" >> FetchSnippets(*self._fetch))
        snippets = side_combine(examples, "SnippetList", beam.combiners.ToListCombineFn())
        return scored_parts | "AssembleSummary" >> beam.Map(
            assemble_summary, selected_parts, groups, snippets,
            self._group_field, n_sample, self._token_measure)
