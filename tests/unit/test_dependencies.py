"""pyproject's dependencies: each default one is imported by the package; the launcher-only
heavy ones (datasets) sit in an extra and are never imported by the modules workers load;
without an extra, what needs it fails with an error that names it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

# distribution -> the module the package imports
MODULE_OF = {"apache-beam": "apache_beam", "pyyaml": "yaml", "huggingface-hub": "huggingface_hub"}


def project():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def package_imports() -> set:
    """Top-level names the package's modules import."""
    names = set()
    for root, _, files in os.walk(os.path.join(REPO, "zipfit_beam")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    names |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", f.read(), re.M))
    return names


def module(requirement: str) -> str:
    name = Requirement(requirement).name.lower().replace("_", "-")
    return MODULE_OF.get(name, name.replace("-", "_"))


def test_every_default_dependency_is_imported():
    imported = package_imports()
    unused = [r for r in project()["dependencies"] if module(r) not in imported]
    assert not unused, f"declared but never imported: {unused}"


def test_beam_is_a_range_and_heavy_launcher_packages_are_extras():
    deps = {Requirement(r).name: Requirement(r) for r in project()["dependencies"]}
    extras = project()["optional-dependencies"]
    assert "==" not in str(deps["apache-beam"].specifier) and not deps["apache-beam"].extras
    assert "<3" in str(deps["apache-beam"].specifier)
    assert "datasets" not in deps and "google-cloud-storage" not in deps
    assert {Requirement(r).name for r in extras["hf"]} == {"datasets", "huggingface_hub"}
    [gcp] = [Requirement(r) for r in extras["gcp"]]
    assert gcp.name == "apache-beam" and gcp.extras == {"gcp"}
    assert gcp.specifier == deps["apache-beam"].specifier  # the same range, with Beam's gcp extra
    # the tests need both extras; the images need them and the exact pin
    assert "zipfit-beam[gcp,hf]" in extras["test"] and "zipfit-beam[gcp,hf]" in extras["deploy"]


def test_workers_never_import_the_launcher_only_packages():
    """What a worker imports to run the job loads neither datasets nor huggingface_hub (they are
    imported inside the launcher's functions that use them)."""
    code = ("import sys\n"
            "import zipfit_beam.jobs.select, zipfit_beam.jobs.reselect, zipfit_beam.jobs.align, "
            "zipfit_beam.score.transforms, zipfit_beam.select.transforms, zipfit_beam.io.read, "
            "zipfit_beam.io.write, zipfit_beam.io.targets, zipfit_beam.formats\n"
            "print(sorted(m for m in ('datasets', 'huggingface_hub') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_without_datasets_a_hub_target_names_the_extra(monkeypatch):
    from zipfit_beam.formats import hf as hf_files
    from zipfit_beam.io import hf
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ValueError, match=r"pip install 'zipfit-beam\[hf\]'"):
        list(hf.load_rows("hf:openai_humaneval:test"))
    with pytest.raises(ValueError, match=r"zipfit-beam\[hf\]"):
        list(hf_files.read(None, "targets.csv"))


def test_without_gcs_support_a_gs_path_names_the_extra(monkeypatch):
    from zipfit_beam.cli.options import parse_select_args
    monkeypatch.setitem(sys.modules, "apache_beam.io.gcp.gcsfilesystem", None)
    with pytest.raises(ValueError, match=r"pip install 'zipfit-beam\[gcp\]'"):
        parse_select_args(["--source", "gs://b/c/*.jsonl", "--target", "t.jsonl", "--output", "o",
                           "--top-k", "3"])
    # local paths need nothing more
    parse_select_args(["--source", "c/*.jsonl", "--target", "t.jsonl", "--output", "o", "--top-k", "3"])
