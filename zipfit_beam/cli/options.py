"""Command-line flags <-> SelectConfig + Beam PipelineOptions. The only module that parses.

Our flags are parsed here; every other ``--flag`` is handed to Beam's PipelineOptions
unchanged (``--runner``, ``--project``, worker counts, ...).

With no ``--runner``, the job runs locally on Beam's FnApiRunner (the engine behind
the DirectRunner for batch pipelines) in in-memory mode: one process, no listening
ports, no network. The DirectRunner itself first tries to download the Prism runner
from GitHub, which we avoid. Parallelism then comes from scoring threads, one per core.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
from typing import Callable, List, Optional, Tuple

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

import zipfit_beam
from zipfit_beam import formats
from zipfit_beam.io.templates import unescape_cli
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.jobs.config import DEFAULT_CHUNK_BYTES, AlignConfig, ReselectConfig, SelectConfig
from zipfit_beam.score import contamination, ncd
from zipfit_beam.score.spec import DEFAULT_BATCH_SIZE

__all__ = ["select_parser", "add_input_flags", "add_scoring_flags", "add_selection_flags",
           "add_output_flags", "add_runner_flags", "reselect_parser", "parse_select_args",
           "align_parser", "parse_align_args", "parse_report_args", "parse_reselect_args",
           "parse_with_config", "read_config", "config_argv", "cli_config", "version_line",
           "template_parameters_to_flags", "worker_pool_parser"]

LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "BundleBasedDirectRunner"}
DEFAULT_LOCAL_RUNNER = "FnApiRunner"
DEFAULT_PROGRESS_INTERVAL = 10.0  # seconds between progress lines on a local run

# Runners that would run the job but return a wrong result, refused up front. Keys are
# Beam's runner names, lower-cased, as ``--runner`` resolves them (``dask``, ``DaskRunner``
# or the class path all name the same runner).
UNSUPPORTED_RUNNERS = {
    "daskrunner": "Beam 2.77's DaskRunner drops the outputs a DoFn emits in finish_bundle, "
                  "which the Top-K combiner and the file writers use: it would select "
                  "nothing and write empty shards. Use the local default, Flink or Dataflow.",
}


HELP_WIDTH = 78  # description and group notes are wrapped here (the formatter keeps them as written)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description and the epilog's example commands as written, and ends every
    option's help with its default unless the help already says it: on/off flags are off
    by default; an option whose default is None says in its help what that means
    (``tests/unit/test_cli_conventions.py`` checks that every option does)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.required or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text + " (default: off)"
        if action.nargs == 0 or action.default is None:
            return text
        return text + " (default: %(default)s)"


def _parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subcommand's parser: our help layout, one worked example, ``--version``."""
    p = argparse.ArgumentParser(prog=prog, description=textwrap.fill(description, HELP_WIDTH),
                                formatter_class=HelpFormatter, epilog="example:\n  " + example)
    p.add_argument("--version", action="version", version=version_line())
    return p


def version_line() -> str:
    return f"zipfit-beam {zipfit_beam.__version__}"


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="read flags from a YAML or JSON file (local or any Beam filesystem), "
                        "keys named as the long flags (top-k: 1000, source: [a, b]; top_k also "
                        "accepted; Beam flags as a list under beam:), or from a finished run's "
                        "manifest.json (its cli_config entry); flags given here override it "
                        "(default: none)")


RUNNER_HELP = ("Any other --flag goes to Beam's PipelineOptions unchanged: --runner (default: "
               "the local in-process runner), --project, --num_workers, --sdk_worker_parallelism, ...")


