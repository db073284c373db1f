"""Does Flink's --parallelism 2 make a select faster than --parallelism 1? Whole processes,
on a real cluster: ``deploy/flink/local-cluster.sh up`` (JobManager, a TaskManager with 2
slots, Beam's Flink job server, our worker pool; own ports and state directory), then the
same ``zipfit-beam select`` at parallelism 1 and 2, then ``down``.

The corpus is real text made by ``make_corpus.py`` (Python stdlib functions, man pages, C
headers, Perl) cut into ``--shards`` files, with HumanEval targets: Flink spreads files,
not documents (the file list is reshuffled; one file is read and scored by one subtask),
so a corpus in one file would not scale at any parallelism. Each SDK worker scores with one
thread (``--scoring-threads`` defaults to 1 off the local runner); ``--sdk_worker_parallelism``
follows ``--parallelism``, so parallelism 2 means two worker processes, one per slot.

Reported per run: the wall time of the ``zipfit-beam select`` process; the Flink job's own
duration (from submission to the end, REST /jobs/<id>); the busiest stage, the one that
reads and scores the files (the vertex whose subtasks received the shards), with the files
each subtask got; the CPU seconds each SDK worker process of the job used (from /proc: on a
machine others are using, the split of the work shows scaling where wall time cannot); and
the load average after the run. The ratios are parallelism 1 over parallelism 2.

    python benchmarks/flink_scaling.py [--docs 20000] [--shards 8] [--targets 82] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "deploy", "flink", "local-cluster.sh")
ZIPFIT = os.path.join(os.path.dirname(sys.executable), "zipfit-beam")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def make_corpus(work, docs, shards, targets):
    corpus, target_file = os.path.join(work, "corpus.jsonl"), os.path.join(work, "targets.jsonl")
    subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "make_corpus.py"),
                    "--docs", str(docs), "--out", corpus, "--targets", target_file,
                    "--max-targets", str(targets)], check=True)
    lines = open(corpus, encoding="utf-8").read().splitlines()
    files = []
    for i in range(shards):
        path = os.path.join(work, f"part-{i:03d}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines[i::shards]) + "\n")
        files.append(path)
    return files, target_file, sum(os.path.getsize(f) for f in files)


def get(rest, path):
    with urllib.request.urlopen(rest + path, timeout=30) as r:
        return json.load(r)


def worker_cpu_seconds(state):
    """CPU seconds (user + system) of each SDK worker process the pool has running (they
    outlive the job by --environment_cache_millis), keyed by PID."""
    pool = int(open(os.path.join(state, "workerpool.pid")).read().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pool:  # ppid
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def flink_select(rest, state, flags, files, target, out, parallelism, top_k):
    flags = [f for f in flags if not f.startswith(("--parallelism=", "--sdk_worker_parallelism="))]
    flags += [f"--parallelism={parallelism}", f"--sdk_worker_parallelism={parallelism}"]
    before = {j["jid"] for j in get(rest, "/jobs/overview")["jobs"]}
    argv = [ZIPFIT, "select", *[a for f in files for a in ("--source", f)], "--target", target,
            "--output", out, "--top-k", str(top_k), "--no-report", *flags]
    cpu_before = worker_cpu_seconds(state)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - started
    # Workers started for this job (their PIDs are new), and what each one spent.
    cpu = sorted((c for pid, c in worker_cpu_seconds(state).items() if pid not in cpu_before),
                 reverse=True)
    if done.returncode != 0:
        sys.exit(done.stdout[-3000:] + done.stderr[-5000:])
    (job,) = [j for j in get(rest, "/jobs/overview")["jobs"] if j["jid"] not in before]
    detail = get(rest, f"/jobs/{job['jid']}")
    scoring = None
    for v in detail["vertices"]:
        subtasks = get(rest, f"/jobs/{job['jid']}/vertices/{v['id']}")["subtasks"]
        files_read = [s["metrics"]["read-records"] for s in subtasks]
        if sum(files_read) == len(files) and (scoring is None or v["duration"] > scoring[0]):
            scoring = (v["duration"], files_read)
    return dict(wall=wall, job=job["duration"] / 1000, stage=scoring[0] / 1000,
                files_per_subtask=scoring[1], worker_cpu=cpu,
                load=open("/proc/loadavg").read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--targets", type=int, default=82)
    ap.add_argument("--top-k", type=int, default=1000)
    ap.add_argument("--out", help="also write the report here")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="flink-scaling-") as work:
        files, target, size = make_corpus(work, a.docs, a.shards, a.targets)
        rest_port, rpc, job, artifact, pool = free_ports(5)
        env = dict(os.environ, ZIPFIT_FLINK_STATE=os.path.join(work, "cluster"),
                   FLINK_REST_PORT=str(rest_port), FLINK_RPC_PORT=str(rpc),
                   BEAM_JOB_PORT=str(job), BEAM_ARTIFACT_PORT=str(artifact),
                   WORKER_POOL_PORT=str(pool), ZIPFIT_BEAM=ZIPFIT,
                   ZIPFIT_FLINK_PYTHON=sys.executable)
        started = time.monotonic()
        up = subprocess.run(["bash", SCRIPT, "up"], env=env, capture_output=True, text=True)
        up_s = time.monotonic() - started
        if up.returncode != 0:
            sys.exit(up.stderr)
        flags = up.stdout.strip().splitlines()[-1].split()
        rest = f"http://127.0.0.1:{rest_port}"
        try:
            runs = {p: flink_select(rest, env["ZIPFIT_FLINK_STATE"], flags, files, target,
                                    os.path.join(work, f"out-p{p}"), p, a.top_k) for p in (1, 2)}
        finally:
            subprocess.run(["bash", SCRIPT, "down"], env=env, capture_output=True, text=True)

    lines = [f"zipfit-beam select on Flink 1.19.3 (local-cluster.sh: 1 TaskManager, 2 slots), "
             f"{a.docs:,} real documents ({size / 1e6:.1f} MB) in {a.shards} files x {a.targets} "
             f"HumanEval targets, top-k {a.top_k}, {os.cpu_count()} cores; cluster up in {up_s:.0f} s",
             f"{'parallelism':>11} {'select wall s':>14} {'Flink job s':>12} {'read+score stage s':>19}"
             f"  files per subtask  CPU s per SDK worker  load after"]
    for p, r in runs.items():
        lines.append(f"{p:>11} {r['wall']:>14.1f} {r['job']:>12.1f} {r['stage']:>19.1f}"
                     f"  {str(r['files_per_subtask']):<17}  "
                     f"{str([round(c, 1) for c in r['worker_cpu']]):<20}  {r['load']}")
    one, two = runs[1], runs[2]
    lines.append(f"ratio p1/p2: wall {one['wall'] / two['wall']:.2f}, job {one['job'] / two['job']:.2f}, "
                 f"read+score stage {one['stage'] / two['stage']:.2f}")
    report = "\n".join(lines)
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
