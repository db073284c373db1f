"""A/B timing of versions of the exact gzip-1 kernel's C source, interleaved in one process.

Each given source file (e.g. `git show REV:zipfit_beam/score/_gzip1.c > /tmp/a.c`) is compiled
as setuptools would (-O3 -ffp-contract=off) into a temporary directory and loaded side by
side; the rounds alternate between them on kernel_bench's workload (300 real documents x 82
HumanEval targets, one thread) and every result is checked against zlib.  Interleaving and
taking the minimum keep the comparison fair on a shared, noisy machine.

    python benchmarks/kernel_ab.py [--rounds 15] [--cflags "-DX"] A.c B.c ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_bench as kb  # noqa: E402
from kernel_breakdown import load  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--cflags", default="")
    a = ap.parse_args(argv)
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    inc = sysconfig.get_paths()["include"]
    targets = kb.humaneval(a.targets)
    docs = kb.documents(a.docs)
    expected = [[len(zlib.compress(x + y, 1, -15)) + 18 for y in targets] for x in docs]
    mods = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(a.sources):
            d = os.path.join(tmp, str(i))
            os.mkdir(d)
            out = os.path.join(d, "_gzip1.so")
            subprocess.run(cc + ["-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fwrapv", "-DNDEBUG",
                                 *a.cflags.split(), "-I" + inc, src, "-o", out], check=True)
            mods.append(load(out))
    ks = [m.Gzip1Targets(targets) for m in mods]
    pairs = len(docs) * len(targets)
    times = [[] for _ in ks]
    mism = [0] * len(ks)
    for _ in range(a.rounds):
        for i, k in enumerate(ks):
            t0 = time.thread_time()
            got = [k.concat_lengths(x) for x in docs]
            times[i].append(time.thread_time() - t0)
            mism[i] += kb.count_mismatches(expected, got)
    for src, t, m in zip(a.sources, times, mism):
        t.sort()
        print(f"{src:40s} min {t[0] / pairs * 1e6:6.3f}  median {t[len(t) // 2] / pairs * 1e6:6.3f} us/pair"
              f"  mismatches {m} in {pairs * a.rounds}")
    return 0 if not any(mism) else 2


if __name__ == "__main__":
    sys.exit(main())
