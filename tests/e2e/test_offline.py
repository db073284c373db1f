"""The default local run must never touch the network nor open a server."""

import ipaddress
import socket

import pytest

from zipfit_beam.jobs.select import run

from tests.conftest import write_jsonl


class Guard:
    """Records (and refuses) every attempt to reach a non-loopback address, and every
    gRPC server started."""

    def __init__(self, monkeypatch):
        self.attempts = []
        real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def loopback(host):
            try:
                return ipaddress.ip_address(host).is_loopback
            except ValueError:
                return host == "localhost"

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
                self.attempts.append(("connect", address))
                raise OSError("network disabled by test")
            return real_connect(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not loopback(str(host)):
                self.attempts.append(("resolve", host))
                raise socket.gaierror("network disabled by test")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        import grpc
        real_server = grpc.server

        def server(*args, **kwargs):
            self.attempts.append(("grpc.server", args))
            return real_server(*args, **kwargs)

        monkeypatch.setattr(grpc, "server", server)


def test_guard_sees_a_connection_attempt(monkeypatch):
    guard = Guard(monkeypatch)
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    assert guard.attempts


def test_default_run_makes_no_network_attempt(monkeypatch, tmp_path, sources, targets):
    guard = Guard(monkeypatch)
    src = write_jsonl(tmp_path / "s.jsonl", sources)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    run(["--source", src, "--target", tgt, "--output", str(tmp_path / "out"), "--top-k", "5"])
    assert (tmp_path / "out" / "manifest.json").exists()
    assert guard.attempts == []


def test_guard_catches_direct_runner_prism_download(monkeypatch, tmp_path, sources, targets):
    """Control: Beam 2.77's DirectRunner first tries to fetch Prism from GitHub (then falls
    back). The guard sees it, so the test above would fail if we defaulted to it."""
    guard = Guard(monkeypatch)
    src = write_jsonl(tmp_path / "s.jsonl", sources[:5])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    run(["--source", src, "--target", tgt, "--output", str(tmp_path / "out"), "--top-k", "2",
         "--runner=DirectRunner"])
    assert any(kind == "resolve" for kind, _ in guard.attempts)
