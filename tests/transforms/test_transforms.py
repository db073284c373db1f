"""Transform tests: each composite on the shared fixtures, with TestPipeline + assert_that."""

import json

import apache_beam as beam
import pytest
from apache_beam.portability import common_urns
from apache_beam.testing.util import assert_that, equal_to

from zipfit_beam.combine import global_combine, side_combine
from zipfit_beam.io.parse import parse_record
from zipfit_beam.records import Document, RawRecord, ScoredDocument
from zipfit_beam.io.read import ReadDocuments
from zipfit_beam.score.transforms import ScoreDocuments
from zipfit_beam.select.transforms import SelectTopK
from zipfit_beam.io.fetch import FetchSelected
from zipfit_beam.score.spec import ScoringSpec, prepare_targets

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
        tgts = p | "Targets" >> beam.Create([prepare_targets(as_docs(targets, "targets.jsonl"))])
        scored = docs | ScoreDocuments(tgts, ScoringSpec(threads=3, batch_size=7, contamination_ngram=0))
        assert_that(scored | beam.Map(lambda d: (d.id, round(d.score, 12))),
                    equal_to([(i, round(s, 12)) for i, s in oracle.items()]))


def test_scoring_threads_emit_each_document_once_in_its_own_window(sources, targets, test_pipeline):
    # With a pool, batches are emitted a batch or two after they arrive and the last ones in
    # finish_bundle, as WindowedValues of their own element: windows must survive that.
    from apache_beam.transforms import window
    with test_pipeline as p:
        docs = (p | "Docs" >> beam.Create([(i, d) for i, d in enumerate(as_docs(sources))])
                | "Stamp" >> beam.Map(lambda x: window.TimestampedValue(x[1], 10 * (x[0] % 4)))
                .with_output_types(Document)
                | "Window" >> beam.WindowInto(window.FixedWindows(10)))
        tgts = (p | "Targets" >> beam.Create([prepare_targets(as_docs(targets, "targets.jsonl"))])
                | "GlobalTargets" >> beam.WindowInto(window.GlobalWindows()))
        scored = docs | ScoreDocuments(tgts, ScoringSpec(threads=2, batch_size=3, contamination_ngram=13))
        per_window = (scored | "Key" >> beam.Map(lambda d: ("n", d.id))
                      | "PerWindow" >> beam.GroupByKey()
                      | "Ids" >> beam.MapTuple(lambda _, ids: sorted(ids)))
        assert_that(per_window, equal_to([sorted(s["id"] for i, s in enumerate(sources) if i % 4 == w)
                                          for w in range(4)]))


def test_score_stream_keeps_batch_order_and_results(sources, targets):
    # BatchScorer.score_stream with a pool reads ahead while batches score; what comes out must
    # be exactly the one-thread results, batch by batch, in order.
    from zipfit_beam.score.transforms import BatchScorer
    docs, prepared = as_docs(sources), prepare_targets(as_docs(targets, "targets.jsonl"))
    batches = [docs[i:i + 3] for i in range(0, len(docs), 3)]
    out = {}
    for threads in (1, 2):
        scorer = BatchScorer(ScoringSpec(threads=threads, batch_size=3))
        scorer.setup()
        try:
            assert scorer.pooled == (threads > 1)
            out[threads] = list(scorer.score_stream(iter(batches), prepared))
        finally:
            scorer.teardown()
    assert out[2] == out[1] and [b for b, _ in out[1]] == batches
    assert [len(r.scores) for _, r in out[1]] == [len(b) for b in batches]
    # the columns are what collect's ScoredDocuments carry
    scorer = BatchScorer(ScoringSpec(batch_size=3))
    scorer.setup()
    scored = [d for b in batches for d in scorer.score(b, prepared)]
    assert [d.id for d in scored] == [d.id for d in docs]
    assert [(d.score, d.contaminated_by, d.tokens, d.text_bytes) for d in scored] == [
        row for _, r in out[1] for row in zip(*r)]


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
        lines = p | beam.Create(chosen).with_output_types(ScoredDocument) | FetchSelected("auto", "text", "id")
        assert_that(lines | beam.Map(lambda kv: json.loads(kv[1])) | "SplitScore" >> beam.Map(lambda r: (r.pop("zipfit_score"), r)),
                    equal_to([(score, sources[n - 1]) for n, score in picks.items()]))


# --- formats ----------------------------------------------------------------------------

