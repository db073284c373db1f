"""zipfit-beam on a real Flink cluster: ``deploy/flink/local-cluster.sh up`` (a Flink
JobManager and a TaskManager with 2 slots, Beam's Flink job server, our SDK worker pool;
all bound to 127.0.0.1), one ``zipfit-beam select`` submitted to it with the flags ``up``
prints, and ``down``.

The Flink run must select what the brute-force oracle selects, and exactly what the default
local run selects: ids, scores, dead letters, manifest counts and committed metrics. With
``--parallelism=2`` both task slots must do part of the work (Flink's REST API: slots in
use during the run, and records per subtask). Every listening socket of the cluster's
processes must be on loopback, and ``down`` must leave none of them running.

The first run on a machine installs Flink (PyPI) and the job-server jars (Maven Central)
into the cache (``ZIPFIT_FLINK_CACHE``, default ~/.cache/zipfit-beam/flink): about 330 MB,
once. The cluster's state (config, PID files, logs) lives in a temporary directory, on
ports chosen free, so that it never meets a cluster someone started by hand.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from importlib.metadata import entry_points

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from tests.conftest import BAD_LINES, REPO, oracle_scores, oracle_top_k, write_jsonl, write_lines
from tests.e2e.portable_harness import is_loopback_hex
from tests.e2e.test_select_e2e import outputs

SCRIPT = os.path.join(REPO, "deploy", "flink", "local-cluster.sh")
SERVICES = ("jobmanager", "taskmanager", "jobserver", "workerpool")
K = 12
N_FILES = 16  # files are what --parallelism spreads (one file is read by one subtask)
SLOTS = 2


def zipfit_main():
    """The ``zipfit-beam`` command, run in this process (so that its PipelineResult and
    metrics can be read); found through its console-script entry point."""
    (ep,) = entry_points(group="console_scripts", name="zipfit-beam")
    return ep.load()


def free_ports(n):
    """n ports free on 127.0.0.1, below the kernel's ephemeral range: a port the kernel handed
    out and we closed could be handed to one of the cluster's own sockets (Flink's blob server,
    data port, RPC clients) in the seconds before the server meant for it binds it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral = int(f.read().split()[0])
    rnd, ports = random.Random(), []
    while len(ports) < n:
        port = rnd.randrange(10_000, max(ephemeral, 11_000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not running
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def listening_sockets(pids):
    """(pid, local address hex, port) of every socket in LISTEN state that one of ``pids``
    holds open (matched by socket inode through /proc/PID/fd)."""
    by_inode = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    addr, port = fields[1].split(":")
                    by_inode[fields[9]] = (addr, int(port, 16))
    found = []
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in by_inode:
                found.append((pid, *by_inode[link[8:-1]]))
    return found


class Cluster:
    def __init__(self, state_dir, env):
        self.state, self.env = str(state_dir), env
        self.rest = f"http://127.0.0.1:{env['FLINK_REST_PORT']}"

    def script(self, *args, timeout=900):
        return subprocess.run(["bash", SCRIPT, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def pids(self):
        out = {}
        for name in SERVICES:
            path = os.path.join(self.state, f"{name}.pid")
            if os.path.exists(path):
                out[name] = int(open(path).read().split()[0])
        return out

    def get(self, path):
        with urllib.request.urlopen(self.rest + path, timeout=10) as r:
            return json.load(r)

    def log(self, name):
        with open(os.path.join(self.state, "log", f"{name}.out"), errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    rest, rpc, job, artifact, pool = free_ports(5)
    env = dict(os.environ, ZIPFIT_FLINK_STATE=str(tmp_path_factory.mktemp("flink-state")),
               FLINK_REST_PORT=str(rest), FLINK_RPC_PORT=str(rpc), BEAM_JOB_PORT=str(job),
               BEAM_ARTIFACT_PORT=str(artifact), WORKER_POOL_PORT=str(pool),
               FLINK_SLOTS=str(SLOTS), ZIPFIT_FLINK_PYTHON=sys.executable,
               ZIPFIT_BEAM=os.path.join(os.path.dirname(sys.executable), "zipfit-beam"),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    c = Cluster(env["ZIPFIT_FLINK_STATE"], env)
    started = time.monotonic()
    up = c.script("up")
    c.up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        c.flags = up.stdout.strip().splitlines()[-1].split()
        c.pids_at_start = c.pids()
        yield c
    finally:
        pids = c.pids()
        down = c.script("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert pids and not [name for name, pid in pids.items() if alive(pid)], pids
        assert not any(os.path.exists(os.path.join(c.state, f"{n}.pid")) for n in SERVICES)
        for port in (rest, rpc, job, artifact, pool):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sources, targets):
    """The 40 real documents over 16 files (the last one gzip'd, with every kind of bad line
    planted), and the targets."""
    d = tmp_path_factory.mktemp("flink-corpus")
    files = []
    for i in range(N_FILES):
        part = sources[i::N_FILES]
        if i == N_FILES - 1:
            files.append(write_lines(d / f"src-{i:02d}.jsonl.gz",
                                     [json.dumps(s).encode() for s in part]
                                     + [line for line, _ in BAD_LINES]))
        else:
            files.append(write_jsonl(d / f"src-{i:02d}.jsonl", part))
    return files, write_jsonl(d / "targets.jsonl", targets)


def select(corpus, out, *runner_flags):
    """``zipfit-beam select`` in this process; returns (PipelineResult, outputs)."""
    files, target = corpus
    argv = ["select", *[a for f in files for a in ("--source", f)], "--target", target,
            "--output", str(out), "--top-k", str(K), "--num-shards=2", *runner_flags]
    results = []
    real_run = beam.Pipeline.run

    def run_and_keep(pipeline, *args, **kwargs):
        results.append(real_run(pipeline, *args, **kwargs))
        return results[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(beam.Pipeline, "run", run_and_keep)
        assert zipfit_main()(argv) in (0, None)
    (result,) = results
    return result, outputs(str(out))


def committed_counters(result):
    return {r.key.metric.name: r.committed
            for r in result.metrics().query(MetricsFilter().with_namespace("zipfit"))["counters"]}


@pytest.fixture(scope="module")
def local(tmp_path_factory, corpus):
    """The default local run (FnApiRunner in memory)."""
    return select(corpus, tmp_path_factory.mktemp("local") / "out")


class JobWatch(threading.Thread):
    """Polls while a job runs: Flink's /overview (the fewest free slots seen) and the
    listening sockets of the cluster's processes (the TaskManager opens Beam's Fn API
    servers for the job's SDK workers only then)."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.min_free, self.stop = cluster, None, threading.Event()
        self.pids, self.sockets = list(cluster.pids().values()), set()

    def run(self):
        while not self.stop.is_set():
            try:
                free = self.cluster.get("/overview")["slots-available"]
                self.min_free = free if self.min_free is None else min(self.min_free, free)
            except OSError:
                pass
            try:
                self.sockets |= set(listening_sockets(self.pids))
            except OSError:  # a file descriptor closed while being read
                pass
            self.stop.wait(0.5)


@pytest.fixture(scope="module")
def flink_run(cluster, corpus, tmp_path_factory):
    jobs_before = {j["jid"] for j in cluster.get("/jobs/overview")["jobs"]}
    workers_before = cluster.log("workerpool").count("Starting worker with command")
    idle_sockets = set(listening_sockets(cluster.pids().values()))
    watch = JobWatch(cluster)
    watch.start()
    started = time.monotonic()
    try:
        result, out = select(corpus, tmp_path_factory.mktemp("flink") / "out", *cluster.flags)
    finally:
        watch.stop.set()
        watch.join()
    seconds = time.monotonic() - started
    (job,) = [j for j in cluster.get("/jobs/overview")["jobs"] if j["jid"] not in jobs_before]
    workers = cluster.log("workerpool").count("Starting worker with command") - workers_before
    return dict(result=result, out=out, job=job, min_free_slots=watch.min_free,
                workers=workers, seconds=seconds, job_sockets=watch.sockets - idle_sockets)


def test_up_prints_the_flags_and_binds_loopback_only(cluster):
    assert cluster.flags[0] == "--runner=PortableRunner"
    opts = dict(f[2:].split("=", 1) for f in cluster.flags)
    assert opts["job_endpoint"] == f"127.0.0.1:{cluster.env['BEAM_JOB_PORT']}"
    assert opts["environment_type"] == "EXTERNAL"
    assert opts["environment_config"] == f"127.0.0.1:{cluster.env['WORKER_POOL_PORT']}"
    assert opts["parallelism"] == opts["sdk_worker_parallelism"] == str(SLOTS)
    overview = cluster.get("/overview")
    assert (overview["taskmanagers"], overview["slots-total"]) == (1, SLOTS), overview
    assert overview["flink-version"] == "1.19.3"
    pids = cluster.pids()
    assert sorted(pids) == sorted(SERVICES) and all(alive(p) for p in pids.values())
    sockets = listening_sockets(pids.values())
    ports = {port for _, _, port in sockets}
    for name in ("FLINK_REST_PORT", "FLINK_RPC_PORT", "BEAM_JOB_PORT", "BEAM_ARTIFACT_PORT",
                 "WORKER_POOL_PORT"):
        assert int(cluster.env[name]) in ports, (name, sockets)
    # Beam's job server binds its job and artifact ports on every interface unless
    # loopback_bind.so turns the wildcard into 127.0.0.1: this is where that shows.
    assert all(is_loopback_hex(addr) for _, addr, _ in sockets), sockets


def test_up_again_starts_nothing_and_prints_the_same_flags(cluster):
    again = cluster.script("up", timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1].split() == cluster.flags
    assert "already up" in again.stderr
    assert cluster.pids() == cluster.pids_at_start


def test_flink_selects_what_the_local_run_and_the_oracle_select(
        flink_run, local, sources, targets):
    _, (selected, rejected, manifest) = flink_run["result"], flink_run["out"]
    _, (w_selected, w_rejected, w_manifest) = local
    by_id = {r["id"]: r["zipfit_score"] for r in selected}
    assert by_id == {r["id"]: r["zipfit_score"] for r in w_selected}  # ids and exact scores
    assert sorted(by_id) == sorted(oracle_top_k(oracle_scores(sources, targets), K))
    key = lambda r: (r["source"], r["position"])  # noqa: E731
    assert sorted(rejected, key=key) == sorted(w_rejected, key=key)
    assert sorted(r["reason"] for r in rejected) == sorted(reason for _, reason in BAD_LINES)
    assert manifest["counts"] == w_manifest["counts"]
    assert manifest["rejected_by_reason"] == w_manifest["rejected_by_reason"]
    assert {k: manifest["counts"][k] for k in ("read", "scored", "rejected", "selected")} == {
        "read": len(sources) + len(BAD_LINES), "scored": len(sources),
        "rejected": len(BAD_LINES), "selected": K}
    assert manifest["threshold"] == w_manifest["threshold"]


def test_flink_commits_the_metrics_the_local_run_commits(flink_run, local):
    got, want = committed_counters(flink_run["result"]), committed_counters(local[0])
    assert want["read"] == local[1][2]["counts"]["read"]  # the local run's are the manifest's
    assert got == want


def test_parallelism_two_uses_both_slots(cluster, flink_run):
    job = cluster.get(f"/jobs/{flink_run['job']['jid']}")
    assert job["state"] == "FINISHED"
    assert {v["parallelism"] for v in job["vertices"]} == {SLOTS}
    # Both slots were taken at once during the run ...
    assert flink_run["min_free_slots"] == 0, flink_run["min_free_slots"]
    # ... and both did part of the work: the stage that reads the files (after SpreadFiles,
    # a Reshuffle of the file list) got some of the 16 files in each subtask.
    reads = {}
    for v in job["vertices"]:
        subtasks = cluster.get(f"/jobs/{job['jid']}/vertices/{v['id']}")["subtasks"]
        reads[v["name"]] = [s["metrics"]["read-records"] for s in subtasks]
    readers = [n for n in reads.values() if sum(n) == N_FILES]
    assert readers and all(min(n) > 0 for n in readers), reads
    # One SDK worker per slot (--sdk_worker_parallelism=2), kept for the whole job.
    assert flink_run["workers"] == SLOTS, cluster.log("workerpool")[-3000:]


def test_servers_opened_for_the_job_listen_on_loopback_only(cluster, flink_run):
    """The Fn API servers (control, data, state, logging, ...) that Beam's runner opens in
    the TaskManager for the SDK workers bind the wildcard address in Beam; here they must
    be on loopback (loopback_bind.so)."""
    tm = cluster.pids()["taskmanager"]
    opened = {(addr, port) for pid, addr, port in flink_run["job_sockets"] if pid == tm}
    assert opened, "no server seen in the TaskManager during the job"
    assert all(is_loopback_hex(addr) for addr, _ in opened), opened
