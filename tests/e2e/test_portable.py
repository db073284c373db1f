"""The portable path that Flink and Dataflow use, run here without a cluster.

On Flink (and on Dataflow's Runner v2) the job is a portable pipeline proto; our code runs
in SDK harness processes that talk to the runner over the Fn API (gRPC). Here the runner
side is Beam's job service, embedded (``--job_endpoint=embed``) or as a separate process
(``local_job_service_main``, standing in for Flink's job server), running the FnApiRunner,
the DirectRunner's batch engine. The SDK side is what a Flink deployment runs:

- ``--environment_type=LOOPBACK``: the harness runs in the launching process;
- ``--environment_type=EXTERNAL``: the harness is a process started on request by a
  separate worker-pool process (``zipfit-beam worker-pool``, the Flink TaskManager's
  sidecar). Beam's job service asks for one worker per job (it ignores
  ``--sdk_worker_parallelism``; Flink asks for that many per TaskManager).
- ``deploy/flink/submit.sh`` itself, run for real against the separate job service and
  the worker pool.

Each must select exactly what the default local run selects (and the brute-force
oracle): same ids, same scores, same dead letters, same manifest counts.

Every gRPC server these runs open listens on 127.0.0.1 only: the worker pool by its own
``--host``; Beam's runner-side servers, which Beam binds on ``[::]`` with no option to
change it, through ``portable_harness.install_loopback_grpc``; each test checks the
addresses actually bound. Servers are subprocesses stopped by process id (group).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import grpc
import pytest
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2

from tests.conftest import BAD_LINES, REPO, oracle_scores, oracle_top_k, write_jsonl, write_lines
from tests.e2e.portable_harness import (JobService, WorkerPool, all_loopback,
                                        install_loopback_grpc, is_loopback_hex,
                                        listening_addresses)
from tests.e2e.test_select_e2e import outputs
from zipfit_beam.jobs.select import run


@pytest.fixture
def loopback_grpc(monkeypatch):
    """Every gRPC server started in this process listens on 127.0.0.1 (see
    portable_harness.install_loopback_grpc); yields the addresses bound."""
    binds = install_loopback_grpc(monkeypatch.setattr)
    yield binds
    assert binds, "no gRPC server was started: was the portable runner used at all?"
    assert all_loopback(binds), binds


@pytest.fixture
def worker_pool(tmp_path):
    pool = WorkerPool(tmp_path / "worker-pool.log")
    yield pool
    assert pool.stop(), "the worker pool or one of its workers outlived SIGTERM"


K = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sources, targets):
    """Sources over a plain and a gzip shard, every kind of bad line planted in the second."""
    d = tmp_path_factory.mktemp("corpus")
    half = len(sources) // 2
    a = write_jsonl(d / "src-0.jsonl", sources[:half])
    b = write_lines(d / "src-1.jsonl.gz",
                    [json.dumps(s).encode() for s in sources[half:]] + [line for line, _ in BAD_LINES])
    t = write_jsonl(d / "targets.jsonl", targets)
    return [a, b], t


def select_argv(corpus, out):
    files, target = corpus
    return [a for f in files for a in ("--source", f)] + [
        "--target", target, "--output", str(out), "--top-k", str(K), "--num-shards=2"]


def select(tmp_path, corpus, name, *runner_flags):
    run(select_argv(corpus, tmp_path / name) + list(runner_flags))
    return outputs(str(tmp_path / name))


@pytest.fixture(scope="module")
def local(tmp_path_factory, corpus):
    """The default local run (FnApiRunner in memory, the DirectRunner's batch engine)."""
    return select(tmp_path_factory.mktemp("local"), corpus, "out")


def assert_same_selection(got, want, sources, targets):
    (selected, rejected, manifest), (w_selected, w_rejected, w_manifest) = got, want
    by_id = {r["id"]: r["zipfit_score"] for r in selected}
    assert by_id == {r["id"]: r["zipfit_score"] for r in w_selected}  # ids and exact scores
    assert sorted(by_id) == sorted(oracle_top_k(oracle_scores(sources, targets), K))
    key = lambda r: (r["source"], r["position"])  # noqa: E731
    assert sorted(rejected, key=key) == sorted(w_rejected, key=key)
    assert manifest["counts"] == w_manifest["counts"]
    assert {k: manifest["counts"][k] for k in ("read", "scored", "rejected", "selected")} == {
        "read": len(sources) + len(BAD_LINES), "scored": len(sources),
        "rejected": len(BAD_LINES), "selected": K}
    assert manifest["threshold"] == w_manifest["threshold"]


def test_loopback_harness_selects_what_the_local_run_selects(
        tmp_path, corpus, local, sources, targets, loopback_grpc):
    portable = select(tmp_path, corpus, "loopback", "--runner=PortableRunner",
                      "--job_endpoint=embed", "--environment_type=LOOPBACK")
    assert_same_selection(portable, local, sources, targets)
    assert loopback_grpc  # the fixture checks each bind was loopback


def test_external_worker_pool_selects_what_the_local_run_selects(
        tmp_path, corpus, local, sources, targets, loopback_grpc, worker_pool):
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
    assert not response.error, response.error
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


def test_flink_submit_script_runs_the_job_through_a_job_service_and_worker_pool(
        tmp_path, corpus, local, sources, targets, worker_pool):
    """deploy/flink/submit.sh, run for real, with Beam's local job service standing in for
    the Flink job server: the same PortableRunner submission and EXTERNAL worker pool a
    Flink cluster gets, minus Flink."""
    job_service = JobService(tmp_path / "job-service.log", tmp_path / "job-service.port")
    try:
        out = tmp_path / "flink"
        env = dict(os.environ, JOB_ENDPOINT=job_service.endpoint,
                   ARTIFACT_ENDPOINT=job_service.endpoint, WORKER_POOL=worker_pool.address,
                   ZIPFIT_BEAM=f"{sys.executable} -m zipfit_beam.cli",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("DRY_RUN", None)
        done = subprocess.run(["bash", os.path.join(REPO, "deploy/flink/submit.sh"),
                               *select_argv(corpus, out)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        assert job_service.stop(), "the job service outlived SIGTERM"
    assert_same_selection(outputs(str(out)), local, sources, targets)
    assert len(worker_pool.started_worker_ids()) == 1, worker_pool.log()
    binds = [line for line in job_service.log().splitlines() if line.startswith("gRPC binds: ")]
    assert binds and all_loopback(ast.literal_eval(binds[0][len("gRPC binds: "):])), binds


def _can_unshare_network() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_network(), reason="needs unshare -n (root) and ip")
def test_stock_beam_worker_pool_in_a_private_network_namespace(tmp_path, corpus, local, sources, targets):
    """Beam's own ``python -m apache_beam.runners.worker.worker_pool_main`` binds every
    interface; inside a fresh network namespace the only interface is loopback, so it is
    reachable from nothing but this test. The EXTERNAL run against it selects the same."""
    out = tmp_path / "stock"
    select_cmd = " ".join(shlex.quote(a) for a in [
        sys.executable, "-m", "zipfit_beam.cli", "select", *select_argv(corpus, out),
        "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000"])
    script = f"""
        set -eu
        ip link set lo up
        {shlex.quote(sys.executable)} -m apache_beam.runners.worker.worker_pool_main \
            --service_port=50000 > {shlex.quote(str(tmp_path / 'pool.log'))} 2>&1 &
        pool=$!
        # SIGTERM: a background job of a script ignores SIGINT, and Beam's pool handles
        # nothing else; the runner has already stopped the pool's worker by then.
        trap 'kill $pool; wait $pool || true' EXIT
        for i in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/50000) 2>/dev/null && break; sleep 0.1; done
        {select_cmd}
    """
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen(["unshare", "-n", "bash", "-c", script], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        try:  # anything of ours still running (nothing, normally): stop it, by group id
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, output[-5000:]
    assert "Starting worker with command" in (tmp_path / "pool.log").read_text()
    assert_same_selection(outputs(str(out)), local, sources, targets)
