"""Dataflow Flex Template entry point: ``FLEX_TEMPLATE_PYTHON_PY_FILE`` in deploy/Dockerfile.

The launcher runs this file with the template's parameters (``--name=value``, see
deploy/dataflow/metadata.json) and Dataflow's own options (project, region, temp
location, ...). It submits the job and exits without waiting, as a Flex Template
launcher must; the job writes ``manifest.json`` last when it finishes.
"""

import logging
import sys

from zipfit_beam.cli.options import template_parameters_to_flags
from zipfit_beam.jobs.select import run


def main(argv):
    argv = template_parameters_to_flags(list(argv))
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append("--runner=DataflowRunner")  # never fall back to a local run on the launcher
    return run(argv, wait=False)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    main(sys.argv[1:])
