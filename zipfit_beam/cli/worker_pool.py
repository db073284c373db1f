"""A Beam SDK worker pool that listens on one address only (default 127.0.0.1).

This is the harness a Flink (or any portable) runner reaches with
``--environment_type=EXTERNAL --environment_config=HOST:PORT``: for each SDK worker the
runner asks for, the pool starts a worker process that connects back to the runner's
control endpoint and runs our DoFns.

Beam's own entry point, ``python -m apache_beam.runners.worker.worker_pool_main
--service_port=P`` (what the SDK image runs with ``--worker_pool``), binds ``[::]:P``:
every interface, IPv4 and IPv6, with no flag to change it. Its service starts arbitrary
code on request (the runner sends the pipeline's pickled functions), so it must not be
reachable from the network. This module serves the very same servicer
(``BeamFnExternalWorkerPoolServicer``, process mode, same worker command) on the
address you choose. A sidecar in a Kubernetes pod, or a container sharing the Flink
TaskManager's network namespace, reaches it on 127.0.0.1.

Two further differences from Beam's entry point, both about clean process handling:
worker processes are started with this interpreter first on ``PATH`` (the servicer runs
``python``, which outside an activated venv may be another Python without the package),
and SIGTERM stops the pool *and* its workers (Beam's only handles Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import List, Optional, Tuple

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import (BeamFnExternalWorkerPoolServicer,
                                                         kill_process_gracefully)
from apache_beam.utils import thread_pool_executor

__all__ = ["start_worker_pool", "stop_worker_pool", "serve", "run"]

_LOG = logging.getLogger(__name__)

# Same channel options as Beam's ``BeamFnExternalWorkerPoolServicer.start``.
_GRPC_OPTIONS = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]


def start_worker_pool(host: str = "127.0.0.1", port: int = 0,
                      container_executable: Optional[str] = None,
                      ) -> Tuple[str, grpc.Server, BeamFnExternalWorkerPoolServicer]:
    """Start the pool's gRPC service on ``host:port`` (port 0: any free port).

    ``container_executable``: a program implementing the SDK container contract (in the
    Beam SDK image, ``/opt/apache/beam/boot``, which also installs staged packages);
    None starts ``python -c 'SdkHarness(...).run()'`` directly, for a venv that already
    holds the package. Returns (``host:port`` actually bound, server, servicer)."""
    # The servicer runs "python" from PATH; make that this interpreter.
    bin_dir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The SDK image's boot (worker-pool mode) sets this so that its worker processes
    # install staged artifacts once per pool, not once per worker.
    os.environ.setdefault("BEAM_PYTHON_WORKER_POOL_ID", str(os.getpid()))
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(), options=_GRPC_OPTIONS)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"worker pool: cannot listen on {host}:{port}")
    servicer = BeamFnExternalWorkerPoolServicer(
        use_process=True, container_executable=container_executable,
        state_cache_size=0, data_buffer_time_limit_ms=-1)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
    server.start()
    address = f"{host}:{bound}"
    _LOG.info("SDK worker pool listening on %s (container executable: %s)", address,
              container_executable or "none, workers run in this Python")
    return address, server, servicer


def stop_worker_pool(server: grpc.Server, servicer: BeamFnExternalWorkerPoolServicer) -> None:
    """Stop accepting requests, then end every worker process the pool started."""
    server.stop(1).wait()
    workers = list(servicer._worker_processes.values())  # Beam keeps them only there
    servicer._worker_processes.clear()
    for proc in workers:
        kill_process_gracefully(proc, timeout=5)


def serve(host: str, port: int, container_executable: Optional[str] = None) -> None:
    """Run a worker pool until SIGTERM or SIGINT. Prints ``listening on HOST:PORT``."""
    address, server, servicer = start_worker_pool(host, port, container_executable)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"zipfit-beam worker pool listening on {address}", flush=True)
    while not done.wait(1.0):
        pass
    _LOG.info("worker pool on %s: stopping", address)
    stop_worker_pool(server, servicer)


def run(argv: Optional[List[str]] = None) -> None:
    """``zipfit-beam worker-pool [--host H] [--port P] [--container-executable PATH]``."""
    from zipfit_beam.cli.options import worker_pool_parser

    args = worker_pool_parser().parse_args(argv)
    serve(args.host, args.port, args.container_executable)
