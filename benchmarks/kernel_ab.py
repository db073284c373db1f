"""A/B timing of versions of the exact gzip-1 kernel's C source, interleaved in one process.

Each given source file (e.g. `git show REV:zipfit_beam/score/_gzip1.c > /tmp/a.c`) is compiled
as setuptools would (-O3 -ffp-contract=off) into a temporary directory and loaded side by
side; the rounds alternate between them on kernel_bench's workload (300 real documents x 82
HumanEval targets, one thread) and every result is checked against zlib.  Interleaving and
taking the minimum keep the comparison fair on a shared, noisy machine. ``--alignment`` times
``alignment(x)`` (C(x) and every pair: the call the scoring pass makes) instead of
``concat_lengths(x)``, checked bit for bit against ``ncd.alignment_from_lengths`` over zlib.

    python benchmarks/kernel_ab.py [--rounds 15] [--cflags "-DX"] [--alignment] A.c B.c ...
                                   [--docs-file F.jsonl] [--targets-file T.jsonl]

``--docs-file``/``--targets-file``: JSON Lines texts instead (``kernel_bench.add_workload_args``).
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

from zipfit_beam.score.ncd import alignment_from_lengths  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--rounds", type=int, default=15)
    kb.add_workload_args(ap)
    ap.add_argument("--cflags", default="")
    ap.add_argument("--alignment", action="store_true", help="time alignment(x), not concat_lengths(x)")
    a = ap.parse_args(argv)
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    inc = sysconfig.get_paths()["include"]
    score_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zipfit_beam", "score")
    docs, targets = kb.workload(a)
    def gz(data):
        return len(zlib.compress(data, 1, -15)) + 18

    expected = [[gz(x + y) for y in targets] for x in docs]
    if a.alignment:
        lengths = [gz(y) for y in targets]
        expected = [alignment_from_lengths(gz(x), lengths, row) for x, row in zip(docs, expected)]
    mods = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(a.sources):
            d = os.path.join(tmp, str(i))
            os.mkdir(d)
            out = os.path.join(d, "_gzip1.so")
            subprocess.run(cc + ["-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fwrapv", "-DNDEBUG",
                                 *a.cflags.split(), "-I" + inc, "-I" + score_dir, src, "-o", out], check=True)
            mods.append(load(out))
    ks = [m.Gzip1Targets(targets) for m in mods]
    pairs = len(docs) * len(targets)
    times = [[] for _ in ks]
    mism = [0] * len(ks)
    for _ in range(a.rounds):
        for i, k in enumerate(ks):
            t0 = time.thread_time()
            got = [(k.alignment if a.alignment else k.concat_lengths)(x) for x in docs]
            times[i].append(time.thread_time() - t0)
            mism[i] += (sum(g != e for g, e in zip(got, expected)) if a.alignment
                        else kb.count_mismatches(expected, got))
    for src, t, m in zip(a.sources, times, mism):
        t.sort()
        checked = (len(docs) if a.alignment else pairs) * a.rounds
        print(f"{src:40s} min {t[0] / pairs * 1e6:6.3f}  median {t[len(t) // 2] / pairs * 1e6:6.3f} us/pair"
              f" ({t[0] / len(docs) * 1e6:.1f} us/document)  mismatches {m} in {checked}")
    return 0 if not any(mism) else 2


if __name__ == "__main__":
    sys.exit(main())
