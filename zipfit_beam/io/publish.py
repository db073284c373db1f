"""Publishing a job's output atomically: every file is written under a staging directory
in the output, and one last step moves the files to their final names and writes
``manifest.json`` after them. Until then nothing appears under final names, so a reader
that waits for the manifest never sees half an output.

Staging directories are claimed: ``claim_staging`` writes ``_staging-*/_lock.json``
(host, boot id, launcher PID and its start time, the runner, when) before the job
starts, and a run that fails in the launcher's hands removes its own staging. A run
killed outright (SIGKILL, OOM, power) leaves its staging behind; the next run into the
same output (``check_output``) judges each ``_staging-*`` it finds:

    stale    the lock names this host (same host name and boot id), a launcher that ran
             the job in its own process (the local runner, or an embedded job service),
             and that process is gone (or its PID now belongs to a later process; or it
             is this very process and the claim was released)  -> removed, logged
    live     the same, but the process is still running          -> refused, always
    unknown  another host or boot, a job on a separate cluster (Flink, Dataflow: its
             launcher may have exited while the job runs), or no readable lock
                                                                 -> refused, naming it;
                                                                    --overwrite removes it
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import posixpath
import socket
import uuid
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsList

__all__ = ["MANIFEST_NAME", "SUMMARY_NAME", "SCORES_DIR", "OUTPUT_PREFIXES", "staging_dir",
           "existing_outputs", "check_output", "WriteJsonDoFn", "PublishOutputDoFn", "publish",
           "LOCK_NAME", "claim_staging", "launcher_runs_job", "is_dry_run", "StagingVerdict", "judge_staging",
           "clear_stale_staging", "remove_staging"]

_LOG = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
OUTPUT_PREFIXES = ("selected-", "rejected-", "report")  # report.html, report-*.svg
SUMMARY_NAME = "summary.json"  # the report's data, computed by the job
SCORES_DIR = "scores"  # DIR/scores/scores-*.parquet (select --write-scores)
STAGING_PREFIX = "_staging-"
LOCK_NAME = "_lock.json"  # in a staging directory: which run owns it

# Staging directories claimed by this process and not yet released (see judge_staging).
_ACTIVE: set = set()


def staging_dir(output: str) -> str:
    """A new staging directory inside ``output`` for one run."""
    return posixpath.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def check_output(output: str, overwrite: bool) -> None:
    """In the launcher: remove the staging directories that killed runs left in ``output``
    (and, with ``overwrite``, those whose run cannot be checked), refuse one that a
    running job still writes, and refuse an output directory that holds a previous run's
    output unless ``overwrite``."""
    clear_stale_staging(output, overwrite)
    old = existing_outputs(output)
    if old and not overwrite:
        unfinished = not any(posixpath.basename(p) == MANIFEST_NAME for p in old)
        what = ("the files of a run that did not finish publishing (no manifest.json)"
                if unfinished else "the output of a previous run")
        raise FileExistsError(
            f"{output} already holds {what} ({len(old)} files, e.g. "
            f"{old[0]}); choose another --output or pass --overwrite")


# --- staging claims -------------------------------------------------------------------

def _boot_id() -> Optional[str]:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> Optional[int]:
    """When process ``pid`` started (clock ticks since boot, /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces


def _process_alive(pid: int, started: Optional[int]) -> bool:
    """Whether ``pid`` is still the process that wrote a lock: it exists, is no zombie,
    and (where /proc tells) started when the lock says."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False  # killed, not yet reaped
    except OSError:
        pass
    now = _process_start(pid)
    return started is None or now is None or now == started


def launcher_runs_job(options) -> bool:
    """Whether the job runs inside the launching process, so that the launcher's death is
    the job's: the local runner (no ``--runner`` or a direct/FnApi runner), or the
    PortableRunner with an embedded job service. A separate cluster (Flink, Spark,
    Dataflow) can run on after its launcher is gone."""
    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions
    runner = (options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1].lower()
    if runner in ("", "fnapirunner", "directrunner", "bundlebaseddirectrunner", "direct"):
        return True
    return runner in ("portablerunner", "portable") and \
        options.view_as(PortableOptions).job_endpoint == "embed"


def _write_lock(staging: str, local_job: bool) -> dict:
    lock = {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()), "local_job": local_job,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with FileSystems.create(posixpath.join(staging, LOCK_NAME)) as f:
        f.write(json.dumps(lock, indent=2).encode("utf-8"))
    return lock


def is_dry_run(options) -> bool:
    """``--dry_run=True`` (Dataflow): the job is built, never run, so nothing is staged."""
    from apache_beam.options.pipeline_options import TestOptions
    return bool(options is not None and options.view_as(TestOptions).dry_run)


@contextlib.contextmanager
def claim_staging(output: str, local_job: bool = True, options=None):
    """A new staging directory in ``output``, claimed by this run with a lock file for as
    long as the block runs; yields its path. ``local_job``: whether the job runs in this
    process (``launcher_runs_job``). When the block raises, the job is over (the local
    runner raised, or a runner reported a failed job) and nothing was published: the
    staging directory is removed. Otherwise it is left to the job, whose publishing step
    removes it (a launcher that does not wait leaves it to the running job). With
    ``options`` of a dry run nothing is written: the name only."""
    staging = staging_dir(output)
    if is_dry_run(options):
        yield staging
        return
    _write_lock(staging, local_job)
    _ACTIVE.add(staging)
    try:
        yield staging
    except Exception:
        remove_staging(staging)
        raise
    finally:
        _ACTIVE.discard(staging)


class StagingVerdict(NamedTuple):
    path: str
    state: str  # "stale", "live" or "unknown" (see the module docstring)
    why: str
    lock: Optional[dict]


def _staging_dirs(output: str) -> List[str]:
    found = set()
    for pattern in (posixpath.join(output, STAGING_PREFIX + "*"),
                    posixpath.join(output, STAGING_PREFIX + "*", "*")):
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:
            continue
        for m in matched:
            rel = m.path[len(output.rstrip("/")) + 1:]
            found.add(posixpath.join(output, rel.split("/", 1)[0]))
    return sorted(p for p in found if posixpath.basename(p).startswith(STAGING_PREFIX))


def judge_staging(path: str) -> StagingVerdict:
    """Whether the run that owns staging directory ``path`` can still be running."""
    try:
        with FileSystems.open(posixpath.join(path, LOCK_NAME)) as f:
            lock = json.loads(f.read())
        pid, host, boot = int(lock["pid"]), lock["host"], lock.get("boot_id")
    except Exception:
        return StagingVerdict(path, "unknown", "it has no readable lock file (a run of an "
                              "older version, or one killed as it started)", None)
    who = f"PID {pid} on {host}, started {lock.get('started', '?')}"
    if host != socket.gethostname() or boot != _boot_id():
        return StagingVerdict(path, "unknown", f"its run ({who}) was launched on another host "
                              "or before a reboot; it cannot be checked from here", lock)
    if not lock.get("local_job", False):
        return StagingVerdict(path, "unknown", f"its run ({who}) sent the job to a separate "
                              "runner, which may still be running it", lock)
    if pid == os.getpid():
        if path in _ACTIVE:
            return StagingVerdict(path, "live", f"this process ({who}) is running that job", lock)
        return StagingVerdict(path, "stale", f"its run ({who}, this process) has ended", lock)
    if _process_alive(pid, lock.get("pid_start")):
        return StagingVerdict(path, "live", f"its run ({who}) is still running", lock)
    return StagingVerdict(path, "stale", f"its run ({who}) is gone", lock)


def remove_staging(path: str) -> None:
    """Delete a staging directory and everything in it (local or object store)."""
    try:
        FileSystems.delete([path])  # local: the whole tree
    except Exception:
        pass
    for pattern in (posixpath.join(path, "*", "*"), posixpath.join(path, "*")):
        try:  # object stores have no directories: delete the files under it
            files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
            if files:
                FileSystems.delete(files)
        except Exception:
            pass


def clear_stale_staging(output: str, overwrite: bool = False) -> List[str]:
    """Remove the stale staging directories in ``output`` (and the unknown ones when
    ``overwrite``); refuse, naming it, a live one, or an unknown one without
    ``overwrite``. Returns the directories removed."""
    verdicts = [judge_staging(p) for p in _staging_dirs(output)]
    live = [v for v in verdicts if v.state == "live"]
    if live:
        v = live[0]
        raise FileExistsError(f"{output} is being written by another run: {v.path} belongs to a "
                              f"run that is still going ({v.why}); wait for it or choose another --output")
    unknown = [v for v in verdicts if v.state == "unknown"]
    if unknown and not overwrite:
        v = unknown[0]
        raise FileExistsError(
            f"{output} holds the staging directory {v.path} of a run that did not finish, and "
            f"it cannot be told whether that run is still going: {v.why}. If it is not, pass "
            f"--overwrite to remove it (or delete it yourself)")
    removed = []
    for v in verdicts:
        if v.state == "stale" or (v.state == "unknown" and overwrite):
            _LOG.warning("removing %s, the staging directory of a run that did not finish: %s",
                         v.path, v.why)
            remove_staging(v.path)
            removed.append(v.path)
    return removed


def existing_outputs(output_dir: str) -> List[str]:
    """Files of a previous run in ``output_dir`` (shards or manifest)."""
    patterns = [posixpath.join(output_dir, "*"), posixpath.join(output_dir, SCORES_DIR, "*")]
    names = []
    for pattern in patterns:
        try:
            names += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:
            pass
    return sorted(p for p in names if posixpath.basename(p) in (MANIFEST_NAME, SUMMARY_NAME)
                  or posixpath.basename(p).startswith(OUTPUT_PREFIXES)
                  or posixpath.basename(posixpath.dirname(p)) == SCORES_DIR)


class WriteJsonDoFn(beam.DoFn):
    """dict -> the JSON file at ``path`` (any Beam filesystem), with ``extra`` entries
    added; emits the path."""

    def __init__(self, path: str, extra: Optional[dict] = None, indent: Optional[int] = 2):
        self._path, self._extra, self._indent = path, dict(extra or {}), indent

    def process(self, value: dict):
        text = json.dumps(dict(value, **self._extra), indent=self._indent, sort_keys=True)
        with FileSystems.create(self._path) as f:
            f.write(text.encode("utf-8"))
        yield self._path


def staged_to_final(path: str, staging_dir: str, output_dir: str) -> str:
    """A staged file's final path: the same path relative to the output directory."""
    prefix = staging_dir.rstrip("/") + "/"
    relative = path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path)
    return posixpath.join(output_dir, relative)


