"""A finished run repeated from its manifest: ``select --config OUT/manifest.json --output
OUT2`` writes the same selected-* shards, byte for byte, and the same counts."""

from __future__ import annotations

import glob
import json
import os

import pytest
import yaml

from zipfit_beam.cli import main as cli_main

from tests.conftest import BAD_LINES, write_jsonl, write_lines


def shards(out_dir):
    """{file name: bytes} of every selected-* shard."""
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(out_dir, "selected-*")))}


def manifest(out_dir):
    with open(os.path.join(out_dir, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture
def inputs(tmp_path, sources, targets):
    a = write_jsonl(tmp_path / "src-0.jsonl", sources[:20])
    b = write_lines(tmp_path / "src-1.jsonl.gz",
                    [json.dumps(s).encode() for s in sources[20:]] + [line for line, _ in BAD_LINES])
    t = write_jsonl(tmp_path / "targets.jsonl",
                    [{"task": f"t{i}", "prompt": t["text"][:200], "solution": t["text"][200:]}
                     for i, t in enumerate(targets)])
    return [a, b], t


@pytest.mark.parametrize("extra", [
    ["--top-k", "9", "--num-shards", "2", "--output-suffix", ".jsonl.gz"],
    ["--fraction", "0.3", "--min-score", "0.01", "--output-format", "parquet", "--num-shards", "3",
     "--chunk-bytes", "600", "--chunk-reduce", "mean"],
], ids=["jsonl-topk", "parquet-fraction"])
def test_a_run_repeated_from_its_manifest_is_identical(tmp_path, inputs, extra):
    (a, b), target = inputs
    first = str(tmp_path / "first")
    # the first run itself from a YAML config, with flags on the command line on top
    config = tmp_path / "select.yaml"
    config.write_text(yaml.safe_dump({
        "source": [a, b], "target": target, "id-field": "id",
        "target_text_template": "Problem: {prompt}\\nSolution: {solution}",
        "top-k": 1000, "beam": ["--direct_running_mode=in_memory"]}))
    assert cli_main(["select", "--config", str(config), "--output", first, *extra]) == 0

    m1 = manifest(first)
    entries = m1["cli_config"]
    assert entries["source"] == [a, b] and entries["output"] == first
    assert entries["target-text-template"] == "Problem: {prompt}\\nSolution: {solution}"
    assert m1["config"]["target_text_template"] == "Problem: {prompt}\nSolution: {solution}"
    mode = extra[0][2:]
    assert entries[mode] == pytest.approx(float(extra[1]))
    assert not {"top-k", "fraction", "token-budget"} - {mode} & set(entries)  # the override won

    second = str(tmp_path / "second")
    assert cli_main(["select", "--config", os.path.join(first, "manifest.json"),
                     "--output", second]) == 0
    m2 = manifest(second)
    s1, s2 = shards(first), shards(second)
    assert s1 and s1 == s2
    assert m1["counts"] == m2["counts"] and m1["counts"]["selected"] > 0
    assert m1["counts"]["rejected"] == len(BAD_LINES)
    assert m1["threshold"] == m2["threshold"] and m1["selection"] == m2["selection"]
    assert {k: v for k, v in m1["config"].items() if k != "output"} == \
           {k: v for k, v in m2["config"].items() if k != "output"}
    assert dict(m1["cli_config"], output=second) == m2["cli_config"]


def test_a_changed_flag_changes_the_repeat(tmp_path, inputs):
    """Control: the repeat follows its command line, so the identity above is not vacuous."""
    (a, b), target = inputs
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    assert cli_main(["select", "--source", a, "--source", b, "--target", target,
                     "--target-text-template", "{prompt}{solution}", "--output", first,
                     "--top-k", "9", "--num-shards", "1"]) == 0
    assert cli_main(["select", "--config", os.path.join(first, "manifest.json"),
                     "--output", second, "--top-k", "4"]) == 0
    assert manifest(second)["counts"]["selected"] == 4
    assert shards(first) != shards(second)