def select_parser() -> argparse.ArgumentParser:
    p = _parser(
        "zipfit-beam select",
        "Select the source documents best aligned with a target set by ZIP-FIT. "
        "Unknown --flags go to Beam's PipelineOptions.",
        "zipfit-beam select --source 'corpus/part-*.jsonl.gz' --target humaneval.jsonl \\\n"
        "      --output out/ --top-k 10000\n"
        "  zipfit-beam select --config out/manifest.json --output out2/    (repeat a finished run)")
    add_config_flag(p)
    add_input_flags(p)
    selection = add_selection_flags(p)
    selection.add_argument(
        "--tokenizer", metavar="PATH", default=None,
        help="count tokens with this Hugging Face tokenizer.json (needs the 'tokenizers' "
             "package; default: a regex count close to GPT-style BPE)")
    selection.add_argument(
        "--contamination-ngram", type=int, default=contamination.DEFAULT_NGRAM, metavar="N",
        help="leave out documents sharing a run of N normalized tokens with a target "
             f"(default: {contamination.DEFAULT_NGRAM}; 0: no check)")
    selection.add_argument(
        "--allow-contaminated", action="store_true",
        help="keep contaminated documents in the selection (still counted and listed)")
    add_scoring_flags(p)
    output = add_output_flags(
        p, "output directory: selected-*, rejected-*, manifest.json, report.html",
        "default: .jsonl, .parquet or .avro after the output format")
    output.add_argument("--output-format", default=None, choices=formats.SOURCE_FORMATS,
                        help="format of the output shards (default: that of the sources)")
    output.add_argument("--write-scores", action="store_true",
                        help="also write every scored document's id, score, tokens, bytes, "
                             "source and position: the key tables, in DIR/scores/ (for "
                             "zipfit-beam reselect)")
    output.add_argument("--cache", default=None, metavar="DIR",
                        help="keep each source file's key table (its scores) in DIR (local or "
                             "gs://) and reuse it while the file and the scoring settings are "
                             "unchanged: a killed run resumes, a scheduled run rescores only "
                             "new or changed files (default: none, every file is scored)")
    output.add_argument("--group-field", default=None, metavar="F",
                        help="record field the report breaks the corpus and selection down by "
                             "(e.g. source; default: none, no breakdown)")
    output.add_argument("--no-report", dest="report", action="store_false",
                        help="do not write report.html and its plots")
    add_runner_flags(p)
    return p


def add_input_flags(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Sources, targets, their formats, where the text and id are (select and align)."""
    g = p.add_argument_group("inputs")
    g.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="source files (glob, local or gs://): JSONL (.jsonl/.json, .gz/.zst/.bz2/"
                        ".xz by extension), Parquet (.parquet), Avro (.avro); repeatable")
    g.add_argument("--target", action="append", required=True, metavar="PATTERN",
                   help="target files as for --source, .csv/.tsv/.arrow/.txt (read by `datasets`), "
                        "a save_to_disk directory [DIR:SPLIT], or hf:NAME[:CONFIG][:SPLIT] "
                        "from the Hugging Face Hub; repeatable")
    g.add_argument("--format", dest="source_format", default="auto",
                   choices=("auto",) + formats.SOURCE_FORMATS,
                   help="format of the source files (default: auto, from each file's name)")
    g.add_argument("--target-format", default="auto", choices=("auto",) + formats.TARGET_FORMATS,
                   help="format of the target files (default: auto, from each file's name; "
                        "hf: read them with datasets.load_dataset)")
    g.add_argument("--text-field", default=None, metavar="F",
                   help="record field holding the text (default: text)")
    g.add_argument("--text-template", default=None, metavar="TEMPLATE",
                   help="build the text from several fields instead of --text-field, e.g. "
                        "'Problem: {prompt}\\nSolution: {canonical_solution}'; plain {field} "
                        "placeholders only; \\n and \\t are newline and tab (default: none, "
                        "the text is --text-field)")
    g.add_argument("--target-text-field", default=None, metavar="F",
                   help="text field of target records (default: --text-field)")
    g.add_argument("--target-text-template", default=None, metavar="TEMPLATE",
                   help="template for target records (default: --target-text-field, "
                        "else as sources)")
    g.add_argument("--id-field", default="id", metavar="F",
                   help="record field holding a stable id (default: id); "
                        "records without one get a hash of their text")
    g.add_argument("--max-record-bytes", type=int, default=DEFAULT_MAX_RECORD_BYTES, metavar="N",
                   help="a record (JSONL line, Parquet/Avro row) larger than N bytes is a "
                        "record_too_large dead letter, never read whole (default: "
                        f"{DEFAULT_MAX_RECORD_BYTES} = {DEFAULT_MAX_RECORD_BYTES >> 20} MiB)")
    return g


def add_scoring_flags(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How documents are scored (select and align)."""
    g = p.add_argument_group("scoring")
    g.add_argument("--compressor", default="gzip", choices=sorted(ncd.COMPRESSORS),
                   help="gzip (exact, default), or a faster approximation: lz4 (the paper's "
                        "best in its ablation), zstd, isal (DEFLATE by ISA-L)")
    g.add_argument("--level", type=int, default=None, metavar="L",
                   help="compression level (default: gzip 1, lz4 0, zstd 1, isal 1; gzip 0 is refused)")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help="documents per scoring batch")
    g.add_argument("--max-doc-bytes", type=int, default=None, metavar="N",
                   help="score only the first N bytes (UTF-8) of each document (default: "
                        "no limit)")
    g.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, metavar="N",
                   help="score documents longer than N bytes chunk by chunk (default: "
                        f"{DEFAULT_CHUNK_BYTES}, deflate's window; 0: score every document whole)")
    g.add_argument("--chunk-reduce", default="max", choices=["max", "mean"],
                   help="document score from its chunk scores (default: max)")
    return g


