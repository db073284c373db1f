"""Per-pair cost of the whole scoring pass with --compressor lz4: ``DocumentWork.score_batch``.

Workload: the real mixed corpus of benchmarks/make_corpus.py x the first 82 HumanEval problems
(prompt + canonical solution) as targets, scored as a worker scores them: ``ScoringSpec``'s
defaults for lz4 level 0 (chunks of 32 KiB reduced by max), the contamination guard over the
targets' 13-grams and the default token counter, in batches of 64 on one thread. Timed in CPU
seconds of that thread (best of --repeat), so other processes on the machine matter less.

    python benchmarks/lz4_docwork_bench.py [--docs 1000] [--targets 82] [--repeat 3] [--check] [--compare]

It reports us per (document, target) pair, and whether the scores came from the extension's
pass (``DocumentWork.fused_scores``, absent before the lz4 kernel had a capsule) or from
Python per document; with ``--check`` also that the scores equal the all-Python path's
(lz4.frame lengths, no extension) bit for bit. ``--compare`` also times, in the same process
and alternating with it run by run (so both see the same load), the path lz4 took before the
fused pass: the extension's guard and counter, then per document ``ncd.document_score`` with
the Python sum over the kernel's lengths (``TargetSet.alignment_of_lengths``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_corpus  # noqa: E402  (benchmarks/ is not a package)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--check", action="store_true", help="compare with the all-Python scores")
    ap.add_argument("--compare", action="store_true", help="also time the earlier, unfused path")
    a = ap.parse_args(argv)

    from zipfit_beam.records import Document
    from zipfit_beam.score import docwork, ncd
    from zipfit_beam.score.spec import ScoringSpec, prepare_targets

    spec = ScoringSpec(compressor="lz4", level=0)
    rows = list(make_corpus.humaneval_targets())[: a.targets]
    prepared = prepare_targets([Document(r["id"], r["text"], "humaneval", i, b"") for i, r in enumerate(rows)])
    target_set = prepared.target_set(spec)
    index = prepared.ngram_index(spec.contamination_ngram)
    work = docwork.DocumentWork(target_set, index, None, spec.long_documents)
    texts = [d["text"] for d in make_corpus.build(a.docs)]
    batches = [texts[i:i + a.batch] for i in range(0, len(texts), a.batch)]
    pairs = len(texts) * len(prepared.texts)

    def timed(w):
        t0 = time.thread_time()
        out = [r for b in batches for r in w.score_batch(b)]
        return time.thread_time() - t0, out

    before = None
    if a.compare:
        # the earlier path: no kernel object for the pass, and TargetSet's Python sum
        python_sum = prepared.target_set(spec)
        python_sum.kernel, python_sum._kernel_alignment = None, None
        before = docwork.DocumentWork(python_sum, index, None, spec.long_documents)
        assert not getattr(before, "fused_scores", False)
    times, before_times, results = [], [], None
    for _ in range(a.repeat):
        t, results = timed(work)
        times.append(t)
        if before is not None:
            t, before_results = timed(before)
            before_times.append(t)
            assert before_results == results, "the two paths differ"
    fused = getattr(work, "fused_scores", False)
    print(f"kernel {ncd.kernel_name('lz4', 0)}, extension {'built' if docwork.extension_loaded() else 'NOT built'}, "
          f"scores {'in the C pass' if fused else 'per document in Python'}")
    print(f"{len(texts)} documents ({sum(len(t.encode()) for t in texts):,} bytes) x {len(prepared.texts)} targets, "
          f"batches of {a.batch}, one thread, best of {a.repeat}: "
          f"{min(times) / pairs * 1e6:.3f} us/pair ({min(times):.2f} s CPU)")
    if before_times:
        print(f"  the earlier path (Python sum per document), same runs: {min(before_times) / pairs * 1e6:.3f} "
              f"us/pair; ratio {min(before_times) / min(times):.2f}x (identical results)")
    if a.check:
        slow = ncd.TargetSet([t.encode("utf-8") for t in prepared.texts], "lz4", 0, use_kernel=False)
        reference = docwork.DocumentWork(slow, index, None, spec.long_documents,
                                         use_extension=False).score_batch(texts)
        differ = sum(r != e for r, e in zip(results, reference))
        print(f"{differ} of {len(texts)} results differ from the all-Python path (lz4.frame)")
        return 0 if differ == 0 else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
