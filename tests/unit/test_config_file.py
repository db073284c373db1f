"""``--config FILE``: flags from YAML or JSON (or a manifest's ``cli_config``), the command
line over them, unknown keys refused; and ``options.cli_config``, the inverse, which must
give back the same SelectConfig."""

from __future__ import annotations

import json

import pytest
import yaml

from zipfit_beam.cli.options import (cli_config, parse_align_args, parse_reselect_args,
                                 parse_select_args)

BASE = ["--source", "corpus/a.jsonl", "--target", "t.jsonl", "--output", "out", "--top-k", "5"]


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return str(path)


def select(*argv):
    return parse_select_args(list(argv))[0]


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("name", ["c.yaml", "c.yml", "c.json"])
def test_a_config_file_equals_the_same_flags(tmp_path, name):
    data = {"source": ["corpus/a.jsonl", "corpus/b.parquet"], "target": "t.jsonl",
            "output": "out", "top-k": 7, "compressor": "lz4", "level": 0, "min_score": 0.25,
            "output-suffix": ".jsonl.gz", "write_scores": True, "no-report": True,
            "chunk-bytes": 0, "id_field": "doc_id", "num-shards": 3}
    flags = ["--source", "corpus/a.jsonl", "--source", "corpus/b.parquet", "--target", "t.jsonl",
             "--output", "out", "--top-k", "7", "--compressor", "lz4", "--level", "0",
             "--min-score", "0.25", "--output-suffix", ".jsonl.gz", "--write-scores",
             "--no-report", "--chunk-bytes", "0", "--id-field", "doc_id", "--num-shards", "3"]
    from_file = select("--config", write(tmp_path, data, name))
    assert from_file == select(*flags)
    assert from_file.sources == ("corpus/a.jsonl", "corpus/b.parquet")
    assert (from_file.top_k, from_file.level, from_file.report, from_file.id_field) == (7, 0, False, "doc_id")


def test_one_source_may_be_a_string(tmp_path):
    assert select("--config", write(tmp_path, {"source": "a.jsonl", "target": ["t.jsonl"],
                                               "output": "o", "top-k": 1})).sources == ("a.jsonl",)


def test_yaml_template_keeps_command_line_escapes(tmp_path):
    """A template's \\n means newline in a file as on a command line; so does a real one."""
    path = tmp_path / "c.yaml"
    path.write_text("source: a.jsonl\ntarget: t.jsonl\noutput: o\ntop-k: 2\n"
                    "text-template: 'Problem: {prompt}\\nSolution: {canonical_solution}'\n"
                    'target-text-template: "{prompt}\\n{canonical_solution}"\n')
    config = select("--config", str(path))
    assert config.text_template == "Problem: {prompt}\nSolution: {canonical_solution}"
    assert config.target_text_template == "{prompt}\n{canonical_solution}"


def test_a_value_that_starts_with_a_dash(tmp_path):
    config = select("--config", write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl",
                                                 "output": "o", "top-k": 2, "min-score": -0.5,
                                                 "text-template": "--{body}"}))
    assert (config.min_score, config.text_template) == (-0.5, "--{body}")


# ---------------------------------------------------------------- the command line wins

def test_command_line_overrides_single_values(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o",
                            "top-k": 2, "compressor": "zstd"})
    config = select("--config", path, "--top-k", "9", "--output", "other")
    assert (config.top_k, config.output, config.compressor) == (9, "other", "zstd")
    # the config may come last on the command line: still the command line wins
    assert select("--top-k", "9", "--config", path).top_k == 9


def test_command_line_replaces_repeatable_flags(tmp_path):
    path = write(tmp_path, {"source": ["a.jsonl", "b.jsonl"], "target": ["t1.jsonl", "t2.jsonl"],
                            "output": "o", "top-k": 2})
    config = select("--config", path, "--source", "c.jsonl")
    assert config.sources == ("c.jsonl",) and config.targets == ("t1.jsonl", "t2.jsonl")