def add_runner_flags(p: argparse.ArgumentParser, scoring: bool = True) -> argparse._ArgumentGroup:
    """Where and how fast the job runs: scoring threads and progress lines (their defaults
    depend on the runner), and the note that Beam's own flags pass through."""
    g = p.add_argument_group("runner", textwrap.fill(RUNNER_HELP, HELP_WIDTH))
    if scoring:
        g.add_argument("--scoring-threads", type=int, default=None, metavar="N",
                       help="scoring threads per worker process (default: all cores on a local "
                            "run, 1 on a distributed runner, which runs a process per core)")
        g.add_argument("--progress-interval", type=float, default=None, metavar="S",
                       help="seconds between progress lines while scoring (default: "
                            f"{DEFAULT_PROGRESS_INTERVAL:g} on a local run, 0 = off on a "
                            "distributed runner)")
    return g


def add_selection_flags(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("selection", "exactly one of --top-k, --token-budget, --fraction")
    mode = g.add_mutually_exclusive_group(required=True)
    mode.add_argument("--top-k", type=int, metavar="N", help="select the N best documents")
    mode.add_argument("--token-budget", type=int, metavar="T",
                      help="select the best documents up to T tokens in all: the ranking is "
                           "walked best first and stops at the first document that does not fit")
    mode.add_argument("--fraction", type=float, metavar="P",
                      help="select the best floor(P x N) documents, 0 < P <= 1; N: the scored "
                           "documents the contamination guard leaves as candidates")
    g.add_argument("--min-score", type=float, metavar="S", default=None,
                   help="only documents scoring >= S can be selected, with any mode (default: "
                        "no floor)")
    return g


def add_output_flags(p: argparse.ArgumentParser, output_help: str, suffix_default: str,
                     shards: str = "selected-*/rejected-*") -> argparse._ArgumentGroup:
    """--output, --num-shards, --output-suffix, --overwrite (select and reselect)."""
    g = p.add_argument_group("output")
    g.add_argument("--output", required=True, metavar="DIR", help=output_help)
    g.add_argument("--num-shards", type=int, default=0, metavar="N",
                   help=f"number of {shards} shards (default: 0, chosen from the data size: "
                        "one per ~128 MiB of records)")
    g.add_argument("--output-suffix", default=None, choices=list(formats.OUTPUT_SUFFIXES),
                   metavar="SUFFIX",
                   help="suffix, and so format and compression, of the output shards: "
                        + ", ".join(formats.OUTPUT_SUFFIXES) + f" ({suffix_default})")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the output of a previous run in --output")
    return g


def reselect_parser() -> argparse.ArgumentParser:
    p = _parser(
        "zipfit-beam reselect",
        "Make a new selection from the scores a previous 'select --write-scores' run saved, "
        "without rescoring. Unknown --flags go to Beam's PipelineOptions.",
        "zipfit-beam reselect --scores out/ --source 'corpus/part-*.jsonl.gz' \\\n"
        "      --output out-50k/ --top-k 50000")
    add_config_flag(p)
    g = p.add_argument_group("inputs")
    g.add_argument("--scores", required=True, metavar="DIR",
                   help="output directory of a 'select --write-scores' run (scores/ and manifest.json)")
    g.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="the source files that run read (to copy the selected records from)")
    add_selection_flags(p)
    add_output_flags(p, "output directory", "default: as the scoring run's output", "selected-*")
    add_runner_flags(p, scoring=False)
    return p


