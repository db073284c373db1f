"""CLI conventions: ``--version``, help grouped by role with every default shown, one
worked example per subcommand (that really parses), each flag defined once."""

from __future__ import annotations

import argparse
import os
import re
import shlex

import pytest

import zipfit_beam
from tests.conftest import REPO
from zipfit_beam.cli import options
from zipfit_beam.cli import main as cli_main

PARSERS = {"select": options.select_parser, "reselect": options.reselect_parser,
           "align": options.align_parser, "worker-pool": options.worker_pool_parser}


def pyproject_version():
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def test_top_level_version(capsys):
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"zipfit-beam {pyproject_version()}"
    assert zipfit_beam.__version__ == pyproject_version()


@pytest.mark.parametrize("command", ["select", "reselect", "align", "report", "worker-pool"])
def test_subcommand_version(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main([command, "--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"zipfit-beam {pyproject_version()}"


def groups(parser):
    """{group title: [long flags]} as --help lists them."""
    return {g.title: [a.option_strings[-1] for a in g._group_actions]
            for g in parser._action_groups if g._group_actions}


def test_select_help_is_grouped_by_role():
    g = groups(options.select_parser())
    assert list(g) == ["options", "inputs", "selection", "scoring", "output", "runner"]
    assert g["options"] == ["--help", "--version", "--config"]
    assert {"--source", "--target", "--format", "--text-template", "--id-field"} <= set(g["inputs"])
    assert {"--top-k", "--token-budget", "--fraction", "--min-score",
            "--contamination-ngram"} <= set(g["selection"])
    assert {"--compressor", "--level", "--chunk-bytes", "--batch-size"} <= set(g["scoring"])
    assert {"--output", "--num-shards", "--output-suffix", "--output-format", "--overwrite",
            "--no-report"} <= set(g["output"])
    assert g["runner"] == ["--scoring-threads", "--progress-interval"]
    text = options.select_parser().format_help()
    assert "Any other --flag goes to Beam's PipelineOptions" in text


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_default_is_shown(command):
    """Each option's help says its default (the formatter adds it where the text does not),
    except required ones and the modes of a required exclusive group."""
    parser = PARSERS[command]()
    in_required_group = {a for grp in parser._mutually_exclusive_groups if grp.required
                         for a in grp._group_actions}
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.required or action in in_required_group:
            continue
        shown = formatter._expand_help(action)
        if "default" not in shown:
            missing.append(action.option_strings)
    assert not missing, f"{command}: no default in the help of {missing}"


def test_defaults_appear_with_their_values():
    text = " ".join(options.select_parser().format_help().split())
    for fragment in ("--batch-size N documents per scoring batch (default: 256)",
                     "(default: 0, chosen from the data size: one per ~128 MiB of records)",
                     "(default: 13; 0: no check)",
                     "replace the output of a previous run in --output (default: off)"):
        assert fragment in text
    assert "runner decides" not in text


@pytest.mark.parametrize("command", sorted(PARSERS) + ["report"])
def test_each_subcommand_has_a_worked_example(command, capsys):
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    text = capsys.readouterr().out
    assert "\nexample:\n  zipfit-beam " + command in text


@pytest.mark.parametrize("command, parse", [
    ("select", options.parse_select_args), ("reselect", options.parse_reselect_args),
    ("align", options.parse_align_args),
    ("worker-pool", lambda argv: options.worker_pool_parser().parse_args(argv))])
def test_the_examples_parse(command, parse):
    epilog = PARSERS[command]().epilog
    lines = epilog.split("\n", 1)[1].replace("\\\n", " ").splitlines()
    argv = shlex.split(lines[0])
    assert argv[:2] == ["zipfit-beam", command]
    parse(argv[2:])


def test_shard_and_suffix_flags_are_defined_once():
    with open(options.__file__) as f:
        source = f.read()
    for flag in ("--num-shards", "--output-suffix", "--output", "--overwrite", "--source"):
        assert source.count(f'"{flag}"') <= (2 if flag in ("--output", "--source") else 1), flag
    select = {a.dest: a.help for a in options.select_parser()._actions}
    reselect = {a.dest: a.help for a in options.reselect_parser()._actions}
    assert "chosen from the data size" in select["num_shards"] and \
        "chosen from the data size" in reselect["num_shards"]
    assert "selected-*/rejected-*" in select["num_shards"]
    assert "rejected" not in reselect["num_shards"]  # reselect writes selected-* only


def test_top_level_usage_names_config_and_version(capsys):
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--version" in out and "--config FILE" in out


def test_main_leaves_the_garbage_collector_as_it_found_it(tmp_path, monkeypatch):
    # main() freezes what exists and raises the young generation's threshold while a command
    # runs (cli.main.quiet_collector), and undoes both after it, even when the command fails.
    import contextlib
    import gc
    import sys
    module = sys.modules[cli_main.__module__]
    threshold, frozen, seen = gc.get_threshold(), gc.get_freeze_count(), {}

    @contextlib.contextmanager
    def spying(original=module.quiet_collector):
        with original():
            seen["during"] = gc.get_threshold()
            yield

    monkeypatch.setattr(module, "quiet_collector", spying)
    code = cli_main(["select", "--source", str(tmp_path / "none-*.jsonl"), "--target",
                     str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "out"), "--top-k", "1"])
    assert code == 2 and seen["during"][0] == 50_000
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen
