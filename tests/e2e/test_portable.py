"""The portable path that Flink and Dataflow use, run here without a cluster.

On Flink (and on Dataflow's Runner v2) the job is a portable pipeline proto; our code runs
in SDK harness processes that talk to the runner over the Fn API (gRPC). Here the runner
side is Beam's embedded job service (``--job_endpoint=embed``), the same FnApiRunner
engine the DirectRunner uses; the SDK side is what Flink deployments run:

- ``--environment_type=LOOPBACK``: the harness runs in the launching process;
- ``--environment_type=EXTERNAL``: the harness is a process started on request by a
  separate worker-pool process (``zipfit-beam worker-pool``, the Flink TaskManager's
  sidecar). The embedded job service asks for one worker per job (it ignores
  ``--sdk_worker_parallelism``; Flink asks for that many per TaskManager).

Both must select exactly what the default local run selects (and the brute-force
oracle): same ids, same scores, same dead letters, same manifest counts.

Every gRPC server these runs open listens on 127.0.0.1 only: the worker pool by its own
``--host``; Beam's runner-side servers (control, data, state, logging, the LOOPBACK
pool), which Beam binds on ``[::]`` with no option to change it, through the
``loopback_grpc`` fixture below, which asserts what was bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from tests.conftest import BAD_LINES, REPO, oracle_scores, oracle_top_k, write_jsonl, write_lines
from tests.e2e.test_select_e2e import outputs
from zipfit_beam.pipeline import run

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@pytest.fixture
def loopback_grpc(monkeypatch):
    """Rewrites the wildcard bind address of every gRPC server started in this process to
    127.0.0.1 and records each bind. Beam's ExternalWorkerHandler also tells workers to
    reach the runner at ``socket.getfqdn()`` on Linux (a name lookup, and an address that
    may not be loopback); it is told ``localhost`` instead, as Beam does on macOS."""
    binds = []
    real_server = grpc.server

    def server(*args, **kwargs):
        srv = real_server(*args, **kwargs)
        real_add = srv.add_insecure_port

        def add_insecure_port(address):
            host, _, port = address.rpartition(":")
            if host in ("[::]", "0.0.0.0", ""):
                address = f"127.0.0.1:{port}"
            binds.append(address)
            return real_add(address)

        srv.add_insecure_port = add_insecure_port
        return srv

    monkeypatch.setattr(grpc, "server", server)
    monkeypatch.setattr(worker_handlers.ExternalWorkerHandler, "host_from_worker",
                        lambda self: "localhost")
    yield binds
    assert binds, "no gRPC server was started: was the portable runner used at all?"
    assert all(b.rpartition(":")[0] in LOOPBACK_HOSTS for b in binds), binds


def listening_addresses(port: int):
    """Local addresses in LISTEN state on ``port``, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:
                    found.append(addr)
    return found


def is_loopback_hex(addr: str) -> bool:
    # /proc/net/tcp: 0100007F is 127.0.0.1 (little-endian). tcp6: ::1, or ::ffff:127.x.x.x
    # (gRPC listens on IPv4 through a dual-stack socket).
    if len(addr) == 8:
        return addr.endswith("7F")
    return addr == "00000000000000000000000001000000" or (
        addr.startswith("0000000000000000FFFF0000") and addr.endswith("7F"))