class _OneViewPerClass(PipelineOptions):
    """PipelineOptions that make each ``view_as(cls)`` view once.

    Beam asks for ``view_as(TypeOptions)`` for every transform it applies, and every view
    parses all the flags again with a fresh argparse parser: a 200-document select job made
    925 views, 0.38 s of CPU (0.01 s with this cache). A view keeps no state of its own:
    its attributes read and write the options' shared ``_all_options``. So one view per
    class behaves as fresh ones do. The cache is not copied or pickled with the options.
    """

    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})  # __dict__: PipelineOptions guards setattr
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def _beam_options(beam_args: List[str]) -> Tuple[PipelineOptions, bool]:
    """PipelineOptions from the flags we do not know; a local in-memory runner by default.
    Returns the options and whether the runner is local."""
    options = _OneViewPerClass(beam_args)
    standard = options.view_as(StandardOptions)
    _refuse_unsupported_runner(standard.runner)
    local = standard.runner in LOCAL_RUNNERS
    if standard.runner is None:
        standard.runner = DEFAULT_LOCAL_RUNNER
        options.view_as(DirectOptions).direct_running_mode = "in_memory"
    return options, local


def _input_settings(args, local: bool) -> dict:
    """The ``config.InputSettings`` fields from ``add_input_flags`` and ``add_scoring_flags``:
    on a local run every core scores and progress lines are on; on a distributed runner one
    thread (a process per core) and no progress lines (workers log elsewhere)."""
    if args.text_field is not None and args.text_template is not None:
        raise ValueError("give --text-field or --text-template, not both")
    if args.target_text_field is not None and args.target_text_template is not None:
        raise ValueError("give --target-text-field or --target-text-template, not both")
    interval = args.progress_interval
    if interval is None:
        interval = DEFAULT_PROGRESS_INTERVAL if local else 0.0
    return dict(
        sources=tuple(args.source), targets=tuple(args.target), source_format=args.source_format,
        target_format=args.target_format, text_field=args.text_field or "text",
        target_text_field=args.target_text_field,
        text_template=None if args.text_template is None else unescape_cli(args.text_template),
        target_text_template=None if args.target_text_template is None
        else unescape_cli(args.target_text_template),
        id_field=args.id_field, compressor=args.compressor,
        level=ncd.default_level(args.compressor) if args.level is None else args.level,
        scoring_threads=args.scoring_threads or ((os.cpu_count() or 1) if local else 1),
        batch_size=args.batch_size, max_doc_bytes=args.max_doc_bytes, chunk_bytes=args.chunk_bytes,
        chunk_reduce=args.chunk_reduce, progress_interval=interval,
        max_record_bytes=args.max_record_bytes)


def parse_select_args(argv: Optional[List[str]]) -> Tuple[SelectConfig, PipelineOptions]:
    """argv -> (SelectConfig, PipelineOptions). Raises SystemExit/ValueError on bad flags."""
    args, beam_args = parse_with_config(select_parser, argv)
    options, local = _beam_options(beam_args)
    _check_gcs_support(args.source + args.target + [args.output, args.cache or ""])
    config = SelectConfig(
        **_input_settings(args, local), output=args.output.rstrip("/"), top_k=args.top_k,
        num_shards=args.num_shards, output_suffix=args.output_suffix, overwrite=args.overwrite,
        output_format=args.output_format, token_budget=args.token_budget,
        fraction=args.fraction, min_score=args.min_score, tokenizer=args.tokenizer,
        write_scores=args.write_scores, cache=args.cache.rstrip("/") if args.cache else None,
        contamination_ngram=args.contamination_ngram,
        allow_contaminated=args.allow_contaminated, group_field=args.group_field,
        report=args.report)
    return config, options


def align_parser() -> argparse.ArgumentParser:
    p = _parser(
        "zipfit-beam align",
        "Dataset-level ZIP-FIT alignment of a source corpus with a target set: the mean of "
        "1 - NCD over every (source document, target) pair, the x-axis of the paper's "
        "Figure 3. Unknown --flags go to Beam's PipelineOptions.",
        "zipfit-beam align --source 'corpus/*.jsonl.gz' --target humaneval.jsonl --sample 10000")
    add_config_flag(p)
    add_input_flags(p)
    g = p.add_argument_group("sampling")
    g.add_argument("--sample", type=int, default=None, metavar="N",
                   help="score a deterministic uniform sample of N source documents and report "
                        "the estimate with its standard error and a 95%% confidence interval "
                        "(default: every document, exact)")
    g.add_argument("--seed", type=int, default=0, help="which sample --sample draws (default: 0)")
    add_scoring_flags(p)
    out = p.add_argument_group("output")
    out.add_argument("--output", default=None, metavar="FILE",
                     help="also write the result as JSON to FILE (local or any Beam filesystem; "
                          "default: printed only; required on a distributed runner)")
    add_runner_flags(p)
    return p


