"""Per-core speed of the exact lz4 length kernel (zipfit_beam.score._lz4len) against python-lz4.

Workload: the real mixed corpus of benchmarks/make_corpus.py (Python standard-library
functions and classes, man pages, C headers, Perl modules; capped at 16,000 characters, so
every source + target pair is one 64 KiB block) x the first 82 HumanEval problems (prompt +
canonical solution) as targets, plus a few long documents (concatenated corpus documents of
70-200 KB, so the frames have linked blocks). Everything runs on one thread and is timed in
CPU seconds of that thread (best of --repeat), so other processes on the machine matter less;
the ratios are measured in the same run.

    library   [len(lz4.frame.compress(x + y, compression_level=0)) for y in targets]
              (the reference zip-fit's lz4 call, in the tightest Python loop)
    kernel    Lz4Targets(targets).concat_lengths(x)
    scoring   ncd.TargetSet(targets, "lz4", 0).alignment(x): C(x), every C(x + y) and the
              NCD sum, with the kernel and with use_kernel=False (the library)

Every kernel length is compared with the library's over every pair timed (mismatches are
counted and must be 0), and the two scorings' alignments must be identical.

    python benchmarks/lz4_kernel_bench.py [--docs 1500] [--targets 82] [--repeat 3] [--long 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_corpus  # noqa: E402  (benchmarks/ is not a package)


def best_time(fn, repeat: int):
    """Best of `repeat` runs in CPU seconds of this thread, and every run's result."""
    times, results = [], []
    for _ in range(repeat):
        t0 = time.thread_time()
        results.append(fn())
        times.append(time.thread_time() - t0)
    return min(times), results


def mismatches(expected, got) -> int:
    return sum(e != g for ee, gg in zip(expected, got) for e, g in zip(ee, gg))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long", type=int, default=20, help="long documents (70-200 KB) to add")
    a = ap.parse_args(argv)

    import lz4
    import lz4.frame

    from zipfit_beam.score import ncd
    try:
        from zipfit_beam.score import _lz4len
    except ImportError:
        print("zipfit_beam.score._lz4len is not built (pip install -e . with a C compiler)")
        return 1

    targets = [t["text"].encode("utf-8") for t in make_corpus.humaneval_targets()][: a.targets]
    docs = [d["text"].encode("utf-8") for d in make_corpus.build(a.docs)]
    longs = []
    for i in range(a.long):  # deterministic: consecutive corpus documents glued to 70-200 KB
        want, j, buf = 70_000 + (i * 6_500) % 130_000, (i * 37) % len(docs), b""
        while len(buf) < want:
            buf += docs[j % len(docs)]
            j += 1
        longs.append(buf[:want])

    kernel = _lz4len.Lz4Targets(targets)
    sizes = sorted(map(len, docs))
    print(f"python-lz4 {lz4.__version__} (LZ4 {lz4.library_version_string()}); kernel reproduces "
          f"{_lz4len.LZ4_COMPAT}; scoring kernel here: {ncd.kernel_name('lz4', 0)}")
    print(f"{len(docs)} documents (bytes: min {sizes[0]}, median {statistics.median(sizes):.0f}, "
          f"max {sizes[-1]}) x {len(targets)} targets (mean {sum(map(len, targets)) / len(targets):.0f} B), "
          f"single thread, best of {a.repeat}")

    def run_lib(xs):
        return lambda: [[len(lz4.frame.compress(x + y, compression_level=0)) for y in targets] for x in xs]

    def run_kernel(xs):
        return lambda: [kernel.concat_lengths(x) for x in xs]

    bad = checked = 0

    def compare(name, xs):
        nonlocal bad, checked
        pairs = len(xs) * len(targets)
        t_lib, lib_runs = best_time(run_lib(xs), a.repeat)
        t_ker, ker_runs = best_time(run_kernel(xs), a.repeat)
        for got in ker_runs:
            bad += mismatches(lib_runs[0], got)
            checked += pairs
        print(f"{name:<28} library {t_lib / pairs * 1e6:7.3f}  kernel {t_ker / pairs * 1e6:7.3f} us/pair"
              f"  ratio {t_lib / t_ker:5.2f}x  ({pairs} pairs)")
        return t_lib / pairs * 1e6, t_ker / pairs * 1e6

    us_lib, us_ker = compare("lengths, all documents", docs)
    for lo, hi in [(0, 500), (500, 2000), (2000, 8000), (8000, 1 << 30)]:
        sel = [x for x in docs if lo <= len(x) < hi]
        if sel:
            compare(f"  docs {lo}-{hi if hi < 1 << 30 else 'inf'} B ({len(sel)})", sel)
    if longs:
        compare(f"long docs 70-200 KB ({len(longs)})", longs)

    fast = ncd.TargetSet(targets, "lz4", 0)
    slow = ncd.TargetSet(targets, "lz4", 0, use_kernel=False)
    pairs = len(docs) * len(targets)
    t_fast, fast_runs = best_time(lambda: [fast.alignment(x) for x in docs], a.repeat)
    t_slow, slow_runs = best_time(lambda: [slow.alignment(x) for x in docs], a.repeat)
    differ = sum(f != s for run in fast_runs for f, s in zip(run, slow_runs[0]))
    print(f"{'scoring (alignment per doc)':<28} library {t_slow / pairs * 1e6:7.3f}  kernel "
          f"{t_fast / pairs * 1e6:7.3f} us/pair  ratio {t_slow / t_fast:5.2f}x  "
          f"({differ} alignments differ)")
    print(f"at {len(targets)} targets: kernel {us_ker:.3f} us/pair vs library {us_lib:.3f} us/pair "
          f"({us_lib / us_ker:.2f}x); scoring end to end {t_fast / pairs * 1e6:.3f} us/pair")
    print(f"mismatches: {bad} in {checked} kernel lengths checked against lz4.frame")
    return 0 if bad == 0 and differ == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
