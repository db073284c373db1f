"""The Hub probe (``hf.check_hub_reachable``) against a fake Hub and a fake proxy on
127.0.0.1: it goes through huggingface_hub, so HF_ENDPOINT, HTTP(S)_PROXY, HF_TOKEN and
the offline variables apply, and "no such dataset" is told apart from "no answer".

The fake Hub serves the one route the probe asks for, ``GET /api/datasets/NAME``: 200 for
the names in ``KNOWN``, 401 + ``X-Error-Code: GatedRepo`` for ``GATED``, else 404 +
``X-Error-Code: RepoNotFound`` (what huggingface.co answers an authenticated client). Every
server binds 127.0.0.1 and is shut down by its fixture; nothing else is contacted.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO
from zipfit_beam.io import hf

KNOWN = {"openai/openai_humaneval", "zipfit/tiny"}
GATED = {"zipfit/gated"}
# A host name no resolver knows (RFC 2606 reserves .invalid): only our proxy "resolves" it.
PROXIED_HOST = "hub.zipfit.invalid"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy")


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread; ``requests`` records what it got."""

    def __init__(self, handler):
        self.requests = []
        handler.server_log = self.requests
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class FakeHub(BaseHTTPRequestHandler):
    server_log: list

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        path = urlsplit(self.path).path  # absolute-form when a proxy forwards it
        self.server_log.append({"path": path, "authorization": self.headers.get("Authorization")})
        prefix = "/api/datasets/"
        name = path[len(prefix):] if path.startswith(prefix) else None
        if name in KNOWN:
            self._answer(200, {"id": name, "sha": "0" * 40, "private": False})
        elif name in GATED:
            self._answer(401, {"error": "gated"}, {"X-Error-Code": "GatedRepo"})
        else:
            self._answer(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

    def _answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def make_proxy(hub_port):
    """A forward proxy: plain-HTTP requests for PROXIED_HOST go to the fake Hub; CONNECT
    (what a client sends for an https:// URL) is recorded and refused with 502."""

    class Proxy(BaseHTTPRequestHandler):
        server_log: list

        def log_message(self, *args):
            pass

        def do_CONNECT(self):
            self.server_log.append({"method": "CONNECT", "target": self.path})
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            url = urlsplit(self.path)
            self.server_log.append({"method": "GET", "target": self.path})
            if url.hostname != PROXIED_HOST:
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            upstream = http.client.HTTPConnection("127.0.0.1", hub_port, timeout=5)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
            upstream.request("GET", url.path + (f"?{url.query}" if url.query else ""), headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Proxy


@pytest.fixture
def hub():
    server = Server(FakeHub)
    yield server
    server.close()


@pytest.fixture
def proxy(hub):
    server = Server(make_proxy(hub.port))
    yield server
    server.close()


def reset_hub_session():
    """huggingface_hub keeps one HTTP client per process, made with the proxy settings of
    the moment: drop it so the next request sees this test's environment."""
    from huggingface_hub import utils
    close = getattr(utils, "close_session", None) or getattr(utils, "reset_sessions", None)
    if close:
        close()


@pytest.fixture
def endpoint(monkeypatch):
    """Point huggingface_hub at a URL (what HF_ENDPOINT does at import), with no proxy, token
    or offline setting inherited from the machine."""
    import datasets
    from huggingface_hub import constants
    for v in PROXY_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    # huggingface_hub 2.x otherwise first fetches its agent registry from the endpoint
    # (telemetry for the user-agent header): keep the requests seen to the probe's own.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    reset_hub_session()

    def point_at(url):
        monkeypatch.setattr(constants, "ENDPOINT", url)

    yield point_at
    reset_hub_session()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- answers

def test_a_dataset_the_hub_has_passes(hub, endpoint):
    endpoint(hub.url)
    assert hf.check_hub_reachable("hf:zipfit/tiny:train") is None
    assert [r["path"] for r in hub.requests] == ["/api/datasets/zipfit/tiny"]


def test_a_missing_dataset_is_not_found_not_offline(hub, endpoint):
    endpoint(hub.url)
    with pytest.raises(hf.HubTargetNotFound) as e:
        hf.check_hub_reachable("hf:zipfit/nope:test")
    assert not isinstance(e.value, ConnectionError)  # not HubUnreachable
    assert "has no dataset 'zipfit/nope'" in str(e.value) and "HTTP 404" in str(e.value)
    assert hub.requests[-1]["path"] == "/api/datasets/zipfit/nope"


def test_a_gated_dataset_says_so(hub, endpoint):
    endpoint(hub.url)
    with pytest.raises(hf.HubTargetNotFound, match="is gated.*HF_TOKEN"):
        hf.check_hub_reachable("hf:zipfit/gated")


def test_hf_token_is_sent(hub, endpoint, monkeypatch):
    endpoint(hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_zipfit_test_token")
    hf.check_hub_reachable("hf:zipfit/tiny")
    assert hub.requests[-1]["authorization"] == "Bearer hf_zipfit_test_token"


def test_no_answer_is_unreachable(endpoint):
    endpoint(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(hf.HubUnreachable, match="cannot be reached.*HF_HUB_OFFLINE"):
        hf.check_hub_reachable("hf:zipfit/tiny")
    assert time.monotonic() - start < 5


def test_a_silent_hub_times_out(endpoint):
    """A server that accepts and never answers: the probe gives up after its timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(hf.HubUnreachable, match="cannot be reached"):
            hf.check_hub_reachable("hf:zipfit/tiny")
        elapsed = time.monotonic() - start
    assert hf.HUB_PROBE_TIMEOUT_S - 0.5 <= elapsed < hf.HUB_PROBE_TIMEOUT_S + 5


def test_offline_mode_sends_nothing(hub, endpoint, monkeypatch):
    import datasets
    endpoint(hub.url)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert hf.check_hub_reachable("hf:zipfit/nope") is None
    assert hub.requests == []


# ---------------------------------------------------------------- proxies

def test_http_proxy_is_used(hub, proxy, endpoint, monkeypatch):
    """HF_ENDPOINT names a host that does not resolve; only the proxy knows it. The probe
    succeeds (and tells a missing dataset apart) only by going through the proxy."""
    endpoint(f"http://{PROXIED_HOST}")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    hf.check_hub_reachable("hf:zipfit/tiny")
    with pytest.raises(hf.HubTargetNotFound):
        hf.check_hub_reachable("hf:zipfit/nope")
    assert [r["target"] for r in proxy.requests] == [
        f"http://{PROXIED_HOST}/api/datasets/zipfit/tiny",
        f"http://{PROXIED_HOST}/api/datasets/zipfit/nope"]
    assert [r["path"] for r in hub.requests] == ["/api/datasets/zipfit/tiny",
                                                 "/api/datasets/zipfit/nope"]


def test_without_the_proxy_the_same_host_is_unreachable(hub, endpoint):
    """Control for the test above: the host really does not resolve here."""
    endpoint(f"http://{PROXIED_HOST}")
    with pytest.raises(hf.HubUnreachable):
        hf.check_hub_reachable("hf:zipfit/tiny")
    assert hub.requests == []


def test_https_proxy_gets_the_connect(proxy, endpoint, monkeypatch):
    """An https:// endpoint goes to HTTPS_PROXY as a CONNECT; our proxy refuses it, so the
    Hub is unreachable and the message names the proxy."""
    endpoint(f"https://{PROXIED_HOST}")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with pytest.raises(hf.HubUnreachable, match=f"through the proxy HTTPS_PROXY={proxy.url}"):
        hf.check_hub_reachable("hf:zipfit/tiny")
    assert proxy.requests == [{"method": "CONNECT", "target": f"{PROXIED_HOST}:443"}]


# ---------------------------------------------------------------- the real variables, read at start

def probe_in_subprocess(hub_url, home, **env):
    """Run the probe in a fresh interpreter whose environment says HF_ENDPOINT=hub_url (the
    variables are read when huggingface_hub and datasets are imported)."""
    full = {k: v for k, v in os.environ.items()
            if k not in PROXY_VARIABLES and k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    full.update(HF_ENDPOINT=hub_url, HF_HOME=str(home), **env)
    code = ("from zipfit_beam.io import hf\n"
            "try:\n    hf.check_hub_reachable('hf:zipfit/nope')\n    print('PASSED')\n"
            "except hf.HubTargetNotFound as e:\n    print('NOT FOUND', e)\n")
    done = subprocess.run([sys.executable, "-c", code], env=full, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def datasets_requests(server):
    return [r["path"] for r in server.requests if r["path"].startswith("/api/datasets/")]


def test_hf_endpoint_variable_is_honoured(hub, tmp_path):
    out = probe_in_subprocess(hub.url, tmp_path)
    assert out.startswith("NOT FOUND") and datasets_requests(hub) == ["/api/datasets/zipfit/nope"]


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_variables_are_honoured(hub, variable, tmp_path):
    out = probe_in_subprocess(hub.url, tmp_path, **{variable: "1"})
    assert out.strip() == "PASSED" and hub.requests == []


def test_cli_reports_a_missing_hub_dataset(hub, endpoint, tmp_path, capsys):
    """The whole launcher: a Hub target the Hub does not have fails at once, exit 2."""
    from zipfit_beam.cli import main as cli_main
    endpoint(hub.url)
    src = tmp_path / "s.jsonl"
    src.write_text('{"id": "a", "text": "def f(): pass"}\n')
    assert cli_main(["select", "--source", str(src), "--target", "hf:zipfit/nope:test",
                     "--output", str(tmp_path / "o"), "--top-k", "1"]) == 2
    assert "has no dataset 'zipfit/nope'" in capsys.readouterr().err
    assert datasets_requests(hub) == ["/api/datasets/zipfit/nope"]
    assert not (tmp_path / "o").exists()
