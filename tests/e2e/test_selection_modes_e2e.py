"""End to end: token budgets, fractions, score floors, the scores table and reselect,
checked against the brute-force oracle on real documents (with exact ties planted)."""

import glob
import json
import os

import pyarrow.parquet as pq
import pytest

from zipfit_beam.cli import main as cli_main
from zipfit_beam.jobs.select import run
from zipfit_beam.jobs.reselect import run_reselect
from zipfit_beam.score.tokens import count_regex

from tests.conftest import oracle_scores, oracle_select, read_jsonl, write_jsonl


@pytest.fixture
def tied(tmp_path, sources, targets):
    """40 real documents plus 12 copies under other ids (exact score ties), over two files."""
    docs = list(sources) + [dict(s, id=f"copy-{i:02d}") for i, s in enumerate(sources[:12])]
    a = write_jsonl(tmp_path / "src-a.jsonl", docs[::2])
    b = write_jsonl(tmp_path / "src-b.jsonl.gz", docs[1::2])
    t = write_jsonl(tmp_path / "targets.jsonl", targets)
    scores = oracle_scores(docs, targets)
    files = {d["id"]: (a if i % 2 == 0 else b, i // 2 + 1) for i, d in enumerate(docs)}
    table = [(d["id"], scores[d["id"]], *files[d["id"]], count_regex(d["text"])) for d in docs]
    return [a, b], t, docs, table


def select(tmp_path, files, target, name, *extra, command=run):
    out = str(tmp_path / name)
    argv = [a for f in files for a in ("--source", f)] + ["--target", target, "--output", out, *extra]
    command(argv)
    return out


def outputs(out):
    selected = [r for p in sorted(glob.glob(f"{out}/selected-*")) for r in read_jsonl(p)]
    return selected, json.load(open(os.path.join(out, "manifest.json")))


def budget_inside_a_document(table, n):
    """A token budget that ends strictly inside the (n+1)-th ranked document."""
    ranked = oracle_select(table, top_k=len(table))
    return sum(d[4] for d in ranked[:n]) + ranked[n][4] // 2


def check(out, table, **mode):
    want = oracle_select(table, **mode)
    selected, manifest = outputs(out)
    assert sorted(r["id"] for r in selected) == sorted(d[0] for d in want)
    assert manifest["counts"]["selected"] == len(want)
    assert manifest["counts"]["selected_tokens"] == sum(d[4] for d in want)
    assert manifest["threshold"]["id"] == want[-1][0]
    mode_name = next(k for k in ("top_k", "token_budget", "fraction") if k in mode)
    assert manifest["selection"]["mode"] == mode_name
    return selected, manifest


def test_token_budget_fraction_and_floor_equal_the_oracle(tmp_path, tied):
    files, target, docs, table = tied
    budget = budget_inside_a_document(table, 17)
    check(select(tmp_path, files, target, "budget", "--token-budget", str(budget),
                 "--scoring-threads=3", "--batch-size=4"), table, token_budget=budget)
    check(select(tmp_path, files, target, "fraction", "--fraction", "0.3", "--num-shards=2"),
          table, fraction=0.3)
    ranked = oracle_select(table, top_k=len(table))
    # K that splits a pair of exact ties (a document and its copy): ids decide.
    k = next(i for i in range(1, len(ranked)) if ranked[i - 1][1] == ranked[i][1])
    _, manifest = check(select(tmp_path, files, target, "ties", "--top-k", str(k)), table, top_k=k)
    assert manifest["threshold"]["score"] == pytest.approx(ranked[k][1], abs=1e-12)
    floor = ranked[9][1]
    _, manifest = check(select(tmp_path, files, target, "floor", "--top-k", "30", "--min-score", repr(floor)),
                        table, top_k=30, min_score=floor)
    assert manifest["counts"]["selected"] == sum(1 for d in ranked if d[1] >= floor) < 30


def test_mode_flags_are_checked(tmp_path, tied, capsys):
    files, target, _, _ = tied
    base = ["select", "--source", files[0], "--target", target, "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        cli_main(base)
    assert "one of the arguments --top-k --token-budget --fraction is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(base + ["--top-k", "3", "--fraction", "0.5"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli_main(base + ["--fraction", "1.5"]) == 2
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_scores_table_and_reselect_equal_fresh_runs(tmp_path, tied):
    files, target, docs, table = tied
    scored_dir = select(tmp_path, files, target, "scored", "--top-k", "3", "--write-scores")
    rows = pq.read_table(glob.glob(f"{scored_dir}/scores/keys-*.parquet")).to_pylist()
    assert sorted((r["id"], r["source"], r["position"], r["tokens"]) for r in rows) == \
        sorted((t[0], t[2], t[3], t[4]) for t in table)
    oracle = {t[0]: t[1] for t in table}
    assert all(r["score"] == pytest.approx(oracle[r["id"]], abs=1e-12) for r in rows)
    text_bytes = {d["id"]: len(d["text"].encode()) for d in docs}
    assert all(r["bytes"] == text_bytes[r["id"]] for r in rows)
    assert "scores/" + os.path.basename(glob.glob(f"{scored_dir}/scores/*")[0]) in \
        outputs(scored_dir)[1]["outputs"]

    budget = budget_inside_a_document(table, 20)
    for name, mode in [("budget", ["--token-budget", str(budget), "--num-shards=3",
                                   "--output-suffix=.jsonl.gz"]),
                       ("fraction", ["--fraction", "0.5", "--min-score", repr(sorted(oracle.values())[30])])]:
        fresh = select(tmp_path, files, target, f"fresh-{name}", *mode)
        again = str(tmp_path / f"re-{name}")
        run_reselect(["--scores", scored_dir, *[a for f in files for a in ("--source", f)],
                      "--output", again, *mode])
        shards = sorted(os.path.basename(p) for p in glob.glob(f"{fresh}/selected-*"))
        assert shards == sorted(os.path.basename(p) for p in glob.glob(f"{again}/selected-*"))
        for shard in shards:
            assert open(f"{fresh}/{shard}", "rb").read() == open(f"{again}/{shard}", "rb").read(), shard
        fresh_m, again_m = outputs(fresh)[1], outputs(again)[1]
        assert fresh_m["counts"] == again_m["counts"] and fresh_m["threshold"] == again_m["threshold"]
        assert again_m["reselected_from"] == scored_dir
    assert outputs(again)[1]["counts"]["selected"] > 0


def test_reselect_refuses_what_it_cannot_trust(tmp_path, tied, sources, capsys):
    files, target, docs, table = tied
    plain = select(tmp_path, files, target, "plain", "--top-k", "3")
    argv = ["reselect", "--scores", plain, "--source", files[0], "--source", files[1],
            "--output", str(tmp_path / "r1"), "--top-k", "5"]
    assert cli_main(argv) == 2
    assert "did not write scores" in capsys.readouterr().err
    scored = select(tmp_path, files, target, "scored", "--fraction", "1.0", "--write-scores")
    # The plain shard changes under the scores: line 1 now holds another document.
    lines = open(files[0], "rb").read().splitlines()
    with open(files[0], "wb") as f:
        f.write(b"\n".join([lines[1], lines[0]] + lines[2:]) + b"\n")
    argv = ["reselect", "--scores", scored, "--source", files[0], "--source", files[1],
            "--output", str(tmp_path / "r2"), "--fraction", "1.0"]
    assert cli_main(argv) == 2
    assert "changed since it was scored" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "r2" / "selected-*"))


def scores_table(out):
    return {r["id"]: r for r in pq.read_table(glob.glob(f"{out}/scores/keys-*.parquet")).to_pylist()}


def test_token_budget_with_a_tokenizer_json(tmp_path, tied):
    from tests.unit.test_tokens import make_tokenizer_json
    files, target, docs, table = tied
    tok = make_tokenizer_json(tmp_path / "tokenizer.json", [d["text"] for d in docs[:10]])
    counts = {d["id"]: max(1, len(tok.encode(d["text"]).ids)) for d in docs}
    table = [t[:4] + (counts[t[0]],) for t in table]
    budget = budget_inside_a_document(table, 12)
    out = select(tmp_path, files, target, "hf", "--token-budget", str(budget), "--write-scores",
                 "--tokenizer", str(tmp_path / "tokenizer.json"))
    _, manifest = check(out, table, token_budget=budget)
    assert {i: r["tokens"] for i, r in scores_table(out).items()} == counts
    assert manifest["selection"]["token_counter"] == f"tokenizer.json:{tmp_path / 'tokenizer.json'}"


def test_long_documents_chunked_by_default_and_short_ones_unchanged(tmp_path, sources, targets):
    from zipfit_beam.score.ncd import TargetSet, document_score
    filler = "\n".join(s["text"] for s in sources if not s["id"].startswith("python")) * 8
    long_doc = (targets[0]["text"] + "\n" + filler)[:70_000]
    docs = sources[:10] + [{"id": "long", "text": long_doc}]
    src = write_jsonl(tmp_path / "s.jsonl", docs)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    ts = TargetSet([t["text"].encode() for t in targets])
    default = scores_table(select(tmp_path, [src], tgt, "default", "--top-k", "1", "--write-scores"))
    whole = scores_table(select(tmp_path, [src], tgt, "whole", "--top-k", "1", "--write-scores",
                                "--chunk-bytes", "0"))
    mean = scores_table(select(tmp_path, [src], tgt, "mean", "--top-k", "1", "--write-scores",
                               "--chunk-bytes", "4096", "--chunk-reduce", "mean",
                               "--max-doc-bytes", "50000"))
    data = long_doc.encode()
    assert default["long"]["score"] == document_score(ts, data, chunk_bytes=32768, reduce="max")
    assert whole["long"]["score"] == ts.alignment(data)
    assert mean["long"]["score"] == document_score(ts, data, 50_000, 4096, "mean")
    assert default["long"]["score"] > whole["long"]["score"]
    assert default["long"]["bytes"] == len(data) and default["long"]["tokens"] == count_regex(long_doc)
    oracle = oracle_scores(docs[:10], targets)
    for d in docs[:10]:  # documents up to 32 KiB keep the reference score by default
        assert default[d["id"]]["score"] == whole[d["id"]]["score"]
        assert default[d["id"]]["score"] == pytest.approx(oracle[d["id"]], abs=1e-12)
