"""Peak RSS of ``zipfit_beam.ZipFitSelect`` over an in-memory PCollection of records on the
local runner: the records wait, paired with their keys, until the cut is known, so the
process holds them (their own size plus the keys). Real documents cut to 400 characters,
one HumanEval target, guard off; each size in a fresh process.

    python benchmarks/records_memory.py [--sizes 50000,200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import os

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def one(n: int) -> None:
    import apache_beam as beam
    from make_corpus import build, humaneval_targets
    import zipfit_beam
    base = [d for d in build(20_000) if d["text"].strip()]
    records = [{"id": f"{i}:{base[i % len(base)]['id']}", "text": base[i % len(base)]["text"][:400]}
               for i in range(n)]
    target = next(iter(humaneval_targets()))["text"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create(records)
             | zipfit_beam.ZipFitSelect([target], top_k=1000, contamination_ngram=0)).selected
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": n, "records_mb": round(sum(len(json.dumps(r)) for r in records) / 2**20),
                      "rss_before_mb": round(before / 1024), "peak_rss_mb": round(peak / 1024)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000,200000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one)
    for n in map(int, args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
