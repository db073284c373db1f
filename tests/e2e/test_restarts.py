"""Clean restarts: a run killed with SIGKILL leaves its ``_staging-*`` directory (with the
lock that names it) and no manifest; the next run into the same output removes it and
publishes what a clean run publishes. A staging directory whose run may still be going
is refused with a message naming it (``--overwrite`` removes one that cannot be
checked, never one whose run is alive on this host)."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, write_jsonl
from tests.e2e.test_select_e2e import outputs
from zipfit_beam.io import publish
from zipfit_beam.jobs.example import EXAMPLE_SOURCE
from zipfit_beam.jobs.select import run


def select_argv(source, target, out, *extra):
    return ["--source", source, "--target", target, "--output", str(out), "--top-k", "15",
            "--num-shards=2", "--no-report", *extra]


def test_a_run_killed_mid_job_is_cleaned_up_by_the_next_run(tmp_path, targets):
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    out = tmp_path / "out"
    # Enough to score that the kill lands while scoring, however fast the kernels are.
    (tmp_path / "src").mkdir()
    for i in range(12):
        shutil.copy(EXAMPLE_SOURCE, tmp_path / "src" / f"part-{i:02d}.jsonl.gz")
    source = str(tmp_path / "src" / "part-*.jsonl.gz")
    log = open(tmp_path / "killed.log", "wb")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zipfit_beam.cli", "select",
         *select_argv(source, tgt, out, "--progress-interval", "0.05", "--batch-size", "4",
                      "--scoring-threads", "1")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # wait until it scores
            if "zipfit_beam.report.progress: scored" in (tmp_path / "killed.log").read_text("utf-8", "replace"):
                break
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # mid-job: scoring has begun
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    left = glob.glob(str(out / "_staging-*"))
    assert len(left) == 1 and not (out / "manifest.json").exists()
    lock = json.loads(open(os.path.join(left[0], publish.LOCK_NAME)).read())
    assert lock["pid"] == proc.pid and lock["local_job"] is True

    verdict = publish.judge_staging(left[0])
    assert verdict.state == "stale", verdict
    run(select_argv(source, tgt, out))  # no --overwrite needed: nothing was published
    assert not glob.glob(str(out / "_staging-*")), "the stale staging directory is still there"
    run(select_argv(source, tgt, tmp_path / "clean"))
    (selected, rejected, manifest), (w_sel, w_rej, w_man) = outputs(str(out)), outputs(str(tmp_path / "clean"))
    assert selected == w_sel and rejected == w_rej and manifest["counts"] == w_man["counts"]


def staging_with_lock(out, **lock):
    path = os.path.join(str(out), "_staging-" + lock.pop("name", "0123456789ab"))
    os.makedirs(path)
    base = {"host": socket.gethostname(), "boot_id": publish._boot_id(), "pid": os.getpid(),
            "pid_start": publish._process_start(os.getpid()), "local_job": True, "started": "then"}
    base.update(lock)
    with open(os.path.join(path, publish.LOCK_NAME), "w") as f:
        json.dump(base, f)
    with open(os.path.join(path, "selected-00000-of-00001.jsonl"), "w") as f:
        f.write("{}\n")
    return path


def test_a_live_run_is_refused_and_never_removed(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        path = staging_with_lock(tmp_path, pid=sleeper.pid, pid_start=publish._process_start(sleeper.pid))
        for overwrite in (False, True):
            with pytest.raises(FileExistsError, match="being written by another run") as e:
                publish.check_output(str(tmp_path), overwrite)
            assert path in str(e.value) and f"PID {sleeper.pid}" in str(e.value)
        assert os.path.isdir(path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert publish.clear_stale_staging(str(tmp_path)) == [path]  # now it is gone: stale
    assert not os.path.exists(path)


@pytest.mark.parametrize("lock, why", [
    ({"host": "another-host"}, "another host"),
    ({"boot_id": "an-earlier-boot"}, "before a reboot"),
    ({"local_job": False}, "separate runner"),
    (None, "no readable lock"),
])
def test_a_run_that_cannot_be_checked_is_refused_unless_overwrite(tmp_path, lock, why):
    if lock is None:
        path = os.path.join(str(tmp_path), "_staging-nolock00000")  # e.g. an older version's
        os.makedirs(path)
        open(os.path.join(path, "rejected-00000-of-00001.jsonl"), "w").close()
    else:
        path = staging_with_lock(tmp_path, pid=1, **lock)
    with pytest.raises(FileExistsError, match="--overwrite") as e:
        publish.check_output(str(tmp_path), False)
    assert path in str(e.value) and why in str(e.value)
    publish.check_output(str(tmp_path), True)
    assert not os.path.exists(path)


def test_a_dead_pid_or_a_reused_one_is_stale(tmp_path):
    gone = staging_with_lock(tmp_path, name="aaaaaaaaaaaa", pid=2 ** 22 + 12345)  # above pid_max
    reused = staging_with_lock(tmp_path, name="bbbbbbbbbbbb", pid=os.getppid(), pid_start=1)
    mine = staging_with_lock(tmp_path, name="cccccccccccc")  # this process, claim released
    assert {publish.judge_staging(p).state for p in (gone, reused, mine)} == {"stale"}
    assert sorted(publish.clear_stale_staging(str(tmp_path))) == sorted([gone, reused, mine])


def test_a_failed_run_removes_its_own_staging(tmp_path, targets):
    """A job that fails in the launcher's hands (the block under the claim raises, as
    ``run`` does when the runner reports a failed job) leaves no staging behind, so a
    rerun needs no --overwrite."""
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    src = write_jsonl(tmp_path / "src.jsonl", [{"id": "a", "text": "def f(): pass"}])
    out = tmp_path / "out"
    with pytest.raises(Exception):
        with publish.claim_staging(str(out)) as staging:
            assert os.path.exists(os.path.join(staging, publish.LOCK_NAME))
            assert publish.judge_staging(staging).state == "live"
            raise RuntimeError("the job failed")
    assert not glob.glob(str(out / "_staging-*"))
    run(select_argv(src, tgt, out))
    assert (out / "manifest.json").exists() and not glob.glob(str(out / "_staging-*"))


def test_a_dry_run_claims_nothing(tmp_path):
    """``--dry_run=True`` builds a job that never runs: no lock, no staging left behind."""
    from apache_beam.options.pipeline_options import PipelineOptions
    with publish.claim_staging(str(tmp_path / "out"), False,
                               PipelineOptions(["--runner=DataflowRunner", "--dry_run=True"])) as staging:
        assert staging.startswith(str(tmp_path / "out" / "_staging-"))
    assert not (tmp_path / "out").exists()
