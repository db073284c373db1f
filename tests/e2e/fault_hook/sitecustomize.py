"""Test-only fault injection for SDK worker processes (tests/e2e/test_faults.py).

On ``PYTHONPATH`` with ``ZIPFIT_KILL_ONCE=<marker file>`` set, every Python process that
starts imports this module; in it, ``parse_any`` (as the file scoring step and the parse
step call it) is wrapped so that the process running it SIGKILLs itself at its
``ZIPFIT_KILL_AT``-th record (default 5): in the middle of a bundle, while a file is
being read and scored. The marker file, created exclusively, makes that happen exactly
once across all processes and retries. Without the variable this does nothing.
"""

import os

if os.environ.get("ZIPFIT_KILL_ONCE"):
    import signal

    from zipfit_beam.io import read as _read
    from zipfit_beam.score import transforms as _transforms

    _marker = os.environ["ZIPFIT_KILL_ONCE"]
    _at = int(os.environ.get("ZIPFIT_KILL_AT", "5"))
    _real = _read.parse_any
    _seen = [0]

    def _parse_any(*args, **kwargs):
        _seen[0] += 1
        if _seen[0] == _at:
            try:
                fd = os.open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return _real(*args, **kwargs)

    _read.parse_any = _transforms.parse_any = _parse_any
