"""Does ``zipfit-beam align --sample N`` state its error honestly? Coverage of its 95% interval.

Scores every document once (the exact per-document alignments), then, for many seeds, draws
the same sample ``align`` draws (the N smallest ``stats.sample_key(file, line, seed)``) and
builds the same estimate (``stats.mean_estimate``). Reports how often the interval contains
the exact full-corpus value (should be close to 95%) and the typical error.

    python benchmarks/align_sampling.py --source corpus.jsonl --target he82.jsonl \
        [--sizes 30 100 500] [--seeds 200]
"""

from __future__ import annotations

import argparse
import json
import statistics

from zipfit_beam.score import ncd
from zipfit_beam.report import stats


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[30, 100, 500])
    p.add_argument("--seeds", type=int, default=200)
    args = p.parse_args()
    targets = ncd.TargetSet([json.loads(line)["text"].encode() for line in open(args.target)])
    scores = [targets.alignment(json.loads(line)["text"].encode()) for line in open(args.source)]
    exact = statistics.fmean(scores)
    print(f"{len(scores):,} documents, exact alignment {exact:.6f}")
    for n in args.sizes:
        covered, errors, ses = 0, [], []
        for seed in range(args.seeds):
            keyed = sorted((stats.sample_key(args.source, line, seed), s)
                           for line, s in enumerate(scores, start=1))
            mv = stats.MeanVariance()
            for _, s in keyed[:n]:
                mv = mv.add(s)
            est = stats.mean_estimate(mv, len(scores))
            lo, hi = est["ci95"]
            covered += lo <= exact <= hi
            errors.append(abs(est["mean"] - exact))
            ses.append(est["standard_error"])
        print(f"  n={n:>5}: 95% CI covers the exact value in {covered / args.seeds:.1%} of "
              f"{args.seeds} samples; median |error| {statistics.median(errors):.5f}, "
              f"median stated SE {statistics.median(ses):.5f}")


if __name__ == "__main__":
    main()
