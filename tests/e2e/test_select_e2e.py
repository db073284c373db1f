"""End to end: ``run(argv)`` on files, checked against the brute-force oracle."""

import glob
import json
import os

import apache_beam
import pytest

from zipfit_beam.cli import main as cli_main
from zipfit_beam.jobs.select import run
from zipfit_beam.score.tokens import count_regex

from tests.conftest import (BAD_LINES, REPORT_FILES, oracle_scores, oracle_top_k, read_jsonl, write_jsonl,
                            write_lines)


def outputs(out_dir):
    selected = [r for p in sorted(glob.glob(f"{out_dir}/selected-*")) for r in read_jsonl(p)]
    rejected = [r for p in sorted(glob.glob(f"{out_dir}/rejected-*")) for r in read_jsonl(p)]
    manifest = json.load(open(os.path.join(out_dir, "manifest.json")))
    return selected, rejected, manifest


@pytest.fixture
def corpus(tmp_path, sources, targets):
    """Sources split over a plain and a gzip shard, with every kind of bad line planted."""
    half = len(sources) // 2
    a = write_jsonl(tmp_path / "src-0.jsonl", sources[:half])
    b = write_lines(tmp_path / "src-1.jsonl.gz",
                    [json.dumps(s).encode() for s in sources[half:]] + [line for line, _ in BAD_LINES])
    t = write_jsonl(tmp_path / "targets.jsonl", targets)
    return [a, b], t


def select(tmp_path, files, target, k, *extra, name="out"):
    out = str(tmp_path / name)
    argv = [a for f in files for a in ("--source", f)] + ["--target", target, "--output", out,
                                                          "--top-k", str(k), *extra]
    run(argv)
    return outputs(out)


@pytest.mark.parametrize("extra", [
    ["--scoring-threads=1", "--batch-size=1", "--num-shards=1"],
    ["--scoring-threads=4", "--batch-size=5", "--num-shards=3", "--output-suffix=.jsonl.gz"],
])
def test_selection_equals_oracle(tmp_path, corpus, sources, targets, extra):
    files, target = corpus
    k = 12
    selected, rejected, manifest = select(tmp_path, files, target, k, *extra)
    oracle = oracle_scores(sources, targets)
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle, k))
    for r in selected:
        assert r["zipfit_score"] == pytest.approx(oracle[r["id"]], abs=1e-12)
        original = next(s for s in sources if s["id"] == r["id"])
        assert {k: v for k, v in r.items() if k != "zipfit_score"} == original
    assert sorted(r["reason"] for r in rejected) == sorted(reason for _, reason in BAD_LINES)
    assert all(r["source"].endswith("src-1.jsonl.gz") and r["position"] > 0 for r in rejected)
    c = manifest["counts"]
    by_id = {s["id"]: s for s in sources}
    assert c == {"read": len(sources) + len(BAD_LINES), "scored": len(sources),
                 "rejected": len(BAD_LINES), "selected": k, "contaminated": 0,
                 "selected_tokens": sum(count_regex(by_id[r["id"]]["text"]) for r in selected)}
    assert c["read"] == c["scored"] + c["rejected"]
    assert manifest["threshold"]["id"] == oracle_top_k(oracle, k)[-1]
    assert manifest["config"]["top_k"] == k and manifest["versions"]["apache_beam"] == apache_beam.__version__
    from zipfit_beam.score import ncd
    assert manifest["scoring"] == ncd.scoring_identity("gzip", 1)  # which zlib the scores follow
    assert not glob.glob(str(tmp_path / "out" / "_staging-*")), "staging directory left behind"


def test_one_and_many_threads_select_identical_ids(tmp_path, corpus):
    files, target = corpus
    one = select(tmp_path, files, target, 9, "--scoring-threads=1", name="one")[0]
    many = select(tmp_path, files, target, 9, "--scoring-threads=6", "--batch-size=3", name="many")[0]
    assert [r["id"] for r in sorted(one, key=lambda r: r["id"])] == \
           [r["id"] for r in sorted(many, key=lambda r: r["id"])]


