"""Summary combiners merged the way a distributed runner merges them: two or more
accumulators (a local run of a small job has one bundle, so Beam never merges there; on
Flink with --parallelism=2 it does, and TotalsCombineFn used to read the accumulators as
documents)."""

from zipfit_beam.report.summary import SumTuplesCombineFn, TotalsCombineFn


def test_totals_merge_adds_accumulators():
    fn = TotalsCombineFn()
    assert fn.merge_accumulators([(1, 10, 3), (2, 5, 4)]) == (3, 15, 7)
    assert fn.merge_accumulators([(1, 10, 3)]) == (1, 10, 3)
    assert fn.merge_accumulators([]) == (0, 0, 0)


def test_sum_tuples_merge_adds_accumulators():
    assert SumTuplesCombineFn(2).merge_accumulators([(1, 2), (3, 4), (5, 6)]) == (9, 12)