def parse_align_args(argv: Optional[List[str]]) -> Tuple[AlignConfig, PipelineOptions]:
    """argv -> (AlignConfig, PipelineOptions)."""
    args, beam_args = parse_with_config(align_parser, argv)
    options, local = _beam_options(beam_args)
    _check_gcs_support(args.source + args.target + [args.output or ""])
    config = AlignConfig(**_input_settings(args, local), sample=args.sample, seed=args.seed,
                         output=args.output)
    if not local and not config.output:
        raise ValueError("--output FILE is required with a distributed runner (the result "
                         "is written there, e.g. gs://bucket/alignment.json)")
    return config, options


def parse_report_args(argv: Optional[List[str]]) -> str:
    """``zipfit-beam report DIR`` -> DIR."""
    p = _parser("zipfit-beam report",
                "(Re)write report.html and its plots for a finished selection.",
                "zipfit-beam report out/")
    p.add_argument("output", metavar="DIR", help="the --output directory of a finished run")
    return p.parse_args(argv).output.rstrip("/")


def parse_reselect_args(argv: Optional[List[str]]) -> Tuple[ReselectConfig, PipelineOptions]:
    """argv -> (ReselectConfig, PipelineOptions)."""
    args, beam_args = parse_with_config(reselect_parser, argv)
    options, _ = _beam_options(beam_args)
    _check_gcs_support(args.source + [args.scores, args.output])
    config = ReselectConfig(
        scores=args.scores.rstrip("/"), sources=tuple(args.source), output=args.output.rstrip("/"),
        top_k=args.top_k, token_budget=args.token_budget, fraction=args.fraction,
        min_score=args.min_score, num_shards=args.num_shards, output_suffix=args.output_suffix,
        overwrite=args.overwrite)
    return config, options


# ---------------------------------------------------------------- --config FILE
#
# A config file holds flags as keys, named as the long flags without the dashes (``top-k``;
# ``top_k`` is accepted too). Its tokens go first, the command line after, so a flag given on
# the command line wins: a single-valued flag by coming last, a repeatable one (--source,
# --target) and each set of alternatives (--top-k | --token-budget | --fraction, --text-field
# | --text-template, ...) by dropping the config's entries when the command line gives one.
# Beam's own flags, which we do not know, go in a list under ``beam:``; an unknown key is an
# error (a typo must not be ignored). A manifest.json is read through its cli_config entry.

CONFIG_BEAM_KEY = "beam"
MANIFEST_CONFIG_KEY = "cli_config"
_NOT_IN_CONFIG = {"help", "version", "config"}
# Left out of a manifest's cli_config: their defaults follow the runner (scoring threads and
# progress lines) or guard one invocation (--overwrite); none changes what is selected.
_RUN_DEPENDENT = {"scoring_threads", "progress_interval", "overwrite"}
_FIELD_OF_DEST = {"source": "sources", "target": "targets"}
_TEMPLATE_DESTS = {"text_template", "target_text_template"}
# Alternatives that are not argparse groups (``_input_settings`` refuses both with a
# ValueError): a command line that gives one drops the config's other.
_ALTERNATIVES = ({"text_field", "text_template"}, {"target_text_field", "target_text_template"})


def _long_flag(action: argparse.Action) -> Optional[str]:
    return next((o[2:] for o in action.option_strings if o.startswith("--")), None)


def _flag_actions(parser: argparse.ArgumentParser) -> dict:
    """long flag name (no dashes) -> action, for the flags a config file may set."""
    return {name: a for a in parser._actions
            if (name := _long_flag(a)) is not None and name not in _NOT_IN_CONFIG}


