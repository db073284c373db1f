"""Peak memory of one very large record, for ``--max-record-bytes``.

Each case runs ``zipfit-beam select`` as a whole process (the local runner: one process,
so its peak RSS includes every copy of the record) on a source of a few normal documents
plus one large record, and reports the process's peak RSS (``/usr/bin/time``'s maximum
resident set size) and wall time:

    baseline       the normal documents alone
    text:N         one real-looking document (code and prose from the bundled example,
                   repeated) as one JSONL line of just under N bytes: scored when N is
                   at most the limit
    aline:N        the issue's case: ``{"text": "aaaa...a"}`` with N letters, gzip-compressed
                   (1 GiB compresses to about 1 MB), written streaming

    python benchmarks/record_limits.py                        # the default limit, 1 GiB line
    python benchmarks/record_limits.py --cases baseline text:16777000 text:67108000 \
        --limit 134217728                                      # record sizes under a raised limit

Results are printed as JSON lines (and appended to ``--results`` when given).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NORMAL_DOCS = 200


def normal_lines():
    from zipfit_beam.jobs.example import EXAMPLE_SOURCE
    with gzip.open(EXAMPLE_SOURCE, "rb") as f:
        return list(itertools.islice(f, NORMAL_DOCS))


def write_text_doc(path: str, n_bytes: int) -> None:
    """The normal documents, then one JSON line of at most ``n_bytes`` bytes (within a few
    bytes of it): a document whose text is the example's texts repeated."""
    lines = normal_lines()
    pool = "\n\n".join(json.loads(line)["text"] for line in lines)
    chars = n_bytes
    while True:
        text = (pool * (chars // len(pool) + 1))[:chars]
        line = json.dumps({"id": "big", "text": text}).encode()
        if len(line) <= n_bytes:
            break
        chars -= max(1, (len(line) - n_bytes) // 2)  # escapes: a char can take 2-6 bytes
    with open(path, "wb") as f:
        f.writelines(lines)
        f.write(line + b"\n")


def write_a_line(path: str, n_letters: int) -> None:
    """gzip of the normal documents, then ``{"text": "a...a"}`` (``n_letters`` letters),
    written in 1 MiB pieces so that making it never holds the line."""
    piece = b"a" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.writelines(normal_lines())
        f.write(b'{"id": "big", "text": "')
        left = n_letters
        while left:
            f.write(piece[:min(left, len(piece))])
            left -= min(left, len(piece))
        f.write(b'"}\n')


def run_select(source: str, out: str, limit, extra=()) -> dict:
    """``zipfit-beam select`` in a child process under /usr/bin/time; its peak RSS, wall
    time and manifest counts."""
    from zipfit_beam.jobs.example import EXAMPLE_TARGETS
    argv = [sys.executable, "-m", "zipfit_beam.cli", "select", "--source", source,
            "--target", EXAMPLE_TARGETS, "--output", out, "--top-k", "10", "--no-report",
            "--progress-interval", "0", *extra]
    if limit is not None:
        argv.append(f"--max-record-bytes={limit}")
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB=%M", *argv], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr[-5000:])
    rss_kb = int(done.stderr.rsplit("MAXRSS_KB=", 1)[1].split()[0])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    return {"peak_rss_mb": round(rss_kb / 1024, 1), "wall_s": round(wall, 1),
            "counts": {k: manifest["counts"][k] for k in ("read", "scored", "rejected")},
            "rejected_by_reason": manifest["rejected_by_reason"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["baseline", f"aline:{1 << 30}"],
                    help="baseline, text:N, aline:N (default: baseline aline:1073741824)")
    ap.add_argument("--limit", type=int, default=None,
                    help="--max-record-bytes for every case (default: the job's default)")
    ap.add_argument("--results", default=None, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(args.cases):
            kind, _, n = case.partition(":")
            if kind == "baseline":
                source = os.path.join(tmp, f"{i}.jsonl")
                with open(source, "wb") as f:
                    f.writelines(normal_lines())
            elif kind == "text":
                source = os.path.join(tmp, f"{i}.jsonl")
                write_text_doc(source, int(n))
            elif kind == "aline":
                source = os.path.join(tmp, f"{i}.jsonl.gz")
                write_a_line(source, int(n))
            else:
                raise SystemExit(f"unknown case {case!r}")
            row = {"case": case, "limit": args.limit, "source_mb": round(os.path.getsize(source) / 2**20, 2),
                   **run_select(source, os.path.join(tmp, f"out-{i}"), args.limit)}
            os.remove(source)
            line = json.dumps(row)
            print(line, flush=True)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
