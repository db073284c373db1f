"""What the curator features cost next to scoring, measured in one process on the same data.

Per document, single-threaded, on texts already in memory (as in the scoring step, where
the guard runs): ZIP-FIT scoring against the targets (``ncd.TargetSet``, the C kernel when
built) and the contamination check (``ContaminationIndex.match``). The report adds no
per-document work with text: its combiners read the scored keys only. Ratios, not absolute
times, are the claim: the machine may be shared.

    python benchmarks/make_corpus.py --docs 10000 --out corpus.jsonl --targets he.jsonl
    head -82 he.jsonl > he82.jsonl
    python benchmarks/curator_overhead.py --source corpus.jsonl --target he82.jsonl [--docs 3000]
"""

from __future__ import annotations

import argparse
import json
import time

from zipfit_beam.score import contamination
from zipfit_beam.score import ncd


def timed(fn, items):
    start = time.process_time()
    for item in items:
        fn(item)
    return time.process_time() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--docs", type=int, default=3000)
    args = p.parse_args()
    targets = [json.loads(line) for line in open(args.target)]
    texts = [json.loads(line)["text"] for _, line in zip(range(args.docs), open(args.source))]
    encoded = [t.encode() for t in texts]
    target_set = ncd.TargetSet([t["text"].encode() for t in targets])
    index = contamination.ContaminationIndex(
        e for t in targets for e in contamination.target_ngrams(t["id"], t["text"]))

    score = timed(target_set.alignment, encoded)
    contamination._TOKEN_CACHE.clear()
    guard = timed(index.match, texts)
    mb = sum(map(len, encoded)) / 1e6
    print(f"{len(texts):,} documents ({mb:.1f} MB) x {len(targets)} targets, "
          f"kernel={ncd.kernel_name()}; CPU seconds, one thread:")
    for name, secs in (("score", score), ("contamination guard", guard)):
        print(f"  {name:<20} {secs:7.2f} s  {secs / score:6.1%} of scoring  "
              f"{secs / len(texts) * 1e6:8.1f} us/doc")


if __name__ == "__main__":
    main()