def read_config(path: str) -> dict:
    """The flags of a config file: ``{key: value}``, keys as written. JSON when the name
    ends ``.json``, else YAML (which also reads JSON). A manifest.json gives its cli_config."""
    import yaml
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(path) as f:
            raw = f.read().decode("utf-8")
    except Exception as e:  # Beam wraps a missing or unreadable file in its own errors
        raise ValueError(f"--config {path}: cannot be read ({e})") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"--config {path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of flag names to values, "
                         f"got {type(data).__name__}")
    if "versions" in data and "counts" in data:  # a finished run's manifest.json
        if not isinstance(data.get(MANIFEST_CONFIG_KEY), dict):
            raise ValueError(f"--config {path}: a manifest without a {MANIFEST_CONFIG_KEY} "
                             "entry (only `select` writes one)")
        data = data[MANIFEST_CONFIG_KEY]
    return data


def _value_tokens(flag: str, action: argparse.Action, value, where: str) -> List[str]:
    """One config entry -> argv tokens (``--flag=value`` so a value may start with '-')."""
    def scalar(v):
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError(f"{where}: {flag} takes a {_kind(action)}, got {v!r}"
                             + (" (quote it: YAML reads yes/no/on/off as booleans)"
                                if isinstance(v, bool) else ""))
        if action.type is int and not isinstance(v, int):
            raise ValueError(f"{where}: {flag} takes an integer, got {v!r}")
        if action.type is float and isinstance(v, str):
            raise ValueError(f"{where}: {flag} takes a number, got {v!r}")
        return f"--{flag}={v}"

    if value is None:
        return []  # null: the flag's default
    if action.nargs == 0:  # on/off
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {flag} takes true or false, got {value!r}")
        return [f"--{flag}"] if value else []
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError(f"{where}: {flag} must not be an empty list")
        return [scalar(v) for v in values]
    if isinstance(value, (list, dict)):
        raise ValueError(f"{where}: {flag} takes one {_kind(action)}, got {value!r}")
    return [scalar(value)]


def _kind(action: argparse.Action) -> str:
    return {int: "integer", float: "number"}.get(action.type, "string")


def config_argv(factory: Callable[[], argparse.ArgumentParser], data: dict, path: str,
                command_line: List[str]) -> List[str]:
    """A config file's entries as argv tokens, less those the command line overrides:
    our flags first, then the Beam flags under ``beam:``."""
    parser = factory()
    flags = _flag_actions(parser)
    where = f"--config {path}"
    ours, beam_args, seen = {}, [], {}
    for key, value in data.items():
        if key == CONFIG_BEAM_KEY:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: {CONFIG_BEAM_KEY} takes a list of Beam flags, e.g. "
                                 "[--runner=PortableRunner, --job_endpoint=embed]")
            for arg in value:
                name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
                if name in flags:
                    raise ValueError(f"{where}: {arg} is a zipfit-beam flag, not a Beam one: "
                                     f"give it as the key {name}")
            beam_args += value
            continue
        flag = str(key).replace("_", "-")
        action = flags.get(flag)
        if action is None:
            raise ValueError(f"{where}: unknown key {key!r}: not a flag of "
                             f"`{parser.prog}` (see --help; Beam flags go in a list under "
                             f"{CONFIG_BEAM_KEY}:)")
        if flag in seen:
            raise ValueError(f"{where}: {flag} is given twice ({seen[flag]!r} and {key!r})")
        seen[flag] = key
        ours[action.dest] = _value_tokens(flag, action, value, where)
    for dest in _overridden(factory, command_line):
        ours.pop(dest, None)
    return [t for tokens in ours.values() for t in tokens] + beam_args


def _overridden(factory: Callable[[], argparse.ArgumentParser], command_line: List[str]) -> set:
    """The dests the command line sets, and every alternative of each (a member of the same
    mutually exclusive group): the config's values for them are dropped."""
    probe = factory()  # the same flags, with no defaults and nothing required
    for action in probe._actions:
        action.default, action.required = argparse.SUPPRESS, False
    for group in probe._mutually_exclusive_groups:
        group.required = False
    given = set(vars(probe.parse_known_args(command_line)[0]))
    groups = [{a.dest for a in g._group_actions} for g in probe._mutually_exclusive_groups]
    for dests in groups + list(_ALTERNATIVES):
        if dests & given:
            given |= dests
    return given


