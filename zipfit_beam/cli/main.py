"""``zipfit-beam`` console script: ``zipfit-beam select ...`` (see ``--help``)."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from typing import Iterator, List, Optional

__all__ = ["main"]

USAGE = """usage: zipfit-beam <command> [flags]      zipfit-beam --version

commands:
  select    score a source corpus against a target set and write the best documents
            (top-K, a token budget or a fraction; zipfit-beam select --help)
  reselect  a new selection from the scores a 'select --write-scores' run saved, without
            rescoring (zipfit-beam reselect --help)
  example   run select on the small example bundled with the package
  align     dataset-level ZIP-FIT alignment of a corpus with a target set, exact or
            sampled with its standard error (zipfit-beam align --help)
  report    (re)write report.html and its plots for a finished selection
            (zipfit-beam report DIR)
  worker-pool
            serve a Beam SDK worker pool on 127.0.0.1 for --environment_type=EXTERNAL
            (a Flink TaskManager's sidecar; zipfit-beam worker-pool --help)

select, reselect and align also read their flags from a file: --config FILE (YAML or
JSON, or a finished run's manifest.json); flags on the command line override it.
"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from zipfit_beam.cli.options import version_line
        print(version_line())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "select":
        from zipfit_beam.jobs.select import run
    elif command == "reselect":
        from zipfit_beam.jobs.reselect import run_reselect as run
    elif command == "example":
        from zipfit_beam.jobs.example import run_example as run
    elif command == "align":
        from zipfit_beam.jobs.align import run_align as run
    elif command == "report":
        from zipfit_beam.report.html import run_report as run
    elif command == "worker-pool":
        from zipfit_beam.cli.worker_pool import run
    else:
        print(f"zipfit-beam: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        with quiet_collector():
            run(rest)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as e:
        print(f"zipfit-beam {command}: error: {e}", file=sys.stderr)
        return 2
    return 0


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Fewer garbage-collector passes while a command runs, which makes millions of
    short-lived objects: what exists when it starts (modules, classes; garbage collected
    first) leaves the collector's generations (``gc.freeze``), and a young-generation pass
    waits for 50,000 new container objects rather than 700. The run's objects mostly die
    young, so memory stays as it was. Undone afterwards, for callers of ``main`` in-process."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


if __name__ == "__main__":
    sys.exit(main())
