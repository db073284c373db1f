"""--config where deploy/ uses it: the Flex Template's ``config`` parameter and the
CronJob's ConfigMap (the CronJob's full command is run in tests/deploy)."""

from __future__ import annotations

import json
import os
import re

import yaml

from tests.conftest import REPO
from zipfit_beam.cli.options import parse_select_args, template_parameters_to_flags

DEPLOY = os.path.join(REPO, "deploy")


def test_flex_template_config_parameter(tmp_path):
    with open(os.path.join(DEPLOY, "dataflow", "metadata.json")) as f:
        [param] = [p for p in json.load(f)["parameters"] if p["name"] == "config"]
    assert param["isOptional"]
    regexes = [re.compile(r) for r in param["regexes"]]
    assert all(r.search("gs://b/zipfit/nightly.yaml") for r in regexes)
    assert not all(r.search("nightly.yaml") for r in regexes)
    # What the launcher gets: --config=FILE among the other parameters, which win.
    path = tmp_path / "nightly.yaml"
    path.write_text("source: gs://b/corpus/*.jsonl.gz\ntarget: gs://b/t.jsonl\n"
                    "output: gs://b/out\ntop-k: 500\noverwrite: true\n")
    config, options = parse_select_args(template_parameters_to_flags(
        [f"--config={path}", "--source=gs://b/corpus/part-0.jsonl.gz", "--target=gs://b/t.jsonl",
         "--output=gs://b/out2", "--overwrite=false", "--runner=DataflowRunner"]))
    assert (config.sources, config.output, config.top_k) == (
        ("gs://b/corpus/part-0.jsonl.gz",), "gs://b/out2", 500)
    assert config.overwrite  # an on/off parameter set false cannot turn the file's true off
    assert options.get_all_options()["runner"] == "DataflowRunner"


def test_cronjob_config_map_holds_a_select_config(tmp_path):
    with open(os.path.join(DEPLOY, "schedule", "cronjob.yaml")) as f:
        docs = {d["kind"]: d for d in yaml.safe_load_all(f) if d}
    text = docs["ConfigMap"]["data"]["select.yaml"]
    data = yaml.safe_load(text)
    assert "output" not in data  # the CronJob gives a dated --output on its command line
    path = tmp_path / "select.yaml"
    path.write_text(text)
    config, _ = parse_select_args(["--config", str(path), "--output", "gs://b/curated/2026-12-01",
                                   "--runner=PortableRunner"])
    assert config.sources == (data["source"],) and config.top_k == data["top-k"]
    assert config.output_suffix == data["output-suffix"]
