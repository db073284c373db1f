"""Where a document's CPU goes in the scoring pass, and what 2 scoring threads buy end to end.

1. Per-document CPU breakdown, in this process, one thread (``time.thread_time``), on a sample
   of the corpus: parse (``io.parse.parse_record`` of the JSON line), UTF-8 encode, the exact
   kernel (``ncd.document_score``), the contamination guard and the default token counter,
   each in Python and in the C extension (``score._docwork``), the fused C pass (guard +
   tokens in one call), and ``DocumentWork.score_batch`` whole (batches of 64) per engine.
2. Whole ``zipfit-beam select`` processes, one after the other, timed with /usr/bin/time
   (wall, CPU = user + sys): engine c (the extension) and python (the extension's import
   blocked, as when it is not built), ``--scoring-threads`` 1 and 2, repeated ``--repeat``
   times in interleaved order; "rest" per document is the process CPU minus the parts above
   (Beam's per-element work, reading, the selection rounds, start-up). The selected shards
   of every run are checked to be identical.

    python benchmarks/make_corpus.py --docs 20000 --out c.jsonl --targets t.jsonl --max-targets 82
    python benchmarks/scoring_pass.py --source c.jsonl --target t.jsonl [--copies 3] [--limit N]
        [--sample 2000] [--engines c,python] [--threads 1,2] [--repeat 1] [--top-k 1000]

``--limit`` takes the first N documents, ``--copies K`` writes K copies of them as K files
(ids suffixed), e.g. 76,033 x 3 = 228,099 documents. Measure on an idle machine if you can:
the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PY = sys.executable
# The select process, with its main thread's CPU seconds (Beam's work runs there; the scoring
# pool's threads are the rest) printed at exit; engine python blocks the extension's import.
LAUNCH = ("import atexit, sys, time\n"
          "atexit.register(lambda: print('@@THREADCPU', time.thread_time(), time.process_time(), file=sys.stderr))\n"
          "{block}from zipfit_beam.cli.main import main\nsys.exit(main())\n")
BLOCK_EXTENSION = "sys.modules['zipfit_beam.score._docwork'] = None\n"


def thread_cpu(fn, repeat=1):
    """Least thread CPU seconds of ``repeat`` runs of fn()."""
    best = None
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        t = time.thread_time() - t0
        best = t if best is None else min(best, t)
    return best


def breakdown(lines, targets, sample, repeat):
    from zipfit_beam.io.parse import parse_record
    from zipfit_beam.records import Document, RawRecord
    from zipfit_beam.score import contamination, docwork, tokens
    from zipfit_beam.score.ncd import document_score
    from zipfit_beam.score.spec import ScoringSpec, prepare_targets

    spec = ScoringSpec()
    prepared = prepare_targets([Document(t["id"], t["text"], "targets", i, b"") for i, t in enumerate(targets)])
    target_set = prepared.target_set(spec)
    index = prepared.ngram_index(spec.contamination_ngram)
    raws = [RawRecord("corpus", i + 1, line) for i, line in enumerate(lines[:sample])]
    docs = [parse_record(r, "text", "id") for r in raws]
    texts = [d.text for d in docs]
    data = [t.encode("utf-8") for t in texts]
    n = len(texts)
    long_docs = spec.long_documents
    ext = docwork._EXT
    parts = {}
    parts["parse (JSON line -> Document)"] = thread_cpu(lambda: [parse_record(r, "text", "id") for r in raws], repeat)
    parts["encode UTF-8"] = thread_cpu(lambda: [t.encode("utf-8") for t in texts], repeat)
    parts["kernel (document_score)"] = thread_cpu(lambda: [document_score(target_set, b, **long_docs) for b in data], repeat)

    def fresh_python_guard():
        contamination._TOKEN_CACHE.clear()  # measured warm below; the cache fills within a batch anyway
        [index.match(t) for t in texts]

    fresh_python_guard()
    parts["guard, Python"] = thread_cpu(lambda: [index.match(t) for t in texts], repeat)
    parts["tokens, Python regex"] = thread_cpu(lambda: [tokens.count_regex(t) for t in texts], repeat)
    if ext is not None:
        guard, _ = docwork._compiled(index)
        ext.analyze(texts, guard, True)  # warm the token-hash cache, as the Python side is
        parts["guard, C"] = thread_cpu(lambda: ext.analyze(texts, guard, False), repeat)
        parts["tokens, C"] = thread_cpu(lambda: ext.analyze(texts, None, True), repeat)
        parts["guard + tokens fused, C"] = thread_cpu(lambda: ext.analyze(texts, guard, True), repeat)
    for use in ([True, False] if ext is not None else [False]):
        work = docwork.DocumentWork(target_set, index, tokens.TokenCounter(), long_docs, use_extension=use)
        batches = [texts[i:i + spec.batch_size] for i in range(0, n, spec.batch_size)]
        parts[f"DocumentWork.score_batch, engine {work.engine}"] = thread_cpu(
            lambda: [work.score_batch(b) for b in batches], repeat)
    sizes = sorted(len(b) for b in data)
    print(f"\nper-document CPU, one thread, {n} documents (median {sizes[n // 2]} B, mean "
          f"{sum(sizes) / n:.0f} B, {sum(not t.isascii() for t in texts)} not ASCII) x {len(targets)} targets:")
    us = {k: v / n * 1e6 for k, v in parts.items()}
    for k, v in us.items():
        print(f"  {k:<44} {v:8.1f} us")
    return us


def write_corpus(lines, copies, work):
    paths = []
    for c in range(copies):
        path = os.path.join(work, f"corpus-{c}.jsonl")
        with open(path, "wb") as f:
            for line in lines:
                if copies > 1:
                    obj = json.loads(line)
                    obj["id"] = f"{obj['id']}#{c}"
                    line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
                f.write(line + b"\n")
        paths.append(path)
    return paths


def run_select(engine, threads, source, target, out, top_k):
    code = LAUNCH.format(block=BLOCK_EXTENSION if engine == "python" else "")
    cmd = ["/usr/bin/time", "-f", "@@TIME %e %U %S %M", PY, "-c", code, "select", "--source", source,
           "--target", target, "--output", out, "--top-k", str(top_k), "--overwrite",
           f"--scoring-threads={threads}", "--progress-interval=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [l for l in proc.stderr.splitlines() if l.startswith("@@TIME")]
    if proc.returncode != 0 or not line:
        sys.exit(f"select failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall, user, sys_, rss = line[-1].split()[1:]
    main_cpu = [float(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("@@THREADCPU")]
    return float(wall), float(user) + float(sys_), int(rss) / 1024, main_cpu[-1] if main_cpu else float("nan")


def selected(out):
    return b"".join(open(p, "rb").read() for p in sorted(glob.glob(os.path.join(out, "selected-*"))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a JSONL corpus (benchmarks/make_corpus.py)")
    ap.add_argument("--target", required=True, help="JSONL targets")
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--sample", type=int, default=2000, help="documents in the breakdown")
    ap.add_argument("--breakdown-repeat", type=int, default=3)
    ap.add_argument("--engines", default="c,python")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=1000)
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-breakdown", action="store_true")
    ap.add_argument("--skip-runs", action="store_true", help="the breakdown only")
    ap.add_argument("--baseline-docs", type=int, default=0,
                    help="also run engine c, 1 thread, on this many documents: the fixed cost "
                         "(start-up, graph, report) to take out of 'rest'")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)

    with open(a.source, "rb") as f:
        lines = [line.rstrip(b"\n") for line in itertools.islice(f, a.limit)]
    with open(a.target, encoding="utf-8") as f:
        targets = [json.loads(line) for line in f]
    from zipfit_beam.score import docwork, ncd
    n_docs = len(lines) * a.copies
    print(f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()}; "
          f"kernel {ncd.kernel_name()}, extension {'built' if docwork.extension_loaded() else 'NOT built'}")
    print(f"corpus: {n_docs} documents ({len(lines)} x {a.copies} copies) x {len(targets)} targets")
    result = {"date": datetime.date.today().isoformat(), "cores": os.cpu_count(), "docs": n_docs,
              "targets": len(targets), "load_before": os.getloadavg()}
    if not a.skip_breakdown:
        result["breakdown_us"] = breakdown(lines, targets, a.sample, a.breakdown_repeat)

    if a.skip_runs:
        return 0
    work = a.work or tempfile.mkdtemp(prefix="zipfit-scoring-pass-")
    os.makedirs(work, exist_ok=True)
    paths = write_corpus(lines, a.copies, work)
    source = paths[0] if len(paths) == 1 else os.path.join(work, "corpus-*.jsonl")
    engines = [e for e in a.engines.split(",") if e]
    threads = [int(t) for t in a.threads.split(",") if t]
    runs = {}
    print("\nwhole processes (zipfit-beam select, guard on, one after the other):")
    for rep in range(a.repeat):
        for engine in engines:
            for t in threads:
                out = os.path.join(work, f"out-{engine}-{t}")
                wall, cpu, rss, main_cpu = run_select(engine, t, source, a.target, out, a.top_k)
                runs.setdefault((engine, t), []).append((wall, cpu, rss, main_cpu))
                print(f"  engine {engine:<6} threads {t}  wall {wall:7.1f} s  CPU {cpu:7.1f} s  "
                      f"({cpu / n_docs * 1e6:6.0f} us/doc; main thread {main_cpu:6.1f} s)  peak RSS {rss:5.0f} MB  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    fixed = None
    if a.baseline_docs:
        small = os.path.join(work, "baseline.jsonl")
        with open(small, "wb") as f:
            f.writelines(line + b"\n" for line in lines[:a.baseline_docs])
        _, fixed, _, _ = run_select("c", 1, small, a.target, os.path.join(work, "out-baseline"),
                                    min(a.top_k, a.baseline_docs))
        print(f"  baseline: {a.baseline_docs} documents, engine c, 1 thread: CPU {fixed:.1f} s (fixed cost)")
        result["baseline_cpu_s"] = fixed
    outs = [selected(os.path.join(work, f"out-{e}-{t}")) for e, t in runs]
    same = all(o == outs[0] for o in outs) and len(outs[0]) > 0
    print(f"selections identical across runs: {same}")
    # On an idle machine with C cores a run takes at least max(main thread CPU, CPU / C): the
    # bound says what the threads allow when the machine is shared and wall times say little.
    # Only for engine c: there the pool threads hold the GIL for a few us per part; with
    # engine python they hold it for the guard and the token counter, which this ignores.
    cores = os.cpu_count() or 1
    print("\n| engine | scoring threads | wall s (best) | CPU s (best) | CPU us/doc | main thread CPU s | "
          "1 thread / this wall | idle-machine bound: 1-thread CPU / max(main, CPU/cores) |")
    print("|---|---|---|---|---|---|---|---|")
    best = {k: (min(r[0] for r in v), min(r[1] for r in v), min(r[3] for r in v)) for k, v in runs.items()}
    for (engine, t), (wall, cpu, main_cpu) in best.items():
        one = best.get((engine, 1))
        ratio = f"{one[0] / wall:.2f}x" if one else "-"
        bound = f"{one[1] / max(main_cpu, cpu / cores):.2f}x" if one and t > 1 and engine == "c" else "-"
        print(f"| {engine} | {t} | {wall:.1f} | {cpu:.1f} | {cpu / n_docs * 1e6:.0f} | {main_cpu:.1f} | {ratio} | {bound} |")
    if "breakdown_us" in result:
        us = result["breakdown_us"]
        for engine in engines:
            if (engine, 1) not in best:
                continue
            total = best[engine, 1][1] / n_docs * 1e6
            guard = us["guard, C" if engine == "c" else "guard, Python"]
            tok = us["tokens, C" if engine == "c" else "tokens, Python regex"]
            pass_ = us[f"DocumentWork.score_batch, engine {engine}"]  # includes encode and glue
            rest = total - pass_ - us['parse (JSON line -> Document)']
            fixed_us = "" if fixed is None else (
                f"; of the rest, {fixed / n_docs * 1e6:.0f} fixed (start-up, graph, report) and "
                f"{rest - fixed / n_docs * 1e6:.0f} per document (Beam, key tables, selection)")
            print(f"engine {engine}, 1 thread, per document: total {total:.0f} us = kernel "
                  f"{us['kernel (document_score)']:.0f} + guard {guard:.0f} + tokens {tok:.0f} + parse "
                  f"{us['parse (JSON line -> Document)']:.0f} + encode and glue "
                  f"{pass_ - us['kernel (document_score)'] - guard - tok:.0f} + rest {rest:.0f}{fixed_us}")
    result.update(runs={f"{e}-{t}": v for (e, t), v in runs.items()}, identical=same,
                  load_after=os.getloadavg())
    print(f"load average after: {os.getloadavg()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
