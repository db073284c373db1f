"""The progress reporter: steady interval, rate, ETA; line counting for the total."""

import gzip

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


def test_durations():
    assert progress.format_duration(59.4) == "59s"
    assert progress.format_duration(61) == "1m01s"
    assert progress.format_duration(3 * 3600 + 120) == "3h02m"


def test_count_records_of_every_source_format(tmp_path):
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
    assert progress.count_records(files) == 3 + 1001 + 39 + 39


def test_process_reporter_gets_the_expected_total():
    progress.reset()
    try:
        progress.expect_total(77)
        assert progress.process_reporter(3.0).total == 77
        progress.expect_total(78)
        assert progress.process_reporter(3.0).total == 78
    finally:
        progress.reset()
    assert progress.count_records_in_background([("gs://bucket/x.jsonl", "jsonl")]) is None