class WorkerPool:
    """``zipfit-beam worker-pool --host 127.0.0.1 --port 0`` as a subprocess in its own
    process group (so its SDK worker processes can be checked for and stopped too)."""

    def __init__(self, log_path):
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zipfit_beam.cli", "worker-pool", "--host", "127.0.0.1",
             "--port", "0"], cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.address = self._wait_for_address()
        self.port = int(self.address.rpartition(":")[2])

    def _wait_for_address(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if line.startswith("zipfit-beam worker pool listening on "):
                    return line.rsplit(" ", 1)[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"worker pool did not start:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def started_worker_ids(self):
        return sorted({line.split('worker_id="')[1].split('"')[0]
                       for line in self.log().splitlines() if "Starting worker with command" in line})

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, timeout=20) -> bool:
        """SIGTERM the pool (it stops its workers); True if the whole group ended by itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + timeout
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        clean = not self.group_alive()
        if not clean:  # last resort, our own process group only
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        return clean


@pytest.fixture
def worker_pool(tmp_path):
    pool = WorkerPool(tmp_path / "worker-pool.log")
    yield pool
    assert pool.stop(), "the worker pool or one of its workers outlived SIGTERM"


@pytest.fixture
def corpus(tmp_path, sources, targets):
    """Sources over a plain and a gzip shard, every kind of bad line planted in the second."""
    half = len(sources) // 2
    a = write_jsonl(tmp_path / "src-0.jsonl", sources[:half])
    b = write_lines(tmp_path / "src-1.jsonl.gz",
                    [json.dumps(s).encode() for s in sources[half:]] + [line for line, _ in BAD_LINES])
    t = write_jsonl(tmp_path / "targets.jsonl", targets)
    return [a, b], t


K = 12


def select(tmp_path, corpus, name, *runner_flags):
    files, target = corpus
    out = str(tmp_path / name)
    run([a for f in files for a in ("--source", f)] + [
        "--target", target, "--output", out, "--top-k", str(K), "--num-shards=2", *runner_flags])
    return outputs(out)


def assert_same_selection(got, want, sources, targets):
    (selected, rejected, manifest), (w_selected, w_rejected, w_manifest) = got, want
    by_id = {r["id"]: r["zipfit_score"] for r in selected}
    assert by_id == {r["id"]: r["zipfit_score"] for r in w_selected}  # ids and exact scores
    assert sorted(by_id) == sorted(oracle_top_k(oracle_scores(sources, targets), K))
    key = lambda r: (r["source"], r["position"])  # noqa: E731
    assert sorted(rejected, key=key) == sorted(w_rejected, key=key)
    assert manifest["counts"] == w_manifest["counts"] == {
        "read": len(sources) + len(BAD_LINES), "scored": len(sources),
        "rejected": len(BAD_LINES), "selected": K}
    assert manifest["threshold"] == w_manifest["threshold"]


def test_loopback_harness_selects_what_the_local_run_selects(
        tmp_path, corpus, sources, targets, loopback_grpc):
    local = select(tmp_path, corpus, "local")
    portable = select(tmp_path, corpus, "loopback", "--runner=PortableRunner",
                      "--job_endpoint=embed", "--environment_type=LOOPBACK")
    assert_same_selection(portable, local, sources, targets)
    assert loopback_grpc  # the fixture checks each bind was loopback


def test_external_worker_pool_selects_what_the_local_run_selects(
        tmp_path, corpus, sources, targets, loopback_grpc, worker_pool):
    local = select(tmp_path, corpus, "local")
    portable = select(tmp_path, corpus, "external", "--runner=PortableRunner",
                      "--job_endpoint=embed", "--environment_type=EXTERNAL",
                      f"--environment_config={worker_pool.address}")
    assert_same_selection(portable, local, sources, targets)
    # The work really went through the pool: it started the job's SDK worker process.
    assert len(worker_pool.started_worker_ids()) == 1, worker_pool.log()
    listening = listening_addresses(worker_pool.port)
    assert listening and all(is_loopback_hex(a) for a in listening), listening


def test_worker_pool_stops_its_workers_on_sigterm(worker_pool):
    """A worker still running when the pool is told to stop (here: one waiting for a
    runner that is not there) is stopped with it, not orphaned."""
    stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(
        grpc.insecure_channel(worker_pool.address))
    nowhere = endpoints_pb2.ApiServiceDescriptor(url="127.0.0.1:9")  # discard port: refused
    response = stub.StartWorker(beam_fn_api_pb2.StartWorkerRequest(
        worker_id="orphan-check", control_endpoint=nowhere, logging_endpoint=nowhere,
        artifact_endpoint=nowhere, provision_endpoint=nowhere), timeout=30)
    assert not response.error
    deadline = time.monotonic() + 30
    children = []
    while not children and time.monotonic() < deadline:
        children = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                    if pid != worker_pool.proc.pid and _pgid(pid) == worker_pool.proc.pid]
        time.sleep(0.1)
    assert children, "the pool started no worker process"
    assert worker_pool.stop(), "a worker process outlived the pool's SIGTERM"


def _pgid(pid: int):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_stock_worker_pool_binds_every_interface():
    """Why ``zipfit-beam worker-pool`` exists: Beam's entry point listens on ``[::]``.
    Checked in its source, so that this test notices if a Beam upgrade changes it."""
    import inspect

    from apache_beam.runners.worker import worker_pool_main
    source = inspect.getsource(worker_pool_main.BeamFnExternalWorkerPoolServicer.start)
    assert "'[::]:%s' % port" in source