def test_read_documents_from_parquet_avro_and_zstd_with_dead_letters(tmp_path, sources, test_pipeline):
    import pyarrow.parquet as pq
    import zstandard

    from tests.fixtures_io import corrupt_parquet_row_group, write_avro, write_parquet

    docs = [{"id": s["id"], "text": s["text"], "extra": i} for i, s in enumerate(sources[:24])]
    parquet = write_parquet(tmp_path / "a.parquet", docs[:12], row_group_size=4)
    corrupt_parquet_row_group(parquet, 1, "text")  # rows 4-7
    avro = write_avro(tmp_path / "b.avro", [{"id": d["id"], "text": d["text"]} for d in docs[12:18]])
    zst = tmp_path / "c.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(
        b"".join(json.dumps(d).encode() + b"\n" for d in docs[18:])))
    with test_pipeline as p:
        res = p | ReadDocuments([(parquet, "parquet"), avro, str(zst)], "text", "id")
        want = [(d["id"], parquet, i) for i, d in enumerate(docs[:12]) if not 4 <= i < 8]
        want += [(d["id"], avro, i) for i, d in enumerate(docs[12:18])]
        want += [(d["id"], str(zst), i + 1) for i, d in enumerate(docs[18:])]
        assert_that(res.documents | beam.Map(lambda d: (d.id, d.source, d.position)), equal_to(want),
                    label="Docs")
        # No document carries its record (a JSONL line included): the selected records are
        # read again for the output, so the text is the only copy that travels
        assert_that(res.documents | beam.Map(lambda d: (d.source.endswith(".zst"), bool(d.record))),
                    equal_to([(False, False)] * 14 + [(True, False)] * 6), label="Records")
        assert_that(res.rejected | beam.Map(lambda d: (d.source, d.position, d.reason)),
                    equal_to([(parquet, 4, "corrupt_row_group")]), label="Dead")
        assert_that(res.read, equal_to([21]), label="Read")
    assert pq.ParquetFile(parquet).metadata.num_rows == 12


def test_write_row_files_writes_every_shard_even_empty_ones(tmp_path, test_pipeline):
    import glob

    import pyarrow.parquet as pq

    from zipfit_beam.io.write import OutputPlan, WriteShards

    rows = [(("s", i), {"id": f"d{i}", "zipfit_score": 0.5 + i}) for i in range(2)]
    with test_pipeline as p:
        written = (p | beam.Create(rows)
                   | WriteShards(str(tmp_path), "selected", OutputPlan("parquet", ".parquet", "snappy", 4)))
        assert_that(written | beam.Map(lambda path: path.rsplit("/", 1)[1]),
                    equal_to([f"selected-0000{i}-of-00004.parquet" for i in range(4)]))
    files = sorted(glob.glob(str(tmp_path / "selected-*.parquet")))
    tables = [pq.read_table(f) for f in files]
    assert sum(t.num_rows for t in tables) == 2
    assert all(t.schema.names == ["id", "zipfit_score"] for t in tables)  # empty ones too


# --- issue 7: contamination, groups, the report's summary -------------------------------

def test_score_documents_finds_copies_while_scoring_and_carries_the_group(sources, targets,
                                                                            test_pipeline):
    planted = {"id": "copy", "text": "intro\n" + targets[2]["text"].upper(), "kind": "bench"}
    docs = [d._replace(group=d.id.split(":")[0]) for d in as_docs(sources[:10] + [planted])]
    oracle = oracle_scores(sources[:10] + [planted], targets)
    with test_pipeline as p:
        tgts = p | "Targets" >> beam.Create([prepare_targets(as_docs(targets, "targets.jsonl"))])
        scored = (p | "Docs" >> beam.Create(docs).with_output_types(Document)
                  | ScoreDocuments(tgts, ScoringSpec(threads=3, batch_size=4, contamination_ngram=13)))
        assert_that(scored | beam.Map(lambda d: (d.id, d.contaminated_by, d.group, round(d.score, 12))),
                    equal_to([(d.id, targets[2]["id"] if d.id == "copy" else "", d.group,
                               round(oracle[d.id], 12)) for d in docs]))


def test_score_documents_without_the_guard_flags_nothing(targets, test_pipeline):
    copy = as_docs([{"id": "copy", "text": targets[0]["text"]}])
    with test_pipeline as p:
        tgts = p | "Targets" >> beam.Create([prepare_targets(as_docs(targets, "targets.jsonl"))])
        scored = p | "Docs" >> beam.Create(copy).with_output_types(Document) | ScoreDocuments(tgts, ScoringSpec(contamination_ngram=0))
        assert_that(scored | beam.Map(lambda d: (d.id, d.contaminated_by, d.group)),
                    equal_to([("copy", "", None)]))


