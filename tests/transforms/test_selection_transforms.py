"""SelectDocuments / FindCut / WriteSelectedShards in a TestPipeline, against the oracle."""

import glob
import gzip
import os
import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from zipfit_beam.records import ScoredDocument
from zipfit_beam.select.cut import SelectionRule
from zipfit_beam.formats import OUTPUT_SUFFIXES
from zipfit_beam.io.write import OutputPlan, WriteShards
from zipfit_beam.select.transforms import SelectDocuments

from tests.conftest import local_pipeline_options, oracle_select


def scored_docs(n=120, seed=5, distinct=6):
    """Scores drawn from a few values (many ties), ids repeated across files."""
    rng = random.Random(seed)
    values = [rng.uniform(0.0, 0.3) for _ in range(distinct)]
    return [ScoredDocument(f"d{rng.randrange(n // 2):03d}", rng.choice(values), f"f{i % 2}.jsonl",
                           i + 1, rng.randint(1, 90), 10)
            for i in range(n)]


def as_tuples(docs):
    return [(d.id, d.score, d.source, d.position, d.tokens) for d in docs]


CASES = [dict(top_k=1), dict(top_k=37), dict(top_k=119), dict(top_k=120), dict(top_k=121),
         dict(top_k=10_000), dict(fraction=0.25), dict(fraction=0.001), dict(fraction=1.0),
         dict(token_budget=1), dict(token_budget=777), dict(token_budget=2_500),
         dict(token_budget=10 ** 7), dict(top_k=60, min_score=0.1),
         dict(token_budget=3_000, min_score=0.05), dict(fraction=0.9, min_score=0.2)]


def test_select_documents_equals_oracle_in_every_mode(test_pipeline):
    docs = scored_docs()
    with test_pipeline as p:
        created = p | beam.Create(docs).with_output_types(ScoredDocument)
        for n, case in enumerate(CASES):
            want = oracle_select(as_tuples(docs), **case)
            sel = created | f"Select{n}" >> SelectDocuments(SelectionRule(**case))
            assert_that(sel.selected | f"Tuples{n}" >> beam.Map(
                lambda d: (d.id, d.score, d.source, d.position, d.tokens)),
                equal_to(want), label=f"Selected{n}")
            assert_that(sel.cut | f"Counts{n}" >> beam.Map(lambda c: (c.selected, c.tokens, c.scored)),
                        equal_to([(len(want), sum(d[4] for d in want), len(docs))]), label=f"Cut{n}")
    assert {len(oracle_select(as_tuples(docs), **c)) for c in CASES} >= {0, 1, 37, 119, 120}


def test_budget_inside_a_document_and_ties_at_the_boundary(test_pipeline):
    # Five documents tie at 0.5; ids decide their order. The budget ends inside the third
    # of them (10 + 3 x 20 = 70 > 65), so exactly two of the ties are taken, and the
    # cheap document after them (1 token) is not: prefix semantics.
    docs = [ScoredDocument("top", 0.9, "s", 1, 10)] + \
        [ScoredDocument(i, 0.5, "s", n, 20) for n, i in enumerate("edcba", start=2)] + \
        [ScoredDocument("cheap", 0.1, "s", 9, 1)]
    with test_pipeline as p:
        sel = (p | beam.Create(docs).with_output_types(ScoredDocument)
               | SelectDocuments(SelectionRule(token_budget=65)))
        assert_that(sel.selected | beam.Map(lambda d: d.id), equal_to(["top", "a", "b"]), label="Ids")
        assert_that(sel.threshold | beam.Map(lambda t: t[1]), equal_to(["b"]), label="Threshold")


def test_nothing_selected_and_empty_input(test_pipeline):
    docs = scored_docs(10)
    with test_pipeline as p:
        none = (p | "Docs" >> beam.Create(docs).with_output_types(ScoredDocument)
                | "Floor" >> SelectDocuments(SelectionRule(top_k=5, min_score=9.0)))
        empty = (p | "NoDocs" >> beam.Create([]).with_output_types(ScoredDocument)
                 | "Empty" >> SelectDocuments(SelectionRule(fraction=0.5)))
        assert_that(none.selected, equal_to([]), label="NoneSelected")
        assert_that(none.cut | beam.Map(lambda c: (c.last, c.selected)), equal_to([(None, 0)]), label="NoneCut")
        assert_that(empty.selected, equal_to([]), label="EmptySelected")
        assert_that(empty.cut | beam.Map(lambda c: (c.selected, c.scored)), equal_to([(0, 0)]), label="EmptyCut")


