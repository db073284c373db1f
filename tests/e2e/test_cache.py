"""Key tables as the spine (``io.keys``): ``--cache`` reuses a source file's table while
the file and the scoring settings are unchanged, a killed run resumes, and reused plus
freshly scored files give the same output as a fresh run."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from zipfit_beam.jobs.select import run
from zipfit_beam.score import spec as scoring

from tests.conftest import BAD_LINES, REPO, write_jsonl, write_lines

K = 9


@pytest.fixture
def shards(tmp_path, sources, targets):
    """The sources over 6 shards (one with bad lines), and the targets."""
    files = []
    for i in range(6):
        part = [json.dumps(s).encode() for s in sources[i::6]]
        if i == 2:
            part += [line for line, _ in BAD_LINES]
        files.append(write_lines(tmp_path / f"part-{i}.jsonl", part))
    return files, write_jsonl(tmp_path / "targets.jsonl", targets)


def output(out):
    """(shard name -> bytes, manifest) of a finished run."""
    files = {os.path.basename(p): open(p, "rb").read()
             for p in sorted(glob.glob(f"{out}/selected-*") + glob.glob(f"{out}/rejected-*"))}
    return files, json.load(open(f"{out}/manifest.json"))


def select(tmp_path, name, files, target, *extra):
    out = str(tmp_path / name)
    run([a for f in files for a in ("--source", f)] + ["--target", target, "--output", out,
         "--top-k", str(K), "--no-report", "--num-shards", "2", *extra])
    return output(out)


def same_result(a, b):
    (files_a, man_a), (files_b, man_b) = a, b
    assert files_a == files_b
    assert man_a["counts"] == man_b["counts"] and man_a["threshold"] == man_b["threshold"]
    assert man_a["rejected_by_reason"] == man_b["rejected_by_reason"]


def test_cache_hit_reuses_every_table_and_changes_nothing(tmp_path, shards):
    files, target = shards
    cache = str(tmp_path / "cache")
    fresh = select(tmp_path, "fresh", files, target)
    first = select(tmp_path, "first", files, target, "--cache", cache)
    again = select(tmp_path, "again", files, target, "--cache", cache,
                   "--scoring-threads", "3", "--batch-size", "5")  # neither changes a score
    assert first[1]["cache"] == {"files_reused": 0, "files_scored": 6, "documents_reused": 0}
    scored = first[1]["counts"]["scored"]
    assert again[1]["cache"] == {"files_reused": 6, "files_scored": 0, "documents_reused": scored}
    same_result(fresh, first)
    same_result(fresh, again)
    assert fresh[1]["cache"]["files_scored"] == 6 and not os.path.exists(f"{tmp_path}/fresh/scores")


@pytest.mark.parametrize("change", ["file", "targets", "settings", "version"])
def test_each_kind_of_change_misses(tmp_path, shards, targets, monkeypatch, change):
    files, target = shards
    cache = str(tmp_path / "cache")
    select(tmp_path, "first", files, target, "--cache", cache)
    extra, expect_scored = [], 6
    if change == "file":  # a new file under the same name: only it is scored again
        records = [json.loads(line) for line in open(files[4])]
        write_jsonl(files[4], records[:-1])
        os.utime(files[4], (time.time() + 5, time.time() + 5))
        expect_scored = 1
    elif change == "targets":
        target = write_jsonl(tmp_path / "targets2.jsonl", targets[:-1])
    elif change == "settings":
        extra = ["--chunk-bytes", "4096"]
    else:  # a package version whose keys differ
        monkeypatch.setattr(scoring, "SCORES_VERSION", scoring.SCORES_VERSION + 1)
    name = f"after-{change}"
    got = select(tmp_path, name, files, target, "--cache", cache, *extra)
    assert got[1]["cache"]["files_scored"] == expect_scored
    assert got[1]["cache"]["files_reused"] == 6 - expect_scored
    same_result(select(tmp_path, "fresh", files, target, *extra), got)


def test_write_scores_and_reselect_read_the_tables(tmp_path, shards):
    files, target = shards
    cache = str(tmp_path / "cache")
    _, manifest = select(tmp_path, "scored", files, target, "--cache", cache, "--write-scores")
    tables = sorted(os.listdir(tmp_path / "scored" / "scores"))
    assert len([t for t in tables if t.endswith(".done")]) == 6 and len(tables) == 18
    again = str(tmp_path / "re")
    from zipfit_beam.jobs.reselect import run_reselect
    run_reselect(["--scores", str(tmp_path / "scored"), *[a for f in files for a in ("--source", f)],
                  "--output", again, "--top-k", str(K), "--num-shards", "2"])
    re_files, re_manifest = output(again)
    assert {k: v for k, v in re_files.items() if k.startswith("selected-")} == \
        {k: v for k, v in output(str(tmp_path / "scored"))[0].items() if k.startswith("selected-")}
    assert re_manifest["counts"] == manifest["counts"]


def test_a_killed_run_resumes_from_its_complete_tables(tmp_path, sources, targets):
    """kill -9 while scoring; the rerun reuses every table that was complete, writes the same
    output as an uninterrupted run, and nothing appeared under the final names before."""
    files = [write_jsonl(tmp_path / f"p-{i:02d}.jsonl", [dict(s, id=f"{i}:{s['id']}") for s in sources])
             for i in range(24)]
    target = write_jsonl(tmp_path / "t.jsonl", targets)
    cache, out = str(tmp_path / "cache"), str(tmp_path / "out")
    argv = [a for f in files for a in ("--source", f)] + [
        "--target", target, "--output", out, "--top-k", str(K), "--no-report", "--cache", cache,
        "--num-shards", "2", "--scoring-threads", "1", "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "zipfit_beam.cli", "select", *argv], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(glob.glob(f"{cache}/keys-*.done")) < 3:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(glob.glob(f"{cache}/keys-*.done"))
    assert 3 <= done_before < 24
    assert not glob.glob(f"{out}/selected-*") and not os.path.exists(f"{out}/manifest.json")
    run(argv)
    resumed = output(out)
    assert resumed[1]["cache"]["files_reused"] >= done_before
    assert resumed[1]["cache"]["files_scored"] == 24 - resumed[1]["cache"]["files_reused"]
    same_result(select(tmp_path, "fresh", files, target, "--scoring-threads", "1"), resumed)


def test_a_marker_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A writer that dies while writing its marker leaves no ``keys-*.done`` (before, the
    marker's name existed, empty, from the moment it was opened), and the table is not found."""
    from zipfit_beam.io import keys

    real_create = keys.create_file

    class Dies:
        def __init__(self, path):
            self.f = real_create(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:3])
            raise OSError("killed while writing")

    monkeypatch.setattr(keys, "create_file",
                        lambda path: Dies(path) if ".done" in path else real_create(path))
    writer = keys.TableWriter(str(tmp_path), "t", "src.jsonl", {"path": "src.jsonl"})
    with pytest.raises(OSError, match="killed while writing"):
        writer.close()
    assert glob.glob(str(tmp_path / keys.MARKERS_GLOB)) == []
    assert keys.find_table(str(tmp_path), "t") is None
    monkeypatch.undo()
    table = keys.TableWriter(str(tmp_path), "t", "src.jsonl", {"path": "src.jsonl"}).close()
    assert keys.find_table(str(tmp_path), "t") == table._replace(reused=True)
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / keys.MARKERS_GLOB))] == ["keys-t.done"]
