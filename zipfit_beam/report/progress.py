"""Progress of the scoring step on a local run: documents scored out of the total, rate, ETA.

Beam's local runners log nothing while a stage runs, and on a large corpus scoring is
nearly all of the job. The scoring DoFn reports each finished batch to the reporter of its
process; the reporter logs at most once per ``interval`` seconds (on batch boundaries, so
no timer thread to start or stop)::

    INFO zipfit_beam.progress: scored 4,096 of ~10,000 records (41.0%), 812 docs/s, ETA 7s

The total is the number of input records (JSONL lines, Parquet and Avro rows), found by
the launcher in a background thread for local files (``estimate_total_in_background``): from
the footers and block headers of Parquet and Avro files, and for a JSON Lines file longer
than ``jsonl.ESTIMATE_BYTES`` stored extrapolated from pieces spread over it, or from the
head of a compressed one (``Format.estimate``), so the corpus is not read or decompressed a
second time;
until it is known, or when it cannot be (remote files), only the count and rate are logged.
Rejected records are in the total but never scored, so the last line may stop short of
100%; an estimated total can also be passed (then the line says so); the end-of-run summary
has exact counts. On distributed runners the reporter is off:
workers log elsewhere, and each would only see its own share.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

__all__ = ["format_duration", "ProgressReporter", "process_reporter", "expect_total", "reset",
           "estimate_records", "estimate_total_in_background"]

_LOG = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressReporter:
    """Counts scored documents and logs progress at most every ``interval`` seconds.
    Thread-safe (scoring DoFn instances of one process share it)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = _LOG.info):
        self.interval, self._clock, self._log = interval, clock, log
        self._lock = threading.Lock()
        self.done = 0
        self.total: Optional[int] = None
        self._start = self._last_log = clock()  # the rate covers reading as well as scoring

    def set_total(self, total: Optional[int]) -> None:
        with self._lock:
            self.total = total

    def add(self, n: int) -> None:
        with self._lock:
            now = self._clock()
            self.done += n
            if now - self._last_log < self.interval:
                return
            self._last_log = now
            line = self.line(now)
        self._log(line)

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if not self.total:
            return f"scored {self.done:,} documents, {rate:,.0f} docs/s (total not known yet)"
        if self.done >= self.total:  # the total is an estimate, and it fell short
            return f"scored {self.done:,} documents, {rate:,.0f} docs/s (past the ~{self.total:,} estimated)"
        pct = 100.0 * self.done / self.total
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"scored {self.done:,} of ~{self.total:,} records ({pct:.1f}%), "
                f"{rate:,.0f} docs/s, ETA {eta}")


_REPORTERS: Dict[float, ProgressReporter] = {}
_REGISTRY_LOCK = threading.Lock()
_expected_total: Optional[int] = None


def process_reporter(interval: float) -> ProgressReporter:
    """The reporter of this process (one per interval value), created on first use."""
    with _REGISTRY_LOCK:
        if interval not in _REPORTERS:
            _REPORTERS[interval] = ProgressReporter(interval)
            _REPORTERS[interval].set_total(_expected_total)
        return _REPORTERS[interval]


def expect_total(total: Optional[int]) -> None:
    """Tell this process's reporters how many records the job reads (launcher side; only
    effective when the pipeline runs in this process, as on the local runner)."""
    global _expected_total
    with _REGISTRY_LOCK:
        _expected_total = total
        for reporter in _REPORTERS.values():
            reporter.set_total(total)


def reset() -> None:
    """Forget this process's reporters (between two jobs in one process)."""
    global _expected_total
    with _REGISTRY_LOCK:
        _REPORTERS.clear()
        _expected_total = None


def estimate_records(files: Sequence[Tuple[str, str]]) -> int:
    """About how many records the (path, format) source files hold, as the reader will
    count them (``Format.estimate``)."""
    from zipfit_beam import formats
    from zipfit_beam.io.files import open_file
    total = 0
    for path, fmt in files:
        with open_file(path) as f:
            total += formats.get(fmt).estimate(f, path)
    return total


def estimate_total_in_background(files: Sequence[Tuple[str, str]]) -> Optional[threading.Thread]:
    """Estimate the records of local (path, format) files in a daemon thread
    (``estimate_records``) and pass the total to ``expect_total``; remote files
    (``scheme://``) are not estimated (it would mean reading parts of the corpus over the
    network before the job). Returns the thread, or None when not estimating."""
    if not files or any("://" in path for path, _ in files):
        return None

    def work():
        try:
            expect_total(estimate_records(files))
        except Exception as e:  # progress is a convenience: never fail the job for it
            _LOG.debug("progress: could not estimate the input records: %s", e)

    thread = threading.Thread(target=work, name="zipfit-estimate-records", daemon=True)
    thread.start()
    return thread
