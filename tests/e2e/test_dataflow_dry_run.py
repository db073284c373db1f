"""Dataflow, offline: ``--runner=DataflowRunner --dry_run=True`` builds the whole job
(pipeline proto, worker environment, staged files) and stops just before the API call.

Two ways to ship our code to Dataflow workers, both checked:
- stock Beam image + ``--setup_file=pyproject.toml``: Beam 2.77 builds an sdist with
  ``python -m build --sdist --no-isolation`` and stages it as ``workflow.tar.gz``, which
  each worker pip-installs at start, compiling the C kernel there (the test builds a
  wheel from the staged file to check that);
- our image (deploy/Dockerfile, the Flex Template's) via ``--sdk_container_image``:
  nothing of ours is staged, the package is already installed.

Neither run may touch the network: no name lookup, no connection, no credential probe
(the ``Guard`` of test_offline.py records and refuses them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2

from tests.conftest import REPO, write_jsonl
from tests.e2e.test_offline import Guard
from zipfit_beam.jobs.select import run

DATAFLOW = ["--runner=DataflowRunner", "--dry_run=True", "--project=zipfit-ci",
            "--region=us-central1", "--temp_location=gs://zipfit-ci-temp/tmp"]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def job_files(tmp_path, monkeypatch, sources, targets):
    """Our flags, as ``--name=value`` (the form a Flex Template launcher passes too)."""
    # Beam stages into tempfile.mkdtemp() directories and leaves them; keep them in tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    src = write_jsonl(tmp_path / "src.jsonl", sources)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    return [f"--source={src}", f"--target={tgt}", f"--output={tmp_path / 'out'}", "--top-k=5"]


def environment(result) -> beam_runner_api_pb2.Environment:
    envs = list(result.job.proto_pipeline.components.environments.values())
    assert len(envs) == 1, envs
    return envs[0]


def container_image(env) -> str:
    assert env.urn == "beam:env:docker:v1"
    return beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image


def staged_files(env) -> dict:
    """staged name -> local file, for every artifact the job would upload."""
    out = {}
    for dep in env.dependencies:
        path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
        out[name] = path
    return out


def transform_names(result):
    return {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}


def test_dry_run_stages_our_package_as_a_real_submission_does(tmp_path, monkeypatch, job_files):
    guard = Guard(monkeypatch)
    result = run(job_files + DATAFLOW + [
        f"--setup_file={os.path.join(REPO, 'pyproject.toml')}", "--num_workers=2",
        "--max_num_workers=8", "--machine_type=n2-highcpu-8"])
    assert guard.attempts == []

    env = environment(result)
    assert container_image(env).endswith(f"/beam_python{PY}_sdk:{beam.__version__}")
    staged = staged_files(env)
    assert "workflow.tar.gz" in staged, staged
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
        pkg_info = sdist.extractfile(next(n for n in sdist.getnames() if n.endswith("/PKG-INFO")))
        requires = [line for line in pkg_info.read().decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    # The whole package, the kernel's C source (built on the worker) and the bundled data.
    for f in ("pyproject.toml", "zipfit_beam/jobs/select.py", "zipfit_beam/score/transforms.py",
              "zipfit_beam/score/ncd.py", "zipfit_beam/score/_gzip1.c", "zipfit_beam/score/_lz4len.c",
              "zipfit_beam/formats/parquet.py", "zipfit_beam/data/example_targets.jsonl"):
        assert f in names, (f, sorted(names))
    # A range that holds the launcher's Beam (the worker image runs that version); the exact
    # pin is the deploy extra's, for our image.
    from packaging.requirements import Requirement
    [needs_beam] = [r for r in (Requirement(line.split(":", 1)[1]) for line in requires)
                    if r.name == "apache-beam" and r.marker is None]
    assert beam.__version__ in needs_beam.specifier and "==" not in str(needs_beam.specifier)
    assert not any(n.endswith((".so", ".pyd")) for n in names), "a host-built binary was staged"

    # What a worker does with it at start: build and install it, compiling the kernel.
    if shutil.which("cc") or shutil.which("gcc"):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path / "wheel"), staged["workflow.tar.gz"]],
                       check=True, capture_output=True, timeout=300)
        [wheel] = os.listdir(tmp_path / "wheel")
        with zipfile.ZipFile(tmp_path / "wheel" / wheel) as z:
            for kernel in ("_gzip1", "_lz4len"):
                assert any(n.startswith(f"zipfit_beam/score/{kernel}.") and n.endswith(".so")
                           for n in z.namelist()), (kernel, z.namelist())

    assert {"ZipFitSelect/ScoreFiles/ScoreFile", "ZipFitSelect/SelectDocuments/FindCut/Histogram1",
            "PublishOutput"} <= transform_names(result)
    workers = result.job.options.view_as(WorkerOptions)
    assert (workers.num_workers, workers.max_num_workers, workers.machine_type) == (
        2, 8, "n2-highcpu-8")
    assert not (tmp_path / "out").exists(), "a dry run must write nothing"


def test_flex_template_entry_point_submits_with_our_image(tmp_path, monkeypatch, job_files):
    """pipelines/flex_template_main.py as the template launcher runs it: parameters as
    ``--name=value`` (a boolean one included), no ``--runner``, our image for workers."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "pipelines"))
    import flex_template_main

    image = "us-central1-docker.pkg.dev/zipfit-ci/zipfit/zipfit-beam:0.1.0"
    guard = Guard(monkeypatch)
    result = flex_template_main.main(job_files + ["--overwrite=true"] + [
        a for a in DATAFLOW if not a.startswith("--runner")] + [
        f"--sdk_container_image={image}", "--sdk_location=container"])
    assert guard.attempts == []
    env = environment(result)
    assert container_image(env) == image
    assert "workflow.tar.gz" not in staged_files(env)
    assert "ZipFitSelect/ScoreFiles/ScoreFile" in transform_names(result)