def write_shards(tmp_path, name, docs, num_shards, suffix=".jsonl"):
    """docs: (ScoredDocument, record) pairs -> {shard name: bytes}."""
    from zipfit_beam.formats import jsonl
    from zipfit_beam.records import RawRecord, rank_key
    out = tmp_path / name
    out.mkdir()
    lines = [(rank_key(d), jsonl.with_score(RawRecord(d.source, d.position, record), d.score))
             for d, record in docs]
    plan = OutputPlan("jsonl", suffix, OUTPUT_SUFFIXES[suffix][1], num_shards)
    with beam.Pipeline(options=local_pipeline_options()) as p:
        _ = (p | beam.Create(lines)
             | WriteShards(str(out), "selected", plan))
    return {os.path.basename(f): open(f, "rb").read() for f in sorted(glob.glob(f"{out}/*"))}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_shards_are_sorted_and_identical_whatever_the_input_order(tmp_path, suffix):
    docs = [(ScoredDocument(f"d{i}", (i * 7) % 11 / 10, "s", i, 1), b'{"id": "d%d"}' % i)
            for i in range(40)]
    shuffled = list(docs)
    random.Random(1).shuffle(shuffled)
    a = write_shards(tmp_path, "a", docs, 4, suffix)
    b = write_shards(tmp_path, "b", shuffled, 4, suffix)
    assert a == b and sorted(a) == [f"selected-0000{i}-of-00004{suffix}" for i in range(4)]
    seen = []
    for content in a.values():
        lines = (gzip.decompress(content) if suffix.endswith(".gz") else content).splitlines()
        keys = [(-float(line.split(b'"zipfit_score": ')[1].rstrip(b"}")), line) for line in lines]
        assert keys == sorted(keys, key=lambda k: k[0]), "each shard is in rank order"
        seen += lines
    assert len(seen) == 40


def test_every_shard_exists_even_when_empty(tmp_path):
    docs = [(ScoredDocument("only", 0.5, "s", 1, 1), b'{"id": "only"}')]
    files = write_shards(tmp_path, "one", docs, 3)
    assert sorted(files) == [f"selected-0000{i}-of-00003.jsonl" for i in range(3)]
    assert sorted(files.values()) == [b"", b"", b'{"id": "only", "zipfit_score": 0.5}\n']
    assert write_shards(tmp_path, "none", [], 0) == {"selected-00000-of-00001.jsonl": b""}


def test_fetch_refuses_unknown_files_and_changed_lines(tmp_path):
    from zipfit_beam.jobs.reselect import CheckKnownSourceDoFn, row_to_scored
    from zipfit_beam.io.fetch import FetchSelectedDoFn
    path = str(tmp_path / "s.jsonl")
    open(path, "w").write('{"id": "a", "text": "x = 1"}\n{"id": "b", "text": "y = 2"}\n')
    fetch = FetchSelectedDoFn("auto", "text", "id")
    b = ScoredDocument("b", 0.5, path, 2, 3, 5)
    assert [r for _, r in fetch.process((path, [(2, "b", 0.5)]))] == \
        [b'{"id": "b", "text": "y = 2", "zipfit_score": 0.5}']
    with pytest.raises(ValueError, match="not among --source"):
        list(CheckKnownSourceDoFn([]).process(b))
    assert list(CheckKnownSourceDoFn([path]).process(b)) == [b]
    with pytest.raises(ValueError, match="selected records are missing"):
        list(fetch.process((path, [(7, "b", 0.5)])))
    with pytest.raises(ValueError, match="changed since it was scored"):
        list(fetch.process((path, [(2, "c", 0.5)])))
    row = {"id": "a", "score": 0.1, "tokens": 0, "bytes": 5, "source": path, "position": 1}
    with pytest.raises(ValueError, match="tokens >= 1"):
        row_to_scored(row)


@pytest.mark.parametrize("score,tokens", [(float("nan"), 3), (float("inf"), 3), (0.2, 0), (None, 3), (0.2, None)])
def test_reselect_refuses_a_damaged_scores_table(tmp_path, score, tokens):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from zipfit_beam.io import keys
    from zipfit_beam.jobs.reselect import checked_batches
    good = [{"id": f"d{i}", "score": 0.1 * i, "tokens": 2, "bytes": 5, "source": "s.jsonl", "position": i,
             "group": None, "contaminated_by": ""} for i in range(1, 6)]
    bad = dict(good[0], id="bad", score=score, tokens=tokens)

    def table(name, rows):
        path = str(tmp_path / f"keys-{name}.parquet")
        pq.write_table(pa.Table.from_pylist(rows, schema=keys.key_schema()), path)
        return keys.KeyTable("s.jsonl", path, "", len(rows), len(rows), ())

    assert [d.id for b in checked_batches(table("good", good)) for d in b.documents()] == [r["id"] for r in good]
    with pytest.raises(ValueError, match=r"'bad'.*score must be finite and tokens >= 1"):
        list(checked_batches(table("bad", good + [bad])))
