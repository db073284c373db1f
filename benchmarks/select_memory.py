"""Peak memory of selecting K = 1,000,000 documents: the radix select (``SelectDocuments``)
against its peer, the previous ``Top.Smallest(K)`` over ranking keys, in one run.

Each variant runs in its own process on Beam's FnApiRunner (in-memory, one process, so the
process's peak RSS includes every buffered PCollection). Two baselines run the same
documents: one only counts them (streamed), one makes them wait for a side input (buffered,
as both selection methods must). The excess over the buffered baseline is what selecting
costs in that process. Documents are synthetic ScoredDocuments without text (id, score drawn
from a ZIP-FIT-like distribution rounded to 1e-7 so that exact ties exist, token count),
generated inside the pipeline from 64 seeds.

It also reports what a single worker must hold in the one global merge of each method:
Top.Smallest holds K keys; the radix select holds one histogram (at most 65,536 bins) per
round and the exact ties at the boundary.

    python benchmarks/select_memory.py [--docs 1500000] [--k 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SEEDS = 64


def documents(seed: int, per_seed: int):
    from zipfit_beam.records import ScoredDocument
    rng = random.Random(seed)
    for i in range(per_seed):
        score = round(min(0.6, max(0.0, rng.gauss(0.15, 0.04))), 7)
        yield ScoredDocument(f"doc-{seed:02d}-{i:08d}", score, f"part-{seed:02d}.jsonl", i + 1, b"",
                             rng.randint(20, 2000))


def run_variant(variant: str, n_docs: int, k: int) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pvalue import AsSingleton

    from zipfit_beam.records import rank_key
    from zipfit_beam.select.cut import SelectionRule
    from zipfit_beam.select.transforms import SelectDocuments

    per_seed = n_docs // SEEDS
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])
    t0 = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        docs = (p
                | beam.Create(list(range(SEEDS)))
                | beam.Reshuffle()
                | beam.FlatMap(documents, per_seed))
        if variant == "baseline":
            kept = docs
        elif variant == "baseline_buffered":  # the documents wait for a side input, as in both methods
            n = docs | "N" >> beam.combiners.Count.Globally()
            kept = docs | beam.Filter(lambda d, total: total > 0, AsSingleton(n))
        elif variant == "radix":
            kept = (docs | SelectDocuments(SelectionRule(top_k=k))).selected
        else:  # the previous SelectTopK: Top.Smallest over keys, filter by the K-th key
            kth = (docs
                   | beam.Map(rank_key)
                   | beam.combiners.Top.Smallest(k)
                   | beam.Map(lambda top: top[k - 1] if len(top) >= k else None))
            kept = docs | beam.Filter(lambda d, t: t is None or rank_key(d) <= t, AsSingleton(kth))
        count = kept | beam.combiners.Count.Globally()
        out_path = os.environ["SELECT_MEMORY_OUT"]
        count | beam.Map(lambda n: open(out_path, "w").write(str(n)))
    wall = time.perf_counter() - t0
    selected = int(open(os.environ["SELECT_MEMORY_OUT"]).read())
    return {"variant": variant, "docs": per_seed * SEEDS, "k": k, "selected": selected,
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def single_worker_state(n_docs: int, k: int) -> dict:
    """What the one global merge holds, measured on the same documents without Beam."""
    from zipfit_beam.records import rank_key
    from zipfit_beam.select import cut as sel

    keys = [sel.SelectionKey(rank_key(d), d.tokens)
            for s in range(SEEDS) for d in documents(s, n_docs // SEEDS)]
    top = sorted(sk.key for sk in keys)[:k]
    rule = sel.SelectionRule(top_k=k)
    hist_sizes, hist_bytes, max_live = [], [], 0

    def measure(hist):
        nonlocal max_live
        hist_sizes.append(len(hist))
        hist_bytes.append(len(pickle.dumps(hist)))
        max_live = max(max_live, live_bytes(hist))

    hist = {}  # the same rounds as selection.find_cut, measured
    for sk in keys:
        sel.histogram_add(hist, sel.first_digit(sk, rule), sk)
    measure(hist)
    cursor = sel.first_round(hist, rule)
    candidates = [sk for sk in keys if sel.is_next_candidate(sk, cursor, rule)]
    for _ in range(sel.ROUNDS - 1):
        hist = {}
        for sk in candidates:
            sel.histogram_add(hist, sel.digit(sk, cursor), sk)
        measure(hist)
        cursor = sel.advance(cursor, hist, rule)
        candidates = [sk for sk in candidates if sel.is_candidate(sk, cursor)]
    ties = candidates
    cut = sel.resolve(cursor, ties, rule)
    assert cut == sel.brute_force_cut(keys, rule)
    return {"top_smallest_keys": len(top), "top_smallest_pickled_mb": round(len(pickle.dumps(top)) / 2**20, 1),
            "top_smallest_live_mb": round(live_bytes(top) / 2**20, 1),
            "radix_histogram_bins": hist_sizes, "radix_histogram_pickled_kb": [round(b / 1024, 1) for b in hist_bytes],
            "radix_largest_histogram_live_mb": round(max_live / 2**20, 2),
            "radix_boundary_ties": len(ties)}


def live_bytes(obj) -> int:
    """Python heap taken by a fresh copy of ``obj`` (as a worker holds it after decoding)."""
    data = pickle.dumps(obj)
    tracemalloc.start()
    copy = pickle.loads(data)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copy
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_500_000)
    ap.add_argument("--k", type=int, default=1_000_000)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.docs, a.k)))
        return
    results = []
    for variant in ("baseline", "baseline_buffered", "radix", "top_smallest"):
        env = dict(os.environ, SELECT_MEMORY_OUT=f"/tmp/select_memory_{os.getpid()}_{variant}")
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--docs", str(a.docs),
                              "--k", str(a.k)], env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps(single_worker_state(a.docs, a.k)))


if __name__ == "__main__":
    main()
