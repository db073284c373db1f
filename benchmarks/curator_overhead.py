"""What the curator features cost next to scoring, measured in one process on the same data.

Per document, single-threaded: ZIP-FIT scoring against the targets (``ncd.TargetSet``, the
C kernel when built), the contamination check (``json.loads`` of the record +
``ContaminationIndex.match``), and the report's per-document facts (``record_text_and_group``
+ ``count_tokens``). Then the report rendering from a summary of the run. Ratios, not
absolute times, are the claim: the machine may be shared.

    python benchmarks/make_corpus.py --docs 10000 --out corpus.jsonl --targets he.jsonl
    head -82 he.jsonl > he82.jsonl
    python benchmarks/curator_overhead.py --source corpus.jsonl --target he82.jsonl [--docs 3000]
"""

from __future__ import annotations

import argparse
import json
import time

from zipfit_beam import contamination, ncd, stats


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
    records = [line.rstrip("\n").encode() for _, line in zip(range(args.docs), open(args.source))]
    texts = [json.loads(r)["text"].encode() for r in records]
    target_set = ncd.TargetSet([t["text"].encode() for t in targets])
    index = contamination.ContaminationIndex(
        e for t in targets for e in contamination.target_ngrams(t["id"], t["text"]))

    score = timed(target_set.alignment, texts)
    contamination._TOKEN_CACHE.clear()
    guard = timed(lambda r: index.match(json.loads(r)["text"]), records)
    facts = timed(lambda r: stats.count_tokens(stats.record_text_and_group(r, "text", "source")[0]),
                  records)
    mb = sum(map(len, texts)) / 1e6
    print(f"{len(records):,} documents ({mb:.1f} MB) x {len(targets)} targets, "
          f"kernel={ncd.kernel_name()}; CPU seconds, one thread:")
    for name, secs in (("score", score), ("contamination guard", guard), ("report facts", facts)):
        print(f"  {name:<20} {secs:7.2f} s  {secs / score:6.1%} of scoring  "
              f"{secs / len(records) * 1e6:8.1f} us/doc")


if __name__ == "__main__":
    main()
