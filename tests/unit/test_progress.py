"""The progress reporter: steady interval, rate, ETA; line counting for the total."""

import gzip
import io
import random

import pytest

from zipfit_beam.report import progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_logs_at_most_once_per_interval_with_rate_and_eta():
    clock, lines = Clock(), []
    r = progress.ProgressReporter(5.0, clock=clock, log=lines.append)
    r.set_total(1000)
    clock.t += 1
    r.add(64)  # 1 s in: too early
    assert lines == []
    clock.t += 4
    r.add(136)  # 5 s in: 200 done, 40 docs/s, 800 left -> 20 s
    assert lines == ["scored 200 of ~1,000 records (20.0%), 40 docs/s, ETA 20s"]
    clock.t += 2
    r.add(100)
    assert len(lines) == 1
    clock.t += 3
    r.add(100)  # 10 s in: 400 done, 40/s, 600 left -> 15 s
    assert lines[-1] == "scored 400 of ~1,000 records (40.0%), 40 docs/s, ETA 15s"


def test_without_a_total_logs_count_and_rate():
    clock, lines = Clock(), []
    r = progress.ProgressReporter(1.0, clock=clock, log=lines.append)
    clock.t += 2
    r.add(50)
    assert lines == ["scored 50 documents, 25 docs/s (total not known yet)"]
    r.set_total(40)  # an estimate that fell short
    assert r.line(clock.t) == "scored 50 documents, 25 docs/s (past the ~40 estimated)"


def test_durations():
    assert progress.format_duration(59.4) == "59s"
    assert progress.format_duration(61) == "1m01s"
    assert progress.format_duration(3 * 3600 + 120) == "3h02m"


def test_estimate_records_of_every_source_format(tmp_path):
    from tests.fixtures_io import write_avro, write_parquet
    a = tmp_path / "a.jsonl"
    a.write_bytes(b"1\n2\n3\n")
    b = tmp_path / "b.jsonl.gz"
    with gzip.open(b, "wb") as f:
        f.write(b"x\n" * 1000 + b"last without newline")
    rows = [{"id": str(i), "text": "t" * i} for i in range(1, 40)]
    parquet = write_parquet(tmp_path / "c.parquet", rows, row_group_size=7)
    avro = write_avro(tmp_path / "d.avro", rows, sync_interval=64)  # many blocks
    files = [(str(a), "jsonl"), (str(b), "jsonl"), (parquet, "parquet"), (avro, "avro")]
    assert progress.estimate_records(files) == 3 + 1001 + 39 + 39  # short files: exact


@pytest.mark.parametrize("name", ["big.jsonl", "big.jsonl.gz"])
def test_a_long_json_lines_file_is_estimated_from_its_first_bytes(tmp_path, name):
    from zipfit_beam.formats import jsonl
    rng = random.Random(2)
    letters = b"abcdefghijklmnopqrstuvwxyz 0123456789"
    data = b"".join(b'{"text": "%s"}\n' % bytes(rng.choices(letters, k=rng.randint(10, 400)))
                    for _ in range(40_000))
    path = tmp_path / name
    path.write_bytes(gzip.compress(data, 6) if name.endswith(".gz") else data)
    reads = []

    class Counted(io.FileIO):
        def read(self, n=-1):
            out = super().read(n)
            reads.append(len(out))
            return out

        readinto = None  # every read goes through read()

    with Counted(path) as f:
        guess = jsonl.estimate(f, str(path), sample_bytes=256 << 10)
    assert abs(guess - 40_000) <= 40_000 * 0.05 and guess != 40_000
    assert sum(reads) < path.stat().st_size / 2  # not the whole file
    with open(path, "rb") as f:
        assert jsonl.estimate(f, str(path), sample_bytes=path.stat().st_size) == 40_000


def test_process_reporter_gets_the_expected_total():
    progress.reset()
    try:
        progress.expect_total(77)
        assert progress.process_reporter(3.0).total == 77
        progress.expect_total(78)
        assert progress.process_reporter(3.0).total == 78
    finally:
        progress.reset()
    assert progress.estimate_total_in_background([("gs://bucket/x.jsonl", "jsonl")]) is None