class PublishOutputDoFn(beam.DoFn):
    """Runs once, after every shard is written to the staging directory: removes a previous
    run's output (only when overwriting was allowed), moves the staged shards to their final
    names and writes ``manifest.json`` last. ``assemble(**side inputs) -> dict`` turns the
    job's facts (counts, the cut, ...) into manifest entries."""

    def __init__(self, output_dir: str, staging_dir: str, manifest: dict,
                 assemble: Callable[..., dict] = dict):
        self._output_dir, self._staging_dir, self._manifest = output_dir, staging_dir, manifest
        self._assemble = assemble

    def process(self, _unused, staged_files: Iterable[str], **side):
        facts = self._assemble(**side)
        staged = sorted(set(staged_files))
        finals = [staged_to_final(p, self._staging_dir, self._output_dir) for p in staged]
        old = [p for p in existing_outputs(self._output_dir) if p not in finals]
        if old:
            FileSystems.delete(old)
        for directory in sorted({posixpath.dirname(p) for p in finals} - {self._output_dir}):
            try:
                FileSystems.mkdirs(directory)  # local filesystems; object stores need none
            except Exception:  # already there
                pass
        for src, dst in zip(staged, finals):
            if FileSystems.exists(src):  # a retried bundle may have moved it already
                if FileSystems.exists(dst):
                    FileSystems.delete([dst])
                FileSystems.rename([src], [dst])
        manifest = dict(self._manifest, **facts)
        manifest["outputs"] = sorted(p[len(self._output_dir) + 1:] for p in finals)
        with FileSystems.create(posixpath.join(self._output_dir, MANIFEST_NAME)) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        try:  # the launcher's claim (claim_staging): the staging is done with
            FileSystems.delete([posixpath.join(self._staging_dir, LOCK_NAME)])
        except Exception:  # already gone (a retried bundle), or never claimed
            pass
        try:
            FileSystems.delete([self._staging_dir])
        except Exception:  # already gone, or an object store without directories
            pass
        yield posixpath.join(self._output_dir, MANIFEST_NAME)


def publish(p, output: str, staging: str, manifest: dict, staged: Sequence, assemble, facts: dict):
    """Add the publishing step: once every PCollection of staged paths in ``staged`` is
    complete, move the files into ``output`` and write the manifest. ``facts``: side
    inputs for ``assemble(**facts) -> dict`` (manifest entries)."""
    all_staged = tuple(staged) | "AllStaged" >> beam.Flatten()
    return (p
            | "PublishTrigger" >> beam.Impulse()
            | "PublishOutput" >> beam.ParDo(PublishOutputDoFn(output, staging, manifest, assemble),
                                            AsList(all_staged), **facts))
