"""How long documents score under each long-document mode, on real long text.

Pool: short real documents (``make_corpus.build``: stdlib functions, man-page sections, C
headers, Perl, all <= 16,000 characters), plus whole long files found on the machine
(Python standard library modules, man pages, C headers; 40-200 KB each), each in two
versions: as is, and with one HumanEval target (one of the targets scored against)
planted verbatim at a random line boundary. Every document is scored against the targets
in each mode; for the planted copies we report where they rank in the whole pool, and for
the unplanted long files how many sneak into the top 5% (length bias).

    python benchmarks/long_documents.py [--short 2000] [--long 120] [--targets 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import statistics
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_corpus import build, humaneval_targets  # noqa: E402

from zipfit_beam.score.ncd import TargetSet, kernel_name, split_chunks  # noqa: E402

MIN_LONG, MAX_LONG = 40_000, 200_000


def long_files(n: int):
    """n whole files of 40-200 KB, round-robin over Python modules, man pages, C headers."""
    stdlib = sysconfig.get_paths()["stdlib"]
    kinds = {
        "python": sorted(p for p in glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True)
                         if "/test" not in p and "site-packages" not in p),
        "man": sorted(glob.glob("/usr/share/man/man*/*.gz")),
        "c": sorted(glob.glob("/usr/include/**/*.h", recursive=True)),
    }
    picked = {k: [] for k in kinds}
    for kind, paths in kinds.items():
        for path in paths:
            try:
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rt", encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError, EOFError):
                continue
            if MIN_LONG <= len(text.encode()) <= MAX_LONG:
                picked[kind].append((f"{kind}:{path}", text))
    out = []
    for i in range(max(map(len, picked.values()))):
        for kind in kinds:
            if i < len(picked[kind]) and len(out) < n:
                out.append(picked[kind][i])
    return out


def plant(text: str, target: str, rng: random.Random) -> str:
    lines = text.split("\n")
    at = rng.randrange(1, len(lines))
    return "\n".join(lines[:at] + [target] + lines[at:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=2000)
    ap.add_argument("--long", type=int, default=120)
    ap.add_argument("--targets", type=int, default=40)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()

    targets = [t["text"] for t in list(humaneval_targets())[:a.targets]]
    target_set = TargetSet([t.encode() for t in targets])
    rng = random.Random(0)
    short = [d["text"] for d in build(a.short)]
    longs = long_files(a.long)
    planted = [plant(text, targets[i % len(targets)], rng) for i, (_, text) in enumerate(longs)]
    pool = ([("short", t) for t in short] + [("long", t) for _, t in longs]
            + [("planted", t) for t in planted])
    sizes = [len(t.encode()) for _, t in longs]
    print(f"{len(short)} short documents, {len(longs)} long files "
          f"(median {statistics.median(sizes) / 1000:.0f} KB), {len(targets)} targets, "
          f"kernel {kernel_name()}", flush=True)

    # Score once per chunk size (each chunk's alignment), derive max and mean from it.
    chunk_sizes = [1024, 2048, 4096, 8192, 16384, 32768]
    truncations = [16384, 32768]

    def score(text):
        data = text.encode()
        out = {"whole": target_set.alignment(data)}
        for m in truncations:
            out[f"truncate-{m // 1024}K"] = target_set.alignment(data[:m]) if len(data) > m else out["whole"]
        for c in chunk_sizes:
            parts = [target_set.alignment(p) for p in split_chunks(data, c)] if len(data) > c else [out["whole"]]
            out[f"chunk-{c // 1024}K-max"] = max(parts)
            out[f"chunk-{c // 1024}K-mean"] = sum(parts) / len(parts)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.threads) as pool_exec:
        scores = list(pool_exec.map(lambda kt: score(kt[1]), pool))
    print(f"scored {len(pool)} documents in all modes in {time.perf_counter() - t0:.1f} s\n")

    modes = list(scores[0])
    kinds = [k for k, _ in pool]
    results = {}
    header = (f"{'mode':16s} {'planted: median rank %':>22s} {'in top 1%':>9s} {'in top 5%':>9s} "
              f"{'gain vs unplanted':>17s} {'unplanted long: median rank %':>29s} {'in top 5%':>9s} {'short docs top-5% kept':>22s}")
    print(header)
    n = len(pool)
    for mode in modes:
        order = sorted(range(n), key=lambda i: -scores[i][mode])
        rank = {i: r for r, i in enumerate(order)}
        top5 = max(1, n // 20)
        planted_ranks = [rank[i] / n * 100 for i in range(n) if kinds[i] == "planted"]
        gains = [scores[len(short) + len(longs) + j][mode] - scores[len(short) + j][mode]
                 for j in range(len(longs))]
        long_top5 = sum(1 for i in order[:top5] if kinds[i] == "long")
        long_ranks = [rank[i] / n * 100 for i in range(n) if kinds[i] == "long"]
        # Of the short documents in the whole-document top 5%, how many are still there
        # (how much a mode disturbs the ranking of ordinary documents).
        base_order = sorted(range(n), key=lambda i: -scores[i]["whole"])
        base_short = {i for i in base_order[:top5] if kinds[i] == "short"}
        kept = len(base_short & set(order[:top5])) / max(1, len(base_short))
        r = {"planted_median_rank_pct": statistics.median(planted_ranks),
             "planted_top1_pct": sum(p < 1 for p in planted_ranks) / len(planted_ranks),
             "planted_top5_pct": sum(p < 5 for p in planted_ranks) / len(planted_ranks),
             "median_gain": statistics.median(gains),
             "unplanted_long_in_top5": long_top5,
             "unplanted_long_median_rank_pct": statistics.median(long_ranks), "long_files": len(longs),
             "short_top5_kept": kept}
        results[mode] = r
        print(f"{mode:16s} {r['planted_median_rank_pct']:21.1f}% {r['planted_top1_pct']:9.0%} "
              f"{r['planted_top5_pct']:9.0%} {r['median_gain']:17.4f} "
              f"{statistics.median(long_ranks):28.1f}% {long_top5:>4d} / {len(longs):<4d}{kept:16.0%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"short": len(short), "long": len(longs), "targets": len(targets),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