def test_ties_are_broken_by_id_deterministically(tmp_path, sources, targets):
    # 60 documents, 20 distinct texts x 3 copies each: every score appears 3 times.
    docs = [{"id": f"doc-{(i * 37) % 60:03d}", "text": sources[i % 20]["text"]} for i in range(60)]
    src = write_jsonl(tmp_path / "ties.jsonl", docs)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    oracle = oracle_scores(docs, targets)
    for k in (1, 2, 4, 29, 59):
        want = sorted(oracle_top_k(oracle, k))
        for threads in ("1", "3"):
            got = select(tmp_path, [src], tgt, k, f"--scoring-threads={threads}",
                         name=f"k{k}-t{threads}")[0]
            assert sorted(r["id"] for r in got) == want, (k, threads)


def test_k_larger_than_corpus_keeps_everything(tmp_path, corpus, sources):
    files, target = corpus
    selected, _, manifest = select(tmp_path, files, target, 1000)
    assert len(selected) == len(sources) and manifest["threshold"] is None


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path, corpus):
    files, target = corpus
    select(tmp_path, files, target, 3, "--num-shards=3")
    with pytest.raises(FileExistsError, match="--overwrite"):
        select(tmp_path, files, target, 3)
    select(tmp_path, files, target, 3, "--num-shards=1", "--overwrite")
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(["manifest.json", "rejected-00000-of-00001.jsonl",
                            "selected-00000-of-00001.jsonl"] + REPORT_FILES)


def test_cli_errors_are_clear(tmp_path, corpus, capsys):
    files, target = corpus
    base = ["select", "--source", files[0], "--target", target, "--output", str(tmp_path / "o")]
    assert cli_main(base + ["--top-k", "3", "--level", "0"]) == 2
    assert "stores the data without compressing" in capsys.readouterr().err
    assert cli_main(["select", "--source", str(tmp_path / "nope-*.jsonl"), "--target", target,
                     "--output", str(tmp_path / "o"), "--top-k", "3"]) == 2
    assert "matches no files" in capsys.readouterr().err
    bad_target = write_lines(tmp_path / "bad-t.jsonl", [b'{"text": ""}'])
    assert cli_main(["select", "--source", files[0], "--target", bad_target,
                     "--output", str(tmp_path / "o"), "--top-k", "3"]) == 2
    assert "empty_text" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("compressor", ["lz4", "zstd", "isal"])
def test_fast_compressor_selection_equals_its_oracle(tmp_path, corpus, sources, targets, compressor):
    from zipfit_beam.score.ncd import COMPRESSORS
    files, target = corpus
    comp = COMPRESSORS[compressor]
    length = lambda s: comp.length(s.encode(), comp.default_level)  # noqa: E731
    scores = {}
    for s in sources:
        c_x = length(s["text"])
        ncds = [(length(s["text"] + t["text"]) - min(c_x, length(t["text"]))) / max(c_x, length(t["text"]))
                for t in targets]
        scores[s["id"]] = 1 - sum(ncds) / len(ncds)
    selected, _, manifest = select(tmp_path, files, target, 7, f"--compressor={compressor}")
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(scores, 7))
    assert manifest["config"]["compressor"] == compressor


def test_a_source_of_only_bad_lines_gives_a_whole_manifest_and_report(tmp_path, targets):
    # Nothing scored: every global combine of the job (counts, contamination, the report's
    # parts, groups and examples, the cut's ties) meets an empty input.
    src = write_lines(tmp_path / "bad.jsonl", [line for line, _ in BAD_LINES])
    t = write_jsonl(tmp_path / "targets.jsonl", targets)
    selected, rejected, manifest = select(tmp_path, [src], t, 5)
    assert selected == [] and len(rejected) == len(BAD_LINES)
    assert manifest["counts"] == {"read": len(BAD_LINES), "scored": 0, "rejected": len(BAD_LINES),
                                  "selected": 0, "selected_tokens": 0, "contaminated": 0}
    assert manifest["threshold"] is None and manifest["contamination"]["documents"] == []
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["totals"]["corpus"] == summary["totals"]["selected"] == {"docs": 0, "bytes": 0, "tokens": 0}
    assert summary["groups"]["distinct"] == 0 and summary["groups"]["rows"] == []
    assert all(v == [] for v in summary["examples"].values())
    assert all(os.path.exists(tmp_path / "out" / f) for f in REPORT_FILES)
