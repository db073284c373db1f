"""The command line: ``main`` (the ``zipfit-beam`` console script), ``options`` (the only
place that parses flags: argparse and Beam's PipelineOptions <-> the jobs' frozen
configs) and ``worker_pool`` (a Beam SDK worker pool on one address)."""

from zipfit_beam.cli.main import main

__all__ = ["main"]
