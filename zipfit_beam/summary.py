"""What the report needs, computed in the pipeline with combiners: score histograms, totals
per group, a deterministic sample, and the top and bottom examples. The result is one small
dict (``summary.json`` next to the output), whatever the corpus size: the launcher renders
the report from it and never reads the corpus.

    ScoredDocument --DescribeDocuments--> DocFacts --SummarizeSelection--> {summary dict}
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import PCollection

from zipfit_beam import stats
from zipfit_beam.io import SUMMARY_NAME  # noqa: F401  (re-exported: where the summary is written)
from zipfit_beam.records import ScoredDocument, rank_key
from zipfit_beam.stats import DocFacts

SAMPLE_SIZE = 2000  # points in the score-vs-length plot
EXAMPLES = 10  # documents in each example table
MAX_GROUPS = 30  # groups listed (by corpus size and by selection size)


class DescribeDocumentDoFn(beam.DoFn):
    """ScoredDocument -> DocFacts (sizes, group, a text snippet), read from the record;
    ``selected`` and ``contaminated`` are fixed per input collection."""

    def __init__(self, text_field: str, group_field: Optional[str], selected: bool,
                 contaminated: bool):
        self._text_field, self._group_field = text_field, group_field
        self._selected, self._contaminated = selected, contaminated

    def process(self, doc: ScoredDocument):
        text, group = stats.record_text_and_group(doc.record, self._text_field, self._group_field)
        yield DocFacts(doc.id, doc.score, doc.source, doc.position, len(text.encode("utf-8")),
                       stats.count_tokens(text), group, self._selected, self._contaminated,
                       text[:stats.SNIPPET_CHARS])


class DescribeDocuments(beam.PTransform):
    """PCollection[ScoredDocument] -> PCollection[DocFacts]."""

    def __init__(self, text_field: str, group_field: Optional[str], selected: bool = False,
                 contaminated: bool = False):
        super().__init__()
        self._fn = DescribeDocumentDoFn(text_field, group_field, selected, contaminated)

    def expand(self, docs):
        return docs | "Describe" >> beam.ParDo(self._fn).with_output_types(DocFacts)


class ScoreHistogramCombineFn(beam.CombineFn):
    """DocFacts -> {bin: count} over fixed bins of width ``stats.HISTOGRAM_BIN_WIDTH``
    (sparse, so it stays small; partial histograms add up)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, facts: DocFacts):
        b = stats.histogram_bin(facts.score)
        acc[b] = acc.get(b, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        return stats.merge_counts(accs)

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


# docs, bytes, tokens
Totals = Tuple[int, int, int]


def _totals(facts: DocFacts) -> Totals:
    return (1, facts.n_bytes, facts.n_tokens)


class SumTotalsCombineFn(beam.CombineFn):
    """(docs, bytes, tokens) tuples -> their element-wise sum ((0, 0, 0) when empty)."""

    def create_accumulator(self):
        return (0, 0, 0)

    def add_input(self, acc, row):
        return tuple(a + b for a, b in zip(acc, row))

    def merge_accumulators(self, accs):
        out = (0, 0, 0)
        for acc in accs:
            out = self.add_input(out, acc)
        return out

    def extract_output(self, acc):
        return acc


def _sample_point(f: DocFacts, seed: int = 0):
    # (sample key, score, bytes, tokens, group, contaminated, id): small, no text
    return (stats.sample_key(f.source, f.position, seed), f.score, f.n_bytes, f.n_tokens,
            f.group, f.contaminated, f.id)


def _example(f: DocFacts) -> dict:
    return {"id": f.id, "score": f.score, "source": f.source, "position": f.position,
            "group": f.group, "bytes": f.n_bytes, "tokens": f.n_tokens, "snippet": f.snippet,
            "contaminated": f.contaminated}


def _group_table(corpus: List[Tuple[str, Totals]], chosen: List[Tuple[str, Totals]]) -> List[dict]:
    rows = {}
    for group, (docs, nbytes, tokens) in corpus:
        rows[group] = {"group": group, "docs": docs, "bytes": nbytes, "tokens": tokens,
                       "selected_docs": 0, "selected_bytes": 0, "selected_tokens": 0}
    for group, (docs, nbytes, tokens) in chosen:
        row = rows.setdefault(group, {"group": group, "docs": 0, "bytes": 0, "tokens": 0})
        row.update(selected_docs=docs, selected_bytes=nbytes, selected_tokens=tokens)
    return sorted(rows.values(), key=lambda r: (-r["docs"], -r["selected_docs"], r["group"]))


def assemble_summary(parts: Dict, group_field: Optional[str], sample_size: int) -> dict:
    """The named partial results -> the summary dict (see ``SummarizeSelection``)."""
    # The sampled documents that were selected: both samples take the smallest keys, so a
    # scored sample member is selected iff its key is among the selected sample's keys.
    selected_keys = {p[0] for p in parts["selected_sample"]}
    sample = [{"score": p[1], "bytes": p[2], "tokens": p[3], "group": p[4],
               "contaminated": p[5], "selected": p[0] in selected_keys}
              for p in sorted(parts["sample"])]
    corpus_groups = {g: t for g, t in parts["corpus_groups_top"]}
    corpus_groups.update(parts["selected_groups_in_corpus"])
    return {
        "histogram": {"bin_width": stats.HISTOGRAM_BIN_WIDTH, "all": parts["hist_all"],
                      "selected": parts["hist_selected"], "contaminated": parts["hist_contaminated"]},
        "totals": {name: dict(zip(("docs", "bytes", "tokens"), parts[f"totals_{name}"]))
                   for name in ("corpus", "selected", "contaminated")},
        "token_measure": "whitespace-separated tokens",
        "groups": {"field": group_field, "distinct": parts["group_count"],
                   "rows": _group_table(sorted(corpus_groups.items()), parts["selected_groups"])},
        "sample": {"size": len(sample), "requested": sample_size, "points": sample},
        "examples": {"top": [_example(f) for f in parts["top"]],
                     "boundary": [_example(f) for f in parts["boundary"]],
                     "bottom": [_example(f) for f in parts["bottom"]]},
    }


class SummarizeSelection(beam.PTransform):
    """(scored facts, selected facts) -> a singleton PCollection with the summary dict:

    ``histogram`` (fine sparse score histograms of all, selected and contaminated documents),
    ``totals`` (docs, bytes, tokens of corpus, selection, contaminated), ``groups`` (per
    ``group_field`` value: corpus and selection totals; the ``MAX_GROUPS`` largest by corpus
    size plus the largest by selection size), ``sample`` (a deterministic uniform sample of
    ``sample_size`` scored documents: score, bytes, tokens, group, flags) and ``examples``
    (the best selected, the last selected before the threshold, and the worst scored, each
    with an unescaped text snippet: the renderer escapes).

    ``scored`` holds every scored document (``contaminated`` set on the ones the guard
    flagged); ``selected`` the selection. Every part is a combiner, so nothing but small
    partial results meets on one worker."""

    def __init__(self, group_field: Optional[str] = None, sample_size: int = SAMPLE_SIZE,
                 examples: int = EXAMPLES, max_groups: int = MAX_GROUPS):
        super().__init__()
        self._group_field, self._sample_size = group_field, sample_size
        self._examples, self._max_groups = examples, max_groups

    def expand(self, facts: Tuple[PCollection, PCollection]):
        scored, selected = facts
        n_ex, n_groups, n_sample = self._examples, self._max_groups, self._sample_size
        contaminated = scored | "OnlyContaminated" >> beam.Filter(lambda f: f.contaminated)
        key = rank_key  # (-score, id, source, position): smaller is better

        def per_group(pcoll, label):
            return (pcoll
                    | f"{label}GroupRows" >> beam.Map(lambda f: (f.group, _totals(f)))
                    | f"{label}SumPerGroup" >> beam.CombinePerKey(SumTotalsCombineFn()))

        corpus_groups = per_group(scored, "Corpus")
        selected_groups = per_group(selected, "Selected")
        biggest_selected = selected_groups | "LargestSelectedGroups" >> beam.combiners.Top.Of(
            n_groups, key=lambda kv: (kv[1][0], kv[0]))
        parts = {
            "hist_all": scored | "HistAll" >> beam.CombineGlobally(ScoreHistogramCombineFn()),
            "hist_selected": selected | "HistSelected" >> beam.CombineGlobally(ScoreHistogramCombineFn()),
            "hist_contaminated": contaminated | "HistContaminated" >> beam.CombineGlobally(
                ScoreHistogramCombineFn()),
            "totals_corpus": (scored | "CorpusRows" >> beam.Map(_totals)
                              | "CorpusTotals" >> beam.CombineGlobally(SumTotalsCombineFn())),
            "totals_selected": (selected | "SelectedRows" >> beam.Map(_totals)
                                | "SelectedTotals" >> beam.CombineGlobally(SumTotalsCombineFn())),
            "totals_contaminated": (contaminated | "ContaminatedRows" >> beam.Map(_totals)
                                    | "ContaminatedTotals" >> beam.CombineGlobally(SumTotalsCombineFn())),
            "corpus_groups_top": corpus_groups | "LargestCorpusGroups" >> beam.combiners.Top.Of(
                n_groups, key=lambda kv: (kv[1][0], kv[0])),
            # corpus totals of the groups that lead the selection, so both tables are complete
            "selected_groups_in_corpus": (
                corpus_groups | "CorpusOfSelectedGroups" >> beam.Filter(
                    lambda kv, top: kv[0] in {g for g, _ in top}, beam.pvalue.AsSingleton(biggest_selected))
                | "AsPairs" >> beam.combiners.ToList()),
            "selected_groups": biggest_selected,
            "group_count": corpus_groups | "CountGroups" >> beam.combiners.Count.Globally(),
            "sample": (scored | "SamplePoints" >> beam.Map(_sample_point)
                       | "Sample" >> beam.combiners.Top.Smallest(n_sample)),
            "selected_sample": (selected | "SelectedSamplePoints" >> beam.Map(_sample_point)
                                | "SelectedSample" >> beam.combiners.Top.Smallest(n_sample)),
            "top": selected | "TopExamples" >> beam.combiners.Top.Smallest(n_ex, key=key),
            "boundary": selected | "BoundaryExamples" >> beam.combiners.Top.Largest(n_ex, key=key),
            "bottom": scored | "BottomExamples" >> beam.combiners.Top.Largest(n_ex, key=key),
        }
        group_field = self._group_field
        return ([pcoll | f"Name_{name}" >> beam.Map(lambda v, name=name: (name, v))
                 for name, pcoll in parts.items()]
                | "AllParts" >> beam.Flatten()
                | "PartsAsDict" >> beam.combiners.ToDict()
                | "AssembleSummary" >> beam.Map(assemble_summary, group_field, n_sample))
