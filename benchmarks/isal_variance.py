"""Does python-isal's own isal_zlib.compress give the same lengths in every process and thread?

And does _liblen's C loop (ncd.ISAL_C_LOOP)? The same (input, level) pairs -- the package's
example documents cut to 30, 200 and 1,000 bytes, at levels 1 and 2 -- are compressed from Python
and by the C loop (IsalTargets, when _liblen is built):

  processes  in --processes fresh interpreters (each with its own address-space layout); each
             prints its lengths, and the pairs whose length is not the most common one are
             counted per process
  threads    in each process, the same pairs on two worker threads (their own stacks) against
             the main thread

With deterministic output every process agrees and no thread differs. python-isal's does not
(python-isal 1.9.1, ISA-L 2.32.1, x86-64): ISA-L hashes its stream struct's address, which
python-isal keeps on the calling thread's stack (benchmarks/isal_stray_hash.py shows how). The C
loop puts its structs where that hash is 0: its lengths agree everywhere.

    python benchmarks/isal_variance.py [--processes 30]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import subprocess
import sys

DATA = os.path.join(os.path.dirname(__file__), "..", "zipfit_beam", "data", "example_source.jsonl.gz")


def pairs():
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["text"].encode("utf-8") for line in f]
    return [(d[:n], level) for level in (1, 2) for d in docs[:100] for n in (30, 200, 1000)]


def child() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from isal import isal_zlib

    work = pairs()

    def lengths(chunk):
        return [len(isal_zlib.compress(x, level, -15)) for x, level in chunk]

    main = lengths(work)
    half = len(work) // 2
    with ThreadPoolExecutor(2) as pool:
        threaded = [n for part in pool.map(lengths, [work[:half], work[half:]]) for n in part]
    out = {"lengths": main, "thread_diffs": sum(a != b for a, b in zip(main, threaded))}
    try:
        from zipfit_beam.score import _liblen, ncd
    except ImportError:
        _liblen = None
    if _liblen is not None and ncd._load_library("isal"):
        kernels = {level: _liblen.IsalTargets([b""], level) for level in (1, 2)}

        def c_lengths(chunk):  # C(x + b"") - 18 = len(isal_zlib.compress(x, level, -15))
            return [kernels[level].concat_lengths(x)[0] - 18 for x, level in chunk]

        c_main = c_lengths(work)
        with ThreadPoolExecutor(2) as pool:
            c_threaded = [n for part in pool.map(c_lengths, [work[:half], work[half:]]) for n in part]
        out.update(c=c_main, c_thread_diffs=sum(a != b for a, b in zip(c_main, c_threaded)))
    print(json.dumps(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=30)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child()
        return 0
    import isal
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(a.processes)]
    n = len(runs[0]["lengths"])
    common = [collections.Counter(r["lengths"][i] for r in runs).most_common(1)[0][0] for i in range(n)]
    off = [sum(r["lengths"][i] != common[i] for i in range(n)) for r in runs]
    print(f"python-isal {isal.__version__}; {n} (input, level) pairs; {a.processes} processes")
    print(f"processes whose lengths all equal the most common ones: {off.count(0)} of {a.processes}")
    print(f"  the others differ on {sorted(x for x in off if x)} pairs")
    thread = [r["thread_diffs"] for r in runs]
    print(f"processes where two worker threads gave other lengths than the main thread: "
          f"{sum(1 for t in thread if t)} of {a.processes} ({sorted(t for t in thread if t)} pairs)")
    if all("c" in r for r in runs):
        c_off = sum(r["c"] != runs[0]["c"] for r in runs)
        c_thread = sum(1 for r in runs if r["c_thread_diffs"])
        steady = [i for i in range(n) if all(r["lengths"][i] == common[i] for r in runs)]
        print(f"the C loop (_liblen): processes whose lengths differ from the first's: {c_off}; "
              f"processes where its threads differ: {c_thread}; pairs where it differs from "
              f"python-isal's steady lengths: {sum(runs[0]['c'][i] != common[i] for i in steady)} "
              f"(python-isal varies on {n - len(steady)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
