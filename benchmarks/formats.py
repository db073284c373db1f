"""The same corpus in every input format, selected in one run: wall and CPU time relative
to JSONL (best of ``--rounds``, formats interleaved so that load from other processes
hits them alike), and a check that every format selects the same ids.

Each document gets an extra 8 KB ``payload`` column that scoring never needs: Parquet
reads only ``id`` and ``text`` and reads the payload back for the selected rows only;
JSONL and Avro decode it for every record.

    python benchmarks/make_corpus.py --docs 3000 --out /tmp/c.jsonl --targets /tmp/he.jsonl
    python benchmarks/formats.py --corpus /tmp/c.jsonl --targets /tmp/he.jsonl --top-k 300
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastavro  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import zstandard  # noqa: E402

from zipfit_beam.jobs.select import run  # noqa: E402


def selected_ids(out: str):
    ids = []
    for path in sorted(glob.glob(os.path.join(out, "selected-*"))):
        if path.endswith(".parquet"):
            ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
        elif path.endswith(".avro"):
            ids += [r["id"] for r in fastavro.reader(open(path, "rb"))]
        else:
            ids += [json.loads(line)["id"] for line in open(path, encoding="utf-8")]
    return sorted(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--top-k", type=int, default=300)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    docs = [json.loads(line) for line in open(args.corpus, encoding="utf-8")]
    for i, d in enumerate(docs):
        d["payload"] = (f"{i:08d}" * 1024)[:8192]
    work = tempfile.mkdtemp(prefix="zipfit-formats-")
    per = -(-len(docs) // args.shards)
    parts = [docs[i:i + per] for i in range(0, len(docs), per)]
    schema = {"type": "record", "name": "Doc", "fields": [{"name": k, "type": "string"} for k in docs[0]]}
    inputs = {"jsonl": [], "jsonl.zst": [], "parquet": [], "avro": []}
    for n, part in enumerate(parts):
        data = b"".join(json.dumps(d).encode() + b"\n" for d in part)
        for ext, blob in (("jsonl", data), ("jsonl.zst", zstandard.ZstdCompressor().compress(data))):
            path = os.path.join(work, f"s-{n}.{ext}")
            open(path, "wb").write(blob)
            inputs[ext].append(path)
        path = os.path.join(work, f"s-{n}.parquet")
        pq.write_table(pa.Table.from_pylist(part), path, row_group_size=256)
        inputs["parquet"].append(path)
        path = os.path.join(work, f"s-{n}.avro")
        with open(path, "wb") as f:
            fastavro.writer(f, schema, part, codec="deflate")
        inputs["avro"].append(path)
    results = {}
    for round_ in range(args.rounds):
        for fmt, files in inputs.items():
            out = os.path.join(work, f"out-{fmt.replace('.', '-')}-{round_}")
            wall, cpu = time.monotonic(), time.process_time()
            run([a for f in files for a in ("--source", f)] + [
                "--target", args.targets, "--output", out, "--top-k", str(args.top_k), "--num-shards", "2"])
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            best = results.get(fmt, (float("inf"), float("inf"), None))
            results[fmt] = (min(best[0], wall), min(best[1], cpu), selected_ids(out))
    base_wall, base_cpu, base_ids = results["jsonl"]
    print(f"{len(docs)} documents x {sum(1 for _ in open(args.targets))} targets, top {args.top_k}, "
          f"best of {args.rounds}")
    for fmt, (wall, cpu, ids) in results.items():
        print(f"{fmt:10s} wall {wall:6.1f} s (x{wall / base_wall:.2f})  cpu {cpu:6.1f} s "
              f"(x{cpu / base_cpu:.2f})  same ids as JSONL: {ids == base_ids}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