def test_guard_contamination_splits_by_the_flag_and_names_the_target(test_pipeline):
    from zipfit_beam.score.transforms import GuardContamination
    scored = [ScoredDocument(f"d{i}", 0.1 * i, "s.jsonl", i, contaminated_by="T/3" if i in (2, 5) else "")
              for i in range(8)]
    with test_pipeline as p:
        guarded = p | beam.Create(scored).with_output_types(ScoredDocument) | GuardContamination()
        assert_that(guarded.clean | "CleanIds" >> beam.Map(lambda d: d.id),
                    equal_to([f"d{i}" for i in range(8) if i not in (2, 5)]), label="Clean")
        assert_that(guarded.contaminated | "DirtyIds" >> beam.Map(lambda d: d.id),
                    equal_to(["d2", "d5"]), label="Contaminated")
        assert_that(guarded.hits | "Hits" >> beam.Map(tuple),
                    equal_to([("d2", 0.2, "s.jsonl", 2, "T/3"), ("d5", 0.5, "s.jsonl", 5, "T/3")]),
                    label="Hits")


def test_read_documents_keeps_the_group_field_of_jsonl_and_parquet_rows(tmp_path, sources, test_pipeline):
    from tests.fixtures_io import write_parquet
    docs = [{"id": s["id"], "text": s["text"], "kind": s["id"].split(":")[0], "n": i}
            for i, s in enumerate(sources[:6])]
    docs[1]["kind"] = None
    jsonl = write_lines(tmp_path / "a.jsonl", [json.dumps(d).encode() for d in docs[:3]])
    parquet = write_parquet(tmp_path / "b.parquet", docs[3:])
    with test_pipeline as p:
        by_kind = p | "ByKind" >> ReadDocuments([jsonl, parquet], "text", "id", group_field="kind")
        assert_that(by_kind.documents | "Kinds" >> beam.Map(lambda d: (d.id, d.group)),
                    equal_to([(d["id"], d["kind"] or "(missing)") for d in docs]), label="Kind")
        by_n = p | "ByNumber" >> ReadDocuments([parquet], "text", "id", group_field="n")
        assert_that(by_n.documents | "Numbers" >> beam.Map(lambda d: (d.id, d.group)),
                    equal_to([(d["id"], str(d["n"])) for d in docs[3:]]), label="Number")


def test_summarize_selection_counts_and_fetches_example_text(tmp_path, sources, test_pipeline):
    from zipfit_beam.report.summary import SummarizeSelection
    path = write_lines(tmp_path / "s.jsonl.gz", [json.dumps(s).encode() for s in sources[:20]])
    scored = [ScoredDocument(sources[i - 1]["id"], 0.01 * i, path, i, tokens=i, text_bytes=10 * i,
                             group="even" if i % 2 == 0 else "odd",
                             contaminated_by="T" if i == 3 else "") for i in range(1, 21)]
    chosen = [d for d in scored if d.score >= 0.17]  # the top 4

    def check(summaries):
        (s,) = summaries
        assert s["totals"]["corpus"] == {"docs": 20, "bytes": 2100, "tokens": 210}
        assert s["totals"]["selected"] == {"docs": 4, "bytes": 740, "tokens": 74}
        assert s["totals"]["contaminated"] == {"docs": 1, "bytes": 30, "tokens": 3}
        rows = {r["group"]: r for r in s["groups"]["rows"]}
        assert rows["even"]["docs"] == 10 and rows["even"]["selected_docs"] == 2
        assert s["groups"]["field"] == "kind" and s["token_measure"] == "regex-gpt2"
        ex = s["examples"]
        assert [e["position"] for e in ex["top"]] == [20, 19]
        assert [e["position"] for e in ex["boundary"]] == [17, 18]
        assert [e["position"] for e in ex["bottom"]] == [1, 2]
        # the text of each example, read back from the file
        for e in ex["top"] + ex["boundary"] + ex["bottom"]:
            assert e["snippet"] == sources[e["position"] - 1]["text"][:600]
        assert sum(s["histogram"]["all"].values()) == 20
        assert sum(s["histogram"]["contaminated"].values()) == 1
        assert s["sample"]["size"] == 5 and all(
            p["selected"] == (p["score"] >= 0.17) for p in s["sample"]["points"])

    with test_pipeline as p:
        all_docs = p | "Scored" >> beam.Create(scored).with_output_types(ScoredDocument)
        selected = p | "Selected" >> beam.Create(chosen).with_output_types(ScoredDocument)
        summary = (all_docs, selected) | SummarizeSelection(("auto", "text", "id"), "kind",
                                                            "regex-gpt2", sample_size=5, examples=2)
        assert_that(summary, check)


