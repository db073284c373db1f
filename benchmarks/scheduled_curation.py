"""Scheduled curation with ``--cache``: score 10 shards, add 1, run again. The rerun scores
only the new shard and reads the other 10 key tables; it is compared with a fresh run over
the same 11 shards (no cache), one after the other, whole processes. The two outputs must
be byte-identical.

    python benchmarks/scheduled_curation.py [--docs-per-shard 2000] [--targets 82] [--dir /tmp/zipfit-sched]
"""

from __future__ import annotations

import argparse
import filecmp
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def select(directory, shards, target, out, *extra):
    """One ``zipfit-beam select`` process; returns (wall s, CPU s, manifest)."""
    argv = [os.path.join(os.path.dirname(sys.executable), "zipfit-beam"), "select"]
    argv += [a for s in shards for a in ("--source", s)]
    argv += ["--target", target, "--output", out, "--top-k", "1000", "--no-report",
             "--progress-interval", "0", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.monotonic() - start, cpu, json.load(open(os.path.join(out, "manifest.json")))


def main():
    from make_corpus import build, humaneval_targets
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs-per-shard", type=int, default=2000)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--dir", default="/tmp/zipfit-sched")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    docs = build(11 * args.docs_per_shard)
    shards = []
    for i in range(11):
        path = os.path.join(args.dir, f"part-{i:02d}.jsonl")
        with open(path, "w") as f:
            for d in docs[i * args.docs_per_shard:(i + 1) * args.docs_per_shard]:
                f.write(json.dumps(d) + "\n")
        shards.append(path)
    target = os.path.join(args.dir, "humaneval.jsonl")
    with open(target, "w") as f:
        for t in list(humaneval_targets())[:args.targets]:
            f.write(json.dumps(t) + "\n")
    cache = os.path.join(args.dir, "cache")
    first = select(args.dir, shards[:10], target, os.path.join(args.dir, "night-1"), "--cache", cache)
    rerun = select(args.dir, shards, target, os.path.join(args.dir, "night-2"), "--cache", cache)
    fresh = select(args.dir, shards, target, os.path.join(args.dir, "fresh"))
    outputs = [sorted(glob.glob(os.path.join(args.dir, d, "*ed-*"))) for d in ("night-2", "fresh")]
    identical = len(outputs[0]) == len(outputs[1]) and all(
        filecmp.cmp(a, b, shallow=False) for a, b in zip(*outputs))
    print(f"{11 * args.docs_per_shard:,} documents in 11 shards x {args.targets} targets")
    print(f"{'run':<34} {'wall s':>7} {'CPU s':>7}  cache")
    for name, (wall, cpu, manifest) in (("night 1: 10 shards, empty cache", first),
                                        ("night 2: 11 shards, cache of 10", rerun),
                                        ("fresh: 11 shards, no cache", fresh)):
        print(f"{name:<34} {wall:>7.1f} {cpu:>7.1f}  {manifest['cache']}")
    print(f"rerun / fresh: wall {rerun[0] / fresh[0]:.2f}x, CPU {rerun[1] / fresh[1]:.2f}x; "
          f"outputs byte-identical: {identical}")


if __name__ == "__main__":
    main()