def test_command_line_mode_replaces_the_config_mode(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o",
                            "top-k": 2, "min-score": 0.1, "text-template": "{a} {b}"})
    config = select("--config", path, "--fraction", "0.5", "--text-field", "body")
    assert (config.top_k, config.fraction, config.min_score) == (None, 0.5, 0.1)
    assert (config.text_template, config.text_field) == (None, "body")


def test_a_config_switch_stays_on(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o", "top-k": 2,
                            "overwrite": True, "allow-contaminated": False})
    config = select("--config", path)
    assert config.overwrite and not config.allow_contaminated


# ---------------------------------------------------------------- Beam flags

def test_beam_flags_under_beam(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o", "top-k": 2,
                            "beam": ["--runner=PortableRunner", "--job_endpoint=embed",
                                     "--environment_type=LOOPBACK"]})
    _, options = parse_select_args(["--config", path])
    opts = options.get_all_options()
    assert (opts["runner"], opts["job_endpoint"], opts["environment_type"]) == (
        "PortableRunner", "embed", "LOOPBACK")
    # a Beam flag on the command line comes after the config's, so it wins
    _, options = parse_select_args(["--config", path, "--runner=FnApiRunner"])
    assert options.get_all_options()["runner"] == "FnApiRunner"


def test_our_flag_in_the_beam_list_is_refused(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o", "top-k": 2,
                            "beam": ["--num-shards=4"]})
    with pytest.raises(ValueError, match="--num-shards=4 is a zipfit-beam flag.*key num-shards"):
        select("--config", path)


# ---------------------------------------------------------------- errors

def err(tmp_path, data, name="c.yaml", *argv):
    with pytest.raises(ValueError) as e:
        select("--config", write(tmp_path, data, name), *argv)
    return str(e.value)


def test_unknown_key_is_named(tmp_path):
    msg = err(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "output": "o", "top-k": 2,
                         "tpo-k": 3})
    assert "unknown key 'tpo-k'" in msg and "zipfit-beam select" in msg
    # a Beam option as a top-level key is unknown too: Beam flags go under beam:
    assert "unknown key 'runner'" in err(tmp_path, {"runner": "DataflowRunner"})
    # dests are not keys: --format's is source_format
    assert "unknown key 'source_format'" in err(tmp_path, {"source_format": "jsonl"})


def test_the_same_flag_twice_is_refused(tmp_path):
    assert "top-k is given twice" in err(tmp_path, {"top-k": 2, "top_k": 3})


@pytest.mark.parametrize("data, expected", [
    ({"id-field": False}, "id-field takes a string, got False (quote it"),  # YAML `no`
    ({"top-k": 2.5}, "top-k takes an integer, got 2.5"),
    ({"top-k": "many"}, "top-k takes an integer"),
    ({"min-score": "high"}, "min-score takes a number"),
    ({"overwrite": "yes please"}, "overwrite takes true or false"),
    ({"output": ["a", "b"]}, "output takes one string"),
    ({"source": []}, "source must not be an empty list"),
    ({"source": [{"a": 1}]}, "source takes a string"),
    ({"beam": "--runner=X"}, "beam takes a list of Beam flags"),
])
def test_bad_values_are_clear(tmp_path, data, expected):
    assert expected in err(tmp_path, data)


