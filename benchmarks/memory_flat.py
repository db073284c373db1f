"""Peak RSS of a whole ``zipfit-beam select`` process as the corpus grows: it should stay
flat, since every pass reads the per-file key tables again instead of keeping the keys.

Real documents (``make_corpus.build``: stdlib functions, man pages, C headers, Perl), cut
to 400 characters so that millions fit on disk, repeated with fresh ids, in shards of
50,000; one HumanEval target, so that the run is about per-document costs; the defaults
otherwise (contamination guard on, report off). Each size runs in a fresh process, one
after the other.

    python benchmarks/memory_flat.py [--sizes 100000,700000,2000000] [--dir /tmp/zipfit-mem]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SHARD_DOCS = 50_000
DOC_CHARS = 400


def write_corpus(directory: str, n: int) -> str:
    from make_corpus import build, humaneval_targets  # noqa: E402  (benchmarks/ on sys.path)
    base = [d for d in build(20_000) if d["text"].strip()]
    os.makedirs(directory, exist_ok=True)
    shard, out = 0, None
    for i in range(n):
        if i % SHARD_DOCS == 0:
            if out:
                out.close()
            out = open(os.path.join(directory, f"part-{shard:05d}.jsonl"), "w")
            shard += 1
        d = base[i % len(base)]
        out.write(json.dumps({"id": f"{i}:{d['id']}", "text": d["text"][:DOC_CHARS]}) + "\n")
    out.close()
    target = os.path.join(directory, "target.jsonl")
    with open(target, "w") as f:
        f.write(json.dumps(next(iter(humaneval_targets()))) + "\n")
    return target


def measure_one(directory: str, target: str) -> None:
    """In this process: one select run; prints wall, CPU and peak RSS as JSON."""
    from zipfit_beam.jobs.select import run
    out = os.path.join(directory, "out")
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    run(["--source", os.path.join(directory, "part-*.jsonl"), "--target", target, "--output", out,
         "--top-k", "1000", "--no-report", "--progress-interval", "0"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    print(json.dumps({"docs": manifest["counts"]["scored"], "wall_s": round(time.monotonic() - start, 1),
                      "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                      "peak_rss_mb": round(usage.ru_maxrss / 1024)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,700000,2000000")
    ap.add_argument("--dir", default="/tmp/zipfit-mem")
    ap.add_argument("--one", nargs=2, metavar=("DIR", "TARGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return measure_one(*args.one)
    print(f"{'documents':>10} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for n in (int(s) for s in args.sizes.split(",")):
        directory = os.path.join(args.dir, str(n))
        shutil.rmtree(directory, ignore_errors=True)
        target = write_corpus(directory, n)
        done = subprocess.run([sys.executable, __file__, "--one", directory, target],
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['docs']:>10,} {r['wall_s']:>8} {r['cpu_s']:>8} {r['peak_rss_mb']:>12}", flush=True)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
