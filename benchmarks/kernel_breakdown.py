"""Per-pair cost breakdown of the exact gzip-1 kernel (zipfit_beam/score/_gzip1.c).

Builds a copy of the kernel with -DGZIP1_PROFILE (rdtsc counters around each phase; x86-64
only, never in wheels) into a temporary directory, runs it on kernel_bench's workload (300
real documents x 82 HumanEval targets, one thread) and prints cycles and microseconds per pair
for each phase, from the fastest of --repeat runs.  The counters cost a little themselves, so
the total is somewhat above kernel_bench's figure.

    python benchmarks/kernel_breakdown.py [--docs 300] [--targets 82] [--repeat 5]
                                          [--docs-file F.jsonl] [--targets-file T.jsonl]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_bench as kb  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zipfit_beam", "score", "_gzip1.c")

PHASES = [
    (0, "x parse, once per document (amortised)"),
    (1, "per-pair setup (copy y, seam hashes, block state copy)"),
    (2, "parse of y (hash insertion, match search, tallies)"),
    (3, "undo of head[] writes, prev[] restore"),
    (4, "block cost: fixed-code and extra-bit sums"),
    (5, "literal/length tree"),
    (6, "distance tree"),
    (7, "bit-length scan, tree and header"),
]
SUB = [
    (8, "  lit/len: clear, fill, heapify"),
    (9, "  lit/len: merge loop (2 heap sinks per node)"),
    (10, "  lit/len: gen_bitlen and sum freq*len"),
]


def build(tmp: str, src: str = SRC) -> str:
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    out = os.path.join(tmp, "_gzip1_prof.so")
    inc = sysconfig.get_paths()["include"]
    subprocess.run(cc + ["-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fwrapv", "-DNDEBUG",
                         "-DGZIP1_PROFILE", "-I" + inc, src, "-o", out], check=True)
    return out


def load(path: str):
    name = "zipfit_beam.score._gzip1"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kb.add_workload_args(ap)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", default=SRC, help="C source to profile (default: the kernel's)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        g = load(build(tmp, a.src))
    docs, targets = kb.workload(a)
    k = g.Gzip1Targets(targets)
    pairs = len(docs) * len(targets)
    best = None
    for _ in range(a.repeat):
        g._prof()
        t0 = time.thread_time()
        for x in docs:
            k.concat_lengths(x)
        t = time.thread_time() - t0
        prof = g._prof()
        if best is None or t < best[0]:
            best = (t, prof)
    t, prof = best
    tot = sum(prof[i][0] for i, _ in PHASES)
    us = t / pairs * 1e6
    print(f"{len(docs)} documents x {len(targets)} targets = {pairs} pairs; fastest of {a.repeat}: "
          f"{us:.3f} us/pair (profiling build), {tot / pairs:.0f} counted TSC cycles/pair")
    for i, name in PHASES + SUB:
        c = prof[i][0]
        print(f"  {name:56s} {c / pairs:7.0f} cyc  {c / tot * us:6.3f} us  {100 * c / tot:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