def test_unreadable_files_are_clear(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        select("--config", str(tmp_path / "missing.yaml"))
    (tmp_path / "broken.json").write_text("{top-k: 1")
    with pytest.raises(ValueError, match="not valid JSON"):
        select("--config", str(tmp_path / "broken.json"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        select("--config", str(tmp_path / "list.yaml"))


def test_an_abbreviated_config_flag_is_refused(tmp_path):
    path = write(tmp_path, {"top-k": 2})
    with pytest.raises(ValueError, match="spell --config out"):
        select(*BASE, "--conf", path)


def test_argparse_still_checks_what_the_config_gives(tmp_path):
    with pytest.raises(SystemExit):  # --compressor's choices
        select("--config", write(tmp_path, {"source": "a", "target": "t", "output": "o",
                                            "top-k": 1, "compressor": "bzip9"}))


# ---------------------------------------------------------------- manifests and cli_config

CONFIGS = [
    BASE,
    # \n \t: newline, tab; \\n: a backslash and an n (which cli_config must escape back)
    BASE + ["--text-template", r"Problem: {prompt}\nSolution:\t{canonical_solution} \\ end \\n",
            "--target-text-field", "prompt", "--compressor", "isal", "--min-score", "0.2"],
    ["--source", "a.parquet", "--source", "b/*.avro", "--target", "t.csv", "--output", "gs://b/o",
     "--fraction", "0.25", "--format", "parquet", "--target-format", "hf",
     "--output-suffix", ".zstd.parquet", "--num-shards", "4", "--max-doc-bytes", "9000",
     "--chunk-bytes", "0", "--chunk-reduce", "mean", "--contamination-ngram", "0",
     "--allow-contaminated", "--group-field", "lang", "--no-report", "--write-scores",
     "--tokenizer", "tok.json", "--batch-size", "8", "--id-field", "doc",
     "--target-text-template", "{q}\\n{a}"],
    BASE[:-2] + ["--token-budget", "100000", "--text-field", "content", "--level", "6",
                 "--overwrite"],
]


@pytest.mark.parametrize("argv", CONFIGS, ids=range(len(CONFIGS)))
def test_cli_config_gives_back_the_same_config(tmp_path, argv):
    config = select(*argv)
    entries = cli_config(config)
    assert all(isinstance(k, str) and "_" not in k for k in entries)
    again = select("--config", write(tmp_path, entries, "c.json"))
    if config.overwrite:  # left out on purpose: it guards one invocation
        assert not again.overwrite
        again = select("--config", write(tmp_path, entries, "c.json"), "--overwrite")
    assert again == config
    # and through YAML, as a person would keep it
    assert select("--config", write(tmp_path, entries, "c.yaml"),
                  *(["--overwrite"] if config.overwrite else [])) == config


def test_a_manifest_is_read_through_its_cli_config(tmp_path):
    config = select(*CONFIGS[1])
    manifest = {"config": config.to_dict(), "cli_config": cli_config(config),
                "versions": {"zipfit_beam": "0"}, "counts": {"read": 1}}
    path = write(tmp_path, manifest, "manifest.json")
    assert select("--config", path) == config
    again = select("--config", path, "--output", "out2", "--top-k", "9")
    assert (again.output, again.top_k, again.text_template) == ("out2", 9, config.text_template)
    del manifest["cli_config"]
    with pytest.raises(ValueError, match="a manifest without a cli_config entry"):
        select("--config", write(tmp_path, manifest, "manifest.json"))


def test_cli_config_leaves_out_what_follows_the_machine():
    entries = cli_config(select(*BASE, "--scoring-threads", "3", "--progress-interval", "2"))
    assert not {"scoring-threads", "progress-interval", "overwrite", "config", "version"} & set(entries)
    assert entries["source"] == ["corpus/a.jsonl"] and entries["top-k"] == 5


# ---------------------------------------------------------------- reselect and align

def test_reselect_reads_a_config(tmp_path):
    path = write(tmp_path, {"scores": "run1", "source": ["a.jsonl"], "output": "run2",
                            "fraction": 0.1, "num_shards": 2})
    config, _ = parse_reselect_args(["--config", path, "--output", "run3"])
    assert (config.scores, config.sources, config.output, config.fraction, config.num_shards) == (
        "run1", ("a.jsonl",), "run3", 0.1, 2)
    with pytest.raises(ValueError, match="unknown key 'target'"):
        parse_reselect_args(["--config", write(tmp_path, {"target": "t.jsonl"})])


def test_align_reads_a_config(tmp_path):
    path = write(tmp_path, {"source": "a.jsonl", "target": "t.jsonl", "sample": 500, "seed": 3})
    config, _ = parse_align_args(["--config", path, "--seed", "4"])
    assert (config.sources, config.sample, config.seed) == (("a.jsonl",), 500, 4)
    with pytest.raises(ValueError, match="unknown key 'top-k'"):
        parse_align_args(["--config", write(tmp_path, {"top-k": 5})])
