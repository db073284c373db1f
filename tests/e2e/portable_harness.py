"""Helpers for the portable-runner tests: servers on loopback only, started and stopped by
process id.

- ``install_loopback_grpc``: Beam's runner-side gRPC servers (control, data, state and
  logging of the FnApiRunner that the job service runs; the LOOPBACK worker pool) listen
  on ``[::]``, every interface, and Beam has no option to change it. This rewrites the
  wildcard bind address of every ``grpc.server`` to 127.0.0.1, and makes the runner name
  ``localhost`` to its workers (Beam's ExternalWorkerHandler uses ``socket.getfqdn()`` on
  Linux: a name lookup, and an address that need not be loopback).
- ``WorkerPool``: ``zipfit-beam worker-pool --host 127.0.0.1`` as a subprocess.
- ``JobService``: Beam's ``local_job_service_main`` (the stand-in for Flink's job server)
  as a subprocess, with ``install_loopback_grpc`` applied in it:
  ``python -m tests.e2e.portable_harness --port_file F`` runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, List

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def install_loopback_grpc(setattr_: Callable = setattr) -> List[str]:
    """Patch grpc.server (with ``setattr_``: pass ``monkeypatch.setattr`` in a test);
    returns the list that records every address bound."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    binds: List[str] = []
    real_server = grpc.server

    def server(*args, **kwargs):
        srv = real_server(*args, **kwargs)
        real_add = srv.add_insecure_port

        def add_insecure_port(address):
            host, _, port = address.rpartition(":")
            if host in ("[::]", "0.0.0.0", ""):
                address = f"127.0.0.1:{port}"
            binds.append(address)
            return real_add(address)

        srv.add_insecure_port = add_insecure_port
        return srv

    setattr_(grpc, "server", server)
    setattr_(worker_handlers.ExternalWorkerHandler, "host_from_worker", lambda self: "localhost")
    return binds


def all_loopback(binds: List[str]) -> bool:
    return all(b.rpartition(":")[0] in LOOPBACK_HOSTS for b in binds)


def listening_addresses(port: int) -> List[str]:
    """Local addresses (hex, as the kernel lists them) in LISTEN state on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                addr, port_hex = fields[1].split(":")
                if fields[3] == "0A" and int(port_hex, 16) == port:
                    found.append(addr)
    return found


def is_loopback_hex(addr: str) -> bool:
    # tcp: 0100007F is 127.0.0.1 (little-endian words). tcp6: ::1, or ::ffff:127.x.x.x
    # (gRPC listens on IPv4 addresses through a dual-stack socket).
    if len(addr) == 8:
        return addr.endswith("7F")
    return addr == "00000000000000000000000001000000" or (
        addr.startswith("0000000000000000FFFF0000") and addr.endswith("7F"))


class _Server:
    """A subprocess in its own process group, its output in a log file; ``stop()`` sends
    SIGTERM and reports whether the whole group ended by itself (then SIGKILLs it)."""

    def __init__(self, argv, log_path, ready_marker: str, timeout=60):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.ready_line = self._wait_for(ready_marker, timeout)

    def _wait_for(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if marker in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.proc.args} did not start:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, timeout=20) -> bool:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + timeout
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        clean = not self.group_alive()
        if not clean:  # last resort, and only our own process group
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        return clean


class WorkerPool(_Server):
    """``zipfit-beam worker-pool --host 127.0.0.1 --port 0``; ``address`` is HOST:PORT."""

    def __init__(self, log_path):
        super().__init__([sys.executable, "-m", "zipfit_beam.cli", "worker-pool",
                          "--host", "127.0.0.1", "--port", "0"],
                         log_path, "zipfit-beam worker pool listening on ")
        self.address = self.ready_line.rsplit(" ", 1)[1]
        self.port = int(self.address.rpartition(":")[2])

    def started_worker_ids(self) -> List[str]:
        return sorted({line.split('worker_id="')[1].split('"')[0] for line in self.log().splitlines()
                       if "Starting worker with command" in line})


class JobService(_Server):
    """Beam's local job service on a free loopback port; ``endpoint`` is localhost:PORT
    (job API and artifact staging on the same port)."""

    def __init__(self, log_path, port_file):
        super().__init__([sys.executable, "-m", "tests.e2e.portable_harness",
                          "--port_file", str(port_file)], log_path, "Listening for beam jobs on port")
        self.endpoint = f"localhost:{int(open(port_file).read())}"


if __name__ == "__main__":
    import logging

    from apache_beam.runners.portability import local_job_service_main

    binds = install_loopback_grpc()
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    logging.basicConfig(level=logging.INFO)
    try:
        local_job_service_main.run(sys.argv[1:])
    finally:
        print(f"gRPC binds: {binds}", flush=True)
