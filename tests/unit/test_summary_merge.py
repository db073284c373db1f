"""Summary combiners merged the way a distributed runner merges them: two or more
accumulators (a local run of a small job has one bundle, so Beam never merges there; on
Flink with --parallelism=2 it does, and a totals combiner once read the accumulators as
documents). And the array summary of a batch equals its definition over the documents."""

import random

import pytest

from zipfit_beam.io.keys import KeyBatch
from zipfit_beam.records import ScoredDocument, rank_key
from zipfit_beam.report import stats
from zipfit_beam.report.summary import PartsCombineFn, SumTuplesCombineFn, batch_summary, table_summaries


def _docs(rng, n):
    pool = [0.0, -0.0, 0.25, 0.1234, -0.03] + [rng.uniform(-0.1, 0.6) for _ in range(8)]
    return [ScoredDocument(f"id{rng.randrange(n)}", rng.choice(pool), rng.choice(["a.jsonl", "b/c.parquet"]), i,
                           tokens=rng.randrange(1, 90), text_bytes=rng.randrange(0, 900),
                           group=rng.choice([None, "x", "y"]), contaminated_by=rng.choice(["", "", "T1"]))
            for i in range(n)]


def _expected(docs, sample_size, examples):
    hist, c_hist = {}, {}
    for d in docs:
        b = stats.histogram_bin(d.score)
        hist[b] = hist.get(b, 0) + 1
        if d.contaminated_by:
            c_hist[b] = c_hist.get(b, 0) + 1
    flagged = [d for d in docs if d.contaminated_by]
    groups = {}
    for d in docs:
        g = groups.setdefault(d.group or "", [0, 0, 0])
        g[0], g[1], g[2] = g[0] + 1, g[1] + d.text_bytes, g[2] + d.tokens
    return (dict(sorted(hist.items())), (len(docs), sum(d.text_bytes for d in docs), sum(d.tokens for d in docs)),
            dict(sorted(c_hist.items())),
            (len(flagged), sum(d.text_bytes for d in flagged), sum(d.tokens for d in flagged)),
            sorted(docs, key=lambda d: stats.sample_key(d.source, d.position))[:sample_size],
            sorted(docs, key=rank_key)[:examples], sorted(docs, key=rank_key, reverse=True)[:examples],
            {g: tuple(v) for g, v in groups.items()})


@pytest.mark.parametrize("one_table", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_batch_summaries_merged_equal_the_definition(seed, one_table):
    rng = random.Random(seed)
    docs = _docs(rng, rng.randrange(1, 400))
    if one_table:  # one source file: distinct positions, as in a key table
        docs = [d._replace(source="a.jsonl") for d in docs]
    sample_size, examples = rng.choice([(0, 1), (5, 2), (50, 10), (1000, 3)])
    cut = sorted(rng.sample(range(1, len(docs)), min(12, len(docs) - 1))) if len(docs) > 1 else []
    pieces = [docs[a:b] for a, b in zip([0] + cut, cut + [len(docs)])]
    batches = [KeyBatch.of_documents(p) for p in pieces]
    if one_table:  # later batches' samples cut at the table's smallest keys so far
        summaries = list(table_summaries(iter(batches), sample_size, examples))
    else:
        summaries = [batch_summary(b, sample_size, examples) for b in batches]
    fn = PartsCombineFn(sample_size, examples)
    merged = fn.extract_output(fn.merge_accumulators(
        [fn.merge_accumulators([fn.create_accumulator(), s.parts]) for s in summaries]))
    groups = {}
    for s in summaries:
        for g, sums in s.groups:
            groups[g] = tuple(a + b for a, b in zip(groups.get(g, (0, 0, 0)), sums))
    assert tuple(merged) + (groups,) == _expected(docs, sample_size, examples)


def test_sum_tuples_merge_adds_accumulators():
    assert SumTuplesCombineFn(2).merge_accumulators([(1, 2), (3, 4), (5, 6)]) == (9, 12)
