"""Thin entry point for launchers that run a Python file (Dataflow Flex Templates, Flink
submit scripts): parse, build, run. Same flags as ``zipfit-beam select``."""

import logging
import sys

from zipfit_beam.jobs.select import run

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run(sys.argv[1:])
