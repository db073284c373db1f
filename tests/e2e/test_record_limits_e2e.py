"""The whole job against records that used to sink it: a line nested 100,000 deep (in an
unrelated field too), a line far over --max-record-bytes in a small .jsonl.gz, a Parquet
row and an Avro record over the limit. Each is one dead letter with its reason; the rest
is selected as if they were not there. And the peak RSS of a ``zipfit-beam select``
process does not grow with a line over the limit (the 1 GiB case is
``benchmarks/record_limits.py``; here a 256 MiB line and a 1 MiB limit keep CI fast)."""

import gzip
import json
import os
import subprocess
import sys

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import REPO, write_jsonl
from tests.e2e.test_select_e2e import outputs
from zipfit_beam.jobs.select import run

LIMIT = 1 << 20


def write_big_line_gz(path, good_lines, n_letters):
    """gzip of the good lines, then {"text": "a...a"} with n_letters letters, streamed."""
    piece = b"a" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=6) as f:
        for line in good_lines:
            f.write(line + b"\n")
        f.write(b'{"id": "huge", "text": "')
        for _ in range(n_letters >> 20):
            f.write(piece)
        f.write(b'"}\n')
    return str(path)


def test_bad_records_are_dead_letters_and_the_selection_is_unchanged(tmp_path, sources, targets):
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    good = [json.dumps(s).encode() for s in sources]
    deep = b"[" * 100_000 + b"]" * 100_000
    planted = [b'{"id": "deep", "text": "x", "meta": ' + deep + b"}", deep]
    lines = good[:20] + planted + good[20:30]
    a = tmp_path / "a.jsonl"
    a.write_bytes(b"\n".join(lines) + b"\n")
    b = write_big_line_gz(tmp_path / "b.jsonl.gz", good[30:], 8 << 20)
    pq_path = str(tmp_path / "c.parquet")
    pq.write_table(pa.table({"id": ["pq-small", "pq-big"], "text": ["def f(): return 1", "b" * (2 * LIMIT)]}),
                   pq_path)
    av_path = str(tmp_path / "d.avro")
    with open(av_path, "wb") as f:
        fastavro.writer(f, {"type": "record", "name": "D", "fields": [
            {"name": "id", "type": "string"}, {"name": "text", "type": "string"}]},
            [{"id": "av-big", "text": "c" * (2 * LIMIT)}, {"id": "av-small", "text": "x = 2"}])

    out = str(tmp_path / "out")
    run(["--source", str(a), "--source", b, "--source", pq_path, "--source", av_path, "--target", tgt,
         "--output", out, "--top-k", "10", "--output-format=jsonl", f"--max-record-bytes={LIMIT}",
         "--no-report"])
    selected, rejected, manifest = outputs(out)
    c = manifest["counts"]
    assert c["read"] == c["scored"] + c["rejected"] == len(sources) + 2 + 1 + 2 + 2
    assert manifest["rejected_by_reason"] == {"too_deeply_nested": 2, "record_too_large": 3}
    dead = {(os.path.basename(r["source"]), r["position"]): r for r in rejected}
    assert dead[("a.jsonl", 21)]["reason"] == dead[("a.jsonl", 22)]["reason"] == "too_deeply_nested"
    huge = dead[("b.jsonl.gz", len(good) - 30 + 1)]
    head = '{"id": "huge", "text": "'
    assert huge["reason"] == "record_too_large"
    assert f"{len(head) + (8 << 20) + 2:,} bytes" in huge["detail"]
    assert huge["record"] == head + "a" * (200 - len(head))
    assert dead[("c.parquet", 1)]["reason"] == dead[("d.avro", 0)]["reason"] == "record_too_large"
    assert manifest["config"]["max_record_bytes"] == LIMIT

    clean = str(tmp_path / "clean")
    only_good = write_jsonl(tmp_path / "good.jsonl", sources + [
        {"id": "pq-small", "text": "def f(): return 1"}, {"id": "av-small", "text": "x = 2"}])
    run(["--source", only_good, "--target", tgt, "--output", clean, "--top-k", "10", "--no-report"])
    want, _, _ = outputs(clean)
    assert {r["id"]: r["zipfit_score"] for r in selected} == {r["id"]: r["zipfit_score"] for r in want}


def peak_rss_mb(argv, cwd) -> float:
    """Peak RSS of ``zipfit-beam select argv`` run as a child of a fresh interpreter."""
    code = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:])\n"
            "assert done.returncode == 0, done.returncode\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "zipfit_beam.cli",
                           "select", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1]) / 1024


def test_a_line_over_the_limit_costs_no_memory(tmp_path, sources, targets):
    """A 256 MiB line (about 250 KB of gzip) among the documents: the process peaks where
    the same job without it does (measured here: within a few MB; holding the line would
    cost 256 MB at least, as it did before: a 1 GiB line took 7.4 GB)."""
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    good = [json.dumps(s).encode() for s in sources]
    big = write_big_line_gz(tmp_path / "big.jsonl.gz", good, 256 << 20)
    assert os.path.getsize(big) < 2 << 20
    small = tmp_path / "small.jsonl.gz"
    small.write_bytes(gzip.compress(b"\n".join(good) + b"\n"))
    common = ["--target", tgt, "--top-k", "5", "--no-report", "--progress-interval", "0",
              f"--max-record-bytes={LIMIT}"]
    base = peak_rss_mb(["--source", str(small), "--output", str(tmp_path / "o1"), *common], tmp_path)
    with_big = peak_rss_mb(["--source", big, "--output", str(tmp_path / "o2"), *common], tmp_path)
    manifest = json.load(open(tmp_path / "o2" / "manifest.json"))
    assert manifest["rejected_by_reason"] == {"record_too_large": 1}
    assert with_big - base < 64, f"peak RSS {with_big:.0f} MB with the 256 MiB line, {base:.0f} MB without"