def test_a_files_scoring_batches_end_at_batch_chars(tmp_path, sources, targets, monkeypatch):
    # ScoreFilesDoFn: batch_size documents, or fewer once their texts hold BATCH_CHARS; the
    # keys are the same either way.
    from zipfit_beam.io import keys
    from zipfit_beam.io.templates import as_text_spec
    from zipfit_beam.score import transforms
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(s).encode() for s in sources])
    prepared = prepare_targets(as_docs(targets, "targets.jsonl"))
    seen, tables, default = {}, {}, transforms.BATCH_CHARS
    for cap in (default, 3000):
        monkeypatch.setattr(transforms, "BATCH_CHARS", cap)
        dofn = transforms.ScoreFilesDoFn(ScoringSpec(), as_text_spec("text"), "id", None,
                                         str(tmp_path / f"tables-{cap}"), "fp")
        submit = dofn._scorer.submit
        sizes = seen[cap] = []
        monkeypatch.setattr(dofn._scorer, "submit", lambda b, t: (sizes.append(len(b)), submit(b, t))[1])
        dofn.setup()
        (table,) = dofn.process((path, "jsonl"), prepared)
        tables[cap] = sorted(keys.read_keys(table))
    assert seen[default] == [len(sources)]
    small = seen[3000]
    assert len(small) > 3 and sum(small) == len(sources)
    start = 0  # each batch stops at the first document that takes it to 3000 chars
    for n in small:
        texts = [len(s["text"]) for s in sources[start:start + n]]
        assert sum(texts) >= 3000 or start + n == len(sources)
        assert sum(texts[:-1]) < 3000
        start += n
    assert tables[3000] == tables[default]


@pytest.mark.parametrize("values", [[], [3, 1, 2]])
def test_side_combine_reads_as_a_plain_global_combine(values, test_pipeline):
    fns = {"count": beam.combiners.CountCombineFn(), "sum": sum, "list": beam.combiners.ToListCombineFn()}
    with test_pipeline as p:
        once = p | "Once" >> beam.Create([None])
        xs = p | "Values" >> beam.Create(values, reshuffle=False).with_output_types(int)
        for name, fn in fns.items():
            side = side_combine(xs, f"Side{name}", fn)
            plain = beam.pvalue.AsSingleton(xs | f"Plain{name}" >> beam.CombineGlobally(fn))
            got = once | f"Both{name}" >> beam.Map(lambda _, a, b: (a, b), side, plain)
            assert_that(got | f"Same{name}" >> beam.MapTuple(lambda a, b: sorted(a) == sorted(b)
                                                              if isinstance(a, list) else a == b),
                        equal_to([True]), label=f"Check{name}")


def test_side_combine_saves_the_default_steps():
    def par_dos(combine):
        p = beam.Pipeline()
        combine(p | beam.Create([1]))
        return sum(t.spec.urn == common_urns.primitives.PAR_DO.urn
                   for t in p.to_runner_api().components.transforms.values())
    plain = par_dos(lambda xs: xs | beam.CombineGlobally(sum))
    assert par_dos(lambda xs: side_combine(xs, "Sum", sum)) == plain - 3


@pytest.mark.parametrize("values", [[], [3, 1, 2]])
def test_global_combine_is_a_plain_global_combine(values, test_pipeline):
    fns = {"count": (beam.combiners.CountCombineFn(), len(values)), "sum": (sum, sum(values)),
           "list": (beam.combiners.ToListCombineFn(), values), "max": (lambda xs: max(xs, default=-1), max(values, default=-1))}
    with test_pipeline as p:
        xs = p | "Values" >> beam.Create(values, reshuffle=False).with_output_types(int)
        for name, (fn, want) in fns.items():
            got = global_combine(xs, f"Global{name}", fn)
            plain = xs | f"Plain{name}" >> beam.CombineGlobally(fn)
            both = ((got, plain) | f"Both{name}" >> beam.Flatten()
                    | f"Sorted{name}" >> beam.Map(lambda v: sorted(v) if isinstance(v, list) else v))
            assert_that(both, equal_to([sorted(want) if isinstance(want, list) else want] * 2),
                        label=f"Check{name}")


def test_global_combine_has_fewer_transforms():
    def leaves(combine):
        p = beam.Pipeline()
        combine(p | beam.Create([1]))
        return sum(not t.subtransforms for t in p.to_runner_api().components.transforms.values())
    assert leaves(lambda xs: global_combine(xs, "Sum", sum)) == leaves(lambda xs: xs | beam.CombineGlobally(sum)) - 3
