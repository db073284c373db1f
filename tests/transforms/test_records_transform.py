"""``zipfit_beam.ZipFitSelect`` over a PCollection of records, against the brute-force oracle."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

import zipfit_beam

from tests.conftest import oracle_scores, oracle_top_k

K = 7


def check(result, sources, targets, k=K, leave_out=()):
    oracle = {i: s for i, s in oracle_scores(sources, targets).items() if i not in leave_out}
    want = oracle_top_k(oracle, k)
    by_id = {s["id"]: s for s in sources}
    assert_that(result.selected | "Ids" >> beam.Map(lambda r: r["id"]), equal_to(want), label="Ids")
    assert_that(result.selected | "Exact" >> beam.Map(
        lambda r: (r["id"], {k: v for k, v in r.items() if k != "zipfit_score"} == by_id[r["id"]],
                   abs(r["zipfit_score"] - oracle[r["id"]]) < 1e-12)),
        equal_to([(i, True, True) for i in want]), label="Records")


@pytest.mark.parametrize("form", ["dicts", "strings", "pcollection"])
def test_records_select_the_oracles_top_k(sources, targets, test_pipeline, form):
    bad = [{"id": "no-text"}, {"id": "blank", "text": "  "}, {"id": ["x"], "text": "y = 1"}, "not a dict"]
    with test_pipeline as p:
        records = p | "Records" >> beam.Create(sources + bad)
        given = {"dicts": targets, "strings": [t["text"] for t in targets],
                 "pcollection": p | "Targets" >> beam.Create(targets)}[form]
        result = records | zipfit_beam.ZipFitSelect(given, top_k=K, contamination_ngram=0)
        check(result, sources, targets)
        assert_that(result.rejected | beam.Map(lambda d: d.reason),
                    equal_to(["missing_text", "empty_text", "invalid_id", "not_an_object"]), label="Rejected")


def test_records_guard_leaves_out_a_copied_target(sources, targets, test_pipeline):
    planted = dict(id="copy", text="notes\n" + targets[1]["text"])
    with test_pipeline as p:
        records = p | beam.Create(sources + [planted])
        guarded = records | "Guarded" >> zipfit_beam.ZipFitSelect(targets, top_k=K)
        check(guarded, sources + [planted], targets, leave_out={"copy"})
        kept = records | "Kept" >> zipfit_beam.ZipFitSelect(targets, top_k=K, allow_contaminated=True)
        assert_that(kept.selected | "KeptIds" >> beam.Map(lambda r: r["id"]),
                    equal_to(oracle_top_k(oracle_scores(sources + [planted], targets), K)), label="Kept")
    assert "copy" in oracle_top_k(oracle_scores(sources + [planted], targets), K)
