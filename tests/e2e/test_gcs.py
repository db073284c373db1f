"""gs:// sources, targets and output through Beam's FileSystems, against a local GCS
emulator (PyPI ``gcp-storage-emulator``) bound to 127.0.0.1 and stopped by its PID.

Credentials: Beam's gcsio looks up Application Default Credentials with four retries and
exponential backoff (``apache_beam/internal/gcp/auth.py``), 20-37 s per process before it
falls back to an anonymous client (19.7 s measured here for one FileSystems.match); and with credentials it always builds an
authenticated client (``gcsio.create_storage_client``). The supported way to make that
lookup instant is google-auth's own: ``GOOGLE_APPLICATION_CREDENTIALS`` naming an
``authorized_user`` file whose access token is valid (far-future expiry), so nothing is
refreshed; with ``STORAGE_EMULATOR_HOST`` set, google-cloud-storage sends every request to
the emulator, which ignores the token. No network, no Beam internals patched.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from apache_beam.io.filesystems import FileSystems

from zipfit_beam.cli import main as cli_main
from zipfit_beam.jobs.select import run

from tests.conftest import write_jsonl, write_lines
from tests.fixtures_io import read_output, write_avro, write_parquet

BUCKET = "zipfit-test"
FAKE_ADC = {"type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
            "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("gcs") / "emulator.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"GCS emulator did not start (exit {proc.poll()})")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def gcs(emulator, tmp_path, monkeypatch):
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(FAKE_ADC))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "zipfit-test")
    return f"gs://{BUCKET}/{tmp_path.name}"


def upload(local: str, url: str) -> str:
    # as stored: FileSystems.create would gzip a .gz name's bytes again by default
    with open(local, "rb") as src, FileSystems.create(url, compression_type="uncompressed") as dst:
        shutil.copyfileobj(src, dst)
    return url


def download_dir(url: str, local) -> str:
    os.makedirs(local, exist_ok=True)
    for m in FileSystems.match([url + "/*"])[0].metadata_list:
        with FileSystems.open(m.path, compression_type="uncompressed") as src, \
                open(os.path.join(local, m.path.rsplit("/", 1)[1]), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return str(local)


@pytest.fixture
def inputs(tmp_path, sources, targets):
    """A JSONL.gz shard with a bad line, a Parquet file and an Avro file, and targets."""
    local = tmp_path / "local"
    local.mkdir()
    docs = [{"id": s["id"], "text": s["text"], "source": s["source"]} for s in sources[:30]]
    files = [write_lines(local / "a.jsonl.gz", [json.dumps(d).encode() for d in docs[:10]] + [b"[1]"]),
             write_parquet(local / "b.parquet", docs[10:20], row_group_size=4),
             write_avro(local / "c.avro", docs[20:])]
    return docs, files, write_jsonl(local / "t.jsonl", targets)


@pytest.mark.parametrize("out_format", ["parquet", "jsonl"])
def test_gs_sources_targets_and_output_match_a_local_run(gcs, inputs, tmp_path, caplog, out_format):
    docs, files, target = inputs
    remote = [upload(f, f"{gcs}/in/{os.path.basename(f)}") for f in files]
    remote_target = upload(target, f"{gcs}/targets/t.jsonl")
    extra = [f"--output-format={out_format}", "--num-shards=2", "--top-k=8"]
    caplog.set_level(logging.WARNING)

    start = time.monotonic()
    run(["--source", f"{gcs}/in/*.jsonl.gz", "--source", f"{gcs}/in/*.parquet", "--source", remote[2],
         "--target", remote_target, "--output", f"{gcs}/out", *extra])
    elapsed = time.monotonic() - start

    run([a for f in files for a in ("--source", f)] + ["--target", target, "--output",
                                                       str(tmp_path / "local-out"), *extra])
    got = read_output(download_dir(f"{gcs}/out", tmp_path / "from-gcs"))
    want = read_output(tmp_path / "local-out")
    assert sorted(r["id"] for r in got[0]) == sorted(r["id"] for r in want[0]) and len(got[0]) == 8
    assert {r["id"]: r for r in got[0]} == {r["id"]: r for r in want[0]}  # whole rows, scores
    assert [(r["reason"], r["position"]) for r in got[1]] == [("not_an_object", 11)]
    assert got[1][0]["source"] == f"{gcs}/in/a.jsonl.gz"
    assert got[2]["counts"] == want[2]["counts"]
    assert {k: got[2]["counts"][k] for k in ("read", "scored", "rejected", "selected")} == \
        {"read": 31, "scored": 30, "rejected": 1, "selected": 8}
    assert sorted(os.listdir(tmp_path / "from-gcs")) == sorted(os.listdir(tmp_path / "local-out"))
    # no default-credential lookup with its retries: no warning from it, and fast
    assert not [r for r in caplog.records if "credentials" in r.getMessage().lower()]
    assert elapsed < 15, f"{elapsed:.1f} s: the credential probe alone takes 20-37 s"


def test_gs_errors_are_clear_before_the_job(gcs, inputs, tmp_path, capsys):
    _, files, target = inputs
    src = upload(files[0], f"{gcs}/in/a.jsonl.gz")
    assert cli_main(["select", "--source", f"{gcs}/missing/*.jsonl", "--target", target,
                     "--output", f"{gcs}/o", "--top-k", "3"]) == 2
    assert "matches no files" in capsys.readouterr().err
    assert cli_main(["select", "--source", src, "--target", f"{gcs}/none.jsonl",
                     "--output", f"{gcs}/o", "--top-k", "3"]) == 2
    assert "matches no files" in capsys.readouterr().err
    assert not FileSystems.match([f"{gcs}/o/*"])[0].metadata_list