def _config_path(argv: List[str]) -> Optional[str]:
    """The file of ``--config FILE`` / ``--config=FILE`` (the last one given)."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path


def parse_with_config(factory: Callable[[], argparse.ArgumentParser],
                      argv: Optional[List[str]]) -> Tuple[argparse.Namespace, List[str]]:
    """``factory().parse_known_args(argv)``, with the flags of ``--config FILE`` put before
    the command line's (see above). Returns our flags and the Beam ones."""
    argv = list(sys.argv[1:] if argv is None else argv)
    path = _config_path(argv)
    if path is not None and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = config_argv(factory, read_config(path), path, argv) + argv
    args, beam_args = factory().parse_known_args(argv)
    if args.config != path:
        raise ValueError("spell --config out in full")  # an abbreviation would be ignored
    return args, beam_args


def _escape_cli(text: str) -> str:
    """The inverse of ``templates.unescape_cli``: a template as it is typed on a command line."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def cli_config(config: SelectConfig) -> dict:
    """A SelectConfig as the ``--config`` entries that make it again: ``{long flag: value}``
    in ``select --help`` order, lists for repeatable flags. Written to manifest.json as
    ``cli_config``, so ``select --config OUT/manifest.json --output OUT2`` repeats the run.
    Leaves out --scoring-threads, --progress-interval and --overwrite (``_RUN_DEPENDENT``)."""
    out = {}
    for flag, action in _flag_actions(select_parser()).items():
        if action.dest in _RUN_DEPENDENT:
            continue
        value = getattr(config, _FIELD_OF_DEST.get(action.dest, action.dest))
        if isinstance(action, argparse._StoreFalseAction):
            value = not value
        elif isinstance(value, tuple):
            value = list(value)
        elif action.dest in _TEMPLATE_DESTS and value is not None:
            value = _escape_cli(value)
        if action.dest == "text_field" and config.text_template is not None:
            continue  # filled in by default; the template is what counts
        if value is not None:
            out[flag] = value
    return out


def _check_gcs_support(paths: List[str]) -> None:
    """gs:// needs Beam's GCS filesystem, which comes with the ``gcp`` extra: say so at once."""
    if not any(p.startswith("gs://") for p in paths):
        return
    try:
        importlib.import_module("apache_beam.io.gcp.gcsfilesystem")  # needs google-cloud-storage
    except ImportError:
        raise ValueError("gs:// paths need Beam's GCS support: pip install 'zipfit-beam[gcp]'") from None


def _refuse_unsupported_runner(runner: Optional[str]) -> None:
    if runner is None:
        return
    name = runner.rsplit(".", 1)[-1].lower()
    reason = UNSUPPORTED_RUNNERS.get(name) or UNSUPPORTED_RUNNERS.get(name + "runner")
    if reason:
        raise ValueError(f"--runner={runner} is not supported: {reason}")


def template_parameters_to_flags(argv: List[str]) -> List[str]:
    """Dataflow Flex Template parameters -> ``select`` argv.

    The template launcher passes every parameter as ``--name=value``, so an on/off flag
    such as ``--overwrite`` arrives as ``--overwrite=true`` or ``--overwrite=false``; it
    becomes ``--overwrite`` or nothing. Other arguments pass unchanged."""
    switches = {opt for action in select_parser()._actions if action.nargs == 0
                for opt in action.option_strings if opt.startswith("--")}
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and flag in switches:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{flag} takes true or false, not {value!r}")
            if value.lower() == "true":
                out.append(flag)
        else:
            out.append(arg)
    return out


def worker_pool_parser() -> argparse.ArgumentParser:
    p = _parser(
        "zipfit-beam worker-pool",
        "Serve a Beam SDK worker pool for --environment_type=EXTERNAL runs (a Flink "
        "TaskManager's sidecar). Unlike Beam's worker_pool_main, it listens on one address only.",
        "zipfit-beam worker-pool --port 50000 --container-executable /opt/apache/beam/boot")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; the pool starts code on "
                        "request, keep it off the network)")
    p.add_argument("--port", type=int, default=50000,
                   help="port to listen on (default: 50000, as in Beam's SDK image; 0: any "
                        "free port, printed at start)")
    p.add_argument("--container-executable", default=None, metavar="PATH",
                   help="SDK container boot program that starts each worker (in the Beam SDK "
                        "image: /opt/apache/beam/boot, which also installs staged packages); "
                        "default: run workers directly in this Python")
    return p
