"""Transform tests: each composite on the shared fixtures, with TestPipeline + assert_that."""

import json

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from zipfit_beam.parsing import parse_record
from zipfit_beam.records import Document, RawRecord, ScoredDocument
from zipfit_beam.transforms import FetchSelected, ReadDocuments, ScoreDocuments, SelectTopK

from tests.conftest import BAD_LINES, oracle_scores, oracle_top_k, write_lines


def as_docs(records, source="t.jsonl"):
    return [parse_record(RawRecord(source, i + 1, json.dumps(r).encode()), "text", "id")
            for i, r in enumerate(records)]


def test_read_documents_routes_every_bad_line_with_reason(tmp_path, sources, test_pipeline):
    good = [json.dumps(s).encode() for s in sources[:5]]
    path = write_lines(tmp_path / "mixed.jsonl.gz", good + [line for line, _ in BAD_LINES])
    with test_pipeline as p:
        res = p | ReadDocuments([path], "text", "id")
        assert_that(res.documents | beam.Map(lambda d: (d.id, d.position)),
                    equal_to([(s["id"], i + 1) for i, s in enumerate(sources[:5])]), label="Docs")
        assert_that(res.rejected | beam.Map(lambda d: (d.position, d.reason)),
                    equal_to([(6 + i, reason) for i, (_, reason) in enumerate(BAD_LINES)]), label="Dead")
        assert_that(res.read, equal_to([5 + len(BAD_LINES)]), label="Read")


def test_corrupt_gzip_shard_becomes_a_dead_letter(tmp_path, sources, test_pipeline):
    good = write_lines(tmp_path / "good.jsonl.gz", [json.dumps(s).encode() for s in sources])
    data = open(good, "rb").read()
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(data[: len(data) // 2] + b"\x00garbage" * 50)
    with test_pipeline as p:
        res = p | ReadDocuments([str(broken)], "text", "id")
        assert_that(res.rejected | beam.Map(lambda d: (d.source, d.reason)),
                    equal_to([(str(broken), "corrupt_file")]), label="Dead")
        # read = records readable before the damage + the one dead letter
        assert_that(res.documents | beam.combiners.Count.Globally() | beam.Map(lambda n: n < len(sources)),
                    equal_to([True]), label="Partial")


def test_score_documents_equals_oracle(sources, targets, test_pipeline):
    oracle = oracle_scores(sources, targets)
    with test_pipeline as p:
        docs = p | "Docs" >> beam.Create(as_docs(sources)).with_output_types(Document)
        tgts = p | "Targets" >> beam.Create(as_docs(targets, "targets.jsonl")).with_output_types(Document)
        scored = docs | ScoreDocuments(tgts, threads=3, batch_size=7)
        assert_that(scored | beam.Map(lambda d: (d.id, round(d.score, 12))),
                    equal_to([(i, round(s, 12)) for i, s in oracle.items()]))


def test_select_top_k_with_ties_is_exact_and_stable(test_pipeline):
    # 30 documents in three score bands; the boundary falls inside the 0.5 band.
    scored = [ScoredDocument(f"d{i:02d}", [0.9, 0.5, 0.1][i % 3], "s", i) for i in range(30)]
    k = 14  # 10 at 0.9, then the 4 smallest ids of the 10 at 0.5
    expect = oracle_top_k({d.id: d.score for d in scored}, k)
    assert len(expect) == k
    with test_pipeline as p:
        sel = p | beam.Create(scored).with_output_types(ScoredDocument) | SelectTopK(k)
        assert_that(sel.selected | beam.Map(lambda d: d.id), equal_to(expect), label="Sel")
        assert_that(sel.threshold | beam.Map(lambda t: t[1]), equal_to([expect[-1]]), label="Thr")


def test_select_top_k_more_than_available_keeps_all(test_pipeline):
    scored = [ScoredDocument(f"d{i}", 0.1 * i, "s", i) for i in range(5)]
    with test_pipeline as p:
        sel = p | beam.Create(scored).with_output_types(ScoredDocument) | SelectTopK(50)
        assert_that(sel.selected | beam.Map(lambda d: d.id), equal_to([d.id for d in scored]), label="All")
        assert_that(sel.threshold, equal_to([None]), label="NoThreshold")


def test_fetch_selected_reads_back_the_original_records(tmp_path, sources, test_pipeline):
    path = write_lines(tmp_path / "s.jsonl.gz", [json.dumps(s).encode() for s in sources])
    picks = {3: 0.5, 17: 0.25, 40: 0.125}  # 1-based line -> score
    chosen = [ScoredDocument(sources[n - 1]["id"], score, path, n) for n, score in picks.items()]
    with test_pipeline as p:
        lines = p | beam.Create(chosen).with_output_types(ScoredDocument) | FetchSelected("text", "id")
        assert_that(lines | beam.Map(json.loads) | beam.Map(lambda r: (r.pop("zipfit_score"), r)),
                    equal_to([(score, sources[n - 1]) for n, score in picks.items()]))
