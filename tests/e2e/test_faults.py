"""A worker killed in the middle of a bundle, on the portable runner with an EXTERNAL
worker pool (what a Flink TaskManager's sidecar runs): the SDK worker process SIGKILLs
itself at its 5th record in the parse step (``fault_hook/sitecustomize.py``, installed
only in the pool's processes, once, marked by a file).

What Beam 2.77 does, found here: the runner (the FnApiRunner behind the embedded job
service) does not retry the bundle; the job fails (``RuntimeError: Channel closed
prematurely``, state FAILED) within seconds. Nothing is published: no manifest, no
shard, and the launcher removes the run's staging directory. A rerun against the same
pool (which starts a fresh worker) publishes exactly what the local runner publishes.

On the local runner and with LOOPBACK the SDK harness is the launching process itself,
so killing it kills the run: ``test_restarts.py`` covers that case (the next run cleans
up the staging directory the killed one left)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, write_jsonl
from tests.e2e.portable_harness import WorkerPool
from tests.e2e.test_select_e2e import outputs
from zipfit_beam.jobs.example import EXAMPLE_SOURCE
from zipfit_beam.jobs.select import run

HOOK = os.path.join(REPO, "tests", "e2e", "fault_hook")
# The select job in a child process, its gRPC servers on 127.0.0.1 (portable_harness), so
# that a runner that hung instead of failing would fail this test by its timeout.
SELECT = ("import sys\n"
          "from tests.e2e.portable_harness import install_loopback_grpc\n"
          "install_loopback_grpc()\n"
          "from zipfit_beam.jobs.select import run\n"
          "run(sys.argv[1:])\n")


@pytest.fixture
def killing_pool(tmp_path, monkeypatch):
    """A worker pool whose first worker SIGKILLs itself once, mid-bundle; yields (pool,
    marker file)."""
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("ZIPFIT_KILL_ONCE", str(marker))
    monkeypatch.setenv("PYTHONPATH", HOOK + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pool = WorkerPool(tmp_path / "worker-pool.log")
    monkeypatch.delenv("ZIPFIT_KILL_ONCE")  # the pool has its copy; the launcher must not
    yield pool, marker
    assert pool.stop(), "the worker pool or one of its workers outlived SIGTERM"


def portable_select(argv, pool, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", SELECT, *argv, "--runner=PortableRunner", "--job_endpoint=embed",
         "--environment_type=EXTERNAL", f"--environment_config={pool.address}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_worker_killed_mid_bundle_fails_the_job_cleanly_and_a_rerun_succeeds(
        tmp_path, targets, killing_pool):
    pool, marker = killing_pool
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    out = tmp_path / "out"
    argv = ["--source", EXAMPLE_SOURCE, "--target", tgt, "--output", str(out), "--top-k", "15",
            "--num-shards=2", "--no-report"]

    failed = portable_select(argv, pool)
    assert marker.exists(), "the fault was not injected: " + failed.stderr[-3000:]
    pid = int(marker.read_text())
    assert failed.returncode != 0, "the job survived a killed worker: was it retried?"
    assert "failed in state FAILED" in failed.stderr and "Channel closed prematurely" in failed.stderr
    assert not out.exists() or os.listdir(out) == [], os.listdir(out)  # nothing published or staged

    again = portable_select(argv, pool)
    assert again.returncode == 0, again.stderr[-3000:]
    started = [line for line in pool.log().splitlines() if "Starting worker with command" in line]
    assert len(started) == 2, pool.log()  # the killed worker, then a fresh one for the rerun
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    run(["--source", EXAMPLE_SOURCE, "--target", tgt, "--output", str(tmp_path / "local"),
         "--top-k", "15", "--num-shards=2", "--no-report"])
    (selected, rejected, manifest), (w_sel, w_rej, w_man) = outputs(str(out)), outputs(str(tmp_path / "local"))
    assert selected == w_sel and rejected == w_rej
    assert manifest["counts"] == w_man["counts"] and manifest["threshold"] == w_man["threshold"]
