"""Test-only fault injection for SDK worker processes (tests/e2e/test_faults.py).

On ``PYTHONPATH`` with ``ZIPFIT_KILL_ONCE=<marker file>`` set, every Python process that
starts imports this module; in it, the parsers the file scoring step and the parse step
call (``parse_batch`` for a reader's batch, ``parse_any`` per record) are wrapped so that
the process running them SIGKILLs itself when handed its ``ZIPFIT_KILL_AT``-th record
(default 5): in the middle of a bundle, while a file is being read and scored. The marker
file, created exclusively, makes that happen exactly once across all processes and
retries. Without the variable this does nothing.
"""

import os

if os.environ.get("ZIPFIT_KILL_ONCE"):
    import signal

    from zipfit_beam.io import read as _read
    from zipfit_beam.score import transforms as _transforms

    _marker = os.environ["ZIPFIT_KILL_ONCE"]
    _at = int(os.environ.get("ZIPFIT_KILL_AT", "5"))
    _seen = [0]

    def _count(n):
        before, _seen[0] = _seen[0], _seen[0] + n
        if before < _at <= _seen[0]:
            try:
                fd = os.open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)

    def _wrap(real, records_of):
        def wrapped(*args, **kwargs):
            _count(records_of(args))
            return real(*args, **kwargs)
        return wrapped

    _read.parse_any = _wrap(_read.parse_any, lambda args: 1)
    _transforms.parse_batch = _wrap(_transforms.parse_batch, lambda args: len(args[0]))
