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
import os
from typing import List, Optional, Tuple

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from zipfit_beam import formats
from zipfit_beam.io.templates import unescape_cli
from zipfit_beam.jobs.config import DEFAULT_CHUNK_BYTES, AlignConfig, ReselectConfig, SelectConfig
from zipfit_beam.score import contamination, ncd

__all__ = ["select_parser", "add_input_flags", "add_scoring_flags", "add_selection_flags",
           "add_output_flags", "add_overwrite_flag", "reselect_parser", "parse_select_args",
           "align_parser", "parse_align_args", "parse_report_args", "parse_reselect_args",
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


def select_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zipfit-beam select",
        description="Select the source documents best aligned with a target set by ZIP-FIT. "
                    "Unknown --flags go to Beam's PipelineOptions.")
    add_input_flags(p)
    p.add_argument("--output", required=True, metavar="DIR",
                   help="output directory: selected-*, rejected-*, manifest.json, report.html")
    add_selection_flags(p)
    p.add_argument("--num-shards", type=int, default=0, help="output shards (default: runner decides)")
    p.add_argument("--output-format", default=None, choices=formats.SOURCE_FORMATS,
                   help="format of the output shards (default: that of the sources)")
    p.add_argument("--output-suffix", default=None, choices=list(formats.OUTPUT_SUFFIXES),
                   metavar="SUFFIX",
                   help="suffix, and so compression, of the output shards: "
                        + ", ".join(formats.OUTPUT_SUFFIXES)
                        + " (default: .jsonl, .parquet or .avro after the output format)")
    add_scoring_flags(p)
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="count tokens with this Hugging Face tokenizer.json (needs the "
                        "'tokenizers' package; default: a regex count close to GPT-style BPE)")
    p.add_argument("--write-scores", action="store_true",
                   help="also write every scored document's id, score, tokens, bytes, source "
                        "and position to DIR/scores/scores-*.parquet (for zipfit-beam reselect)")
    p.add_argument("--contamination-ngram", type=int, default=contamination.DEFAULT_NGRAM,
                   metavar="N", help="leave out documents sharing a run of N normalized tokens "
                   f"with a target (default: {contamination.DEFAULT_NGRAM}; 0: no check)")
    p.add_argument("--allow-contaminated", action="store_true",
                   help="keep contaminated documents in the selection (still counted and listed)")
    p.add_argument("--group-field", default=None, metavar="F",
                   help="record field the report breaks the corpus and selection down by "
                        "(e.g. source)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html and its plots")
    add_overwrite_flag(p)
    return p


def add_input_flags(p: argparse.ArgumentParser) -> None:
    """Sources, targets, their formats, where the text and id are (select and align)."""
    p.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="source files (glob, local or gs://): JSONL (.jsonl/.json, .gz/.zst/.bz2/"
                        ".xz by extension), Parquet (.parquet), Avro (.avro); repeatable")
    p.add_argument("--target", action="append", required=True, metavar="PATTERN",
                   help="target files as for --source, .csv/.tsv/.arrow/.txt (read by `datasets`), "
                        "a save_to_disk directory [DIR:SPLIT], or hf:NAME[:CONFIG][:SPLIT] "
                        "from the Hugging Face Hub; repeatable")
    p.add_argument("--format", dest="source_format", default="auto",
                   choices=("auto",) + formats.SOURCE_FORMATS,
                   help="format of the source files (default: auto, from each file's name)")
    p.add_argument("--target-format", default="auto", choices=("auto",) + formats.TARGET_FORMATS,
                   help="format of the target files (default: auto, from each file's name; "
                        "hf: read them with datasets.load_dataset)")
    p.add_argument("--text-field", default=None, help="record field holding the text (default: text)")
    p.add_argument("--target-text-field", default=None,
                   help="text field of target records (default: --text-field)")
    p.add_argument("--text-template", default=None, metavar="TEMPLATE",
                   help="build the text from several fields instead of --text-field, e.g. "
                        "'Problem: {prompt}\\nSolution: {canonical_solution}'; plain {field} "
                        "placeholders only; \\n and \\t are newline and tab")
    p.add_argument("--target-text-template", default=None, metavar="TEMPLATE",
                   help="template for target records (default: --target-text-field, else as sources)")
    p.add_argument("--id-field", default="id",
                   help="record field holding a stable id (default: id); "
                        "records without one get a hash of their text")


def add_scoring_flags(p: argparse.ArgumentParser) -> None:
    """How documents are scored, and progress lines while they are (select and align)."""
    p.add_argument("--compressor", default="gzip", choices=sorted(ncd.COMPRESSORS),
                   help="gzip (exact, default), or a faster approximation: lz4 (the paper's "
                        "best in its ablation), zstd, isal (DEFLATE by ISA-L)")
    p.add_argument("--level", type=int, default=None,
                   help="compression level (default: gzip 1, lz4 0, zstd 1, isal 1; gzip 0 is refused)")
    p.add_argument("--scoring-threads", type=int, default=None,
                   help="scoring threads per worker process (default: all cores on a local "
                        "run, 1 on a distributed runner, which runs a process per core)")
    p.add_argument("--batch-size", type=int, default=64, help="documents per scoring batch")
    p.add_argument("--max-doc-bytes", type=int, default=None, metavar="N",
                   help="score only the first N bytes (UTF-8) of each document")
    p.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, metavar="N",
                   help="score documents longer than N bytes chunk by chunk (default: "
                        f"{DEFAULT_CHUNK_BYTES}, deflate's window; 0: score every document whole)")
    p.add_argument("--chunk-reduce", default="max", choices=["max", "mean"],
                   help="document score from its chunk scores (default: max)")
    p.add_argument("--progress-interval", type=float, default=None, metavar="S",
                   help="seconds between progress lines while scoring (default: "
                        f"{DEFAULT_PROGRESS_INTERVAL:g} on a local run, 0 = off on a distributed runner)")


def add_selection_flags(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--top-k", type=int, metavar="N", help="select the N best documents")
    mode.add_argument("--token-budget", type=int, metavar="T",
                      help="select the best documents up to T tokens in all: the ranking is "
                           "walked best first and stops at the first document that does not fit")
    mode.add_argument("--fraction", type=float, metavar="P",
                      help="select the best floor(P x N) documents, 0 < P <= 1; N: the scored "
                           "documents the contamination guard leaves as candidates")
    p.add_argument("--min-score", type=float, metavar="S", default=None,
                   help="only documents scoring >= S can be selected (with any mode)")


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-shards", type=int, default=0,
                   help="selected-* shards (default: one per ~128 MiB of selected records)")
    p.add_argument("--output-suffix", default=None, choices=list(formats.OUTPUT_SUFFIXES),
                   metavar="SUFFIX", help="suffix, and so format and compression, of the "
                   "output shards (default: as the scoring run's output)")
    add_overwrite_flag(p)


def add_overwrite_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output of a previous run in --output")


def reselect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zipfit-beam reselect",
        description="Make a new selection from the scores a previous 'select --write-scores' "
                    "run saved, without rescoring. Unknown --flags go to Beam's PipelineOptions.")
    p.add_argument("--scores", required=True, metavar="DIR",
                   help="output directory of a 'select --write-scores' run (scores/ and manifest.json)")
    p.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="the source files that run read (to copy the selected records from)")
    p.add_argument("--output", required=True, metavar="DIR", help="output directory")
    add_selection_flags(p)
    add_output_flags(p)
    return p


def _beam_options(beam_args: List[str]) -> Tuple[PipelineOptions, bool]:
    """PipelineOptions from the flags we do not know; a local in-memory runner by default.
    Returns the options and whether the runner is local."""
    options = PipelineOptions(beam_args)
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
        chunk_reduce=args.chunk_reduce, progress_interval=interval)


def parse_select_args(argv: Optional[List[str]]) -> Tuple[SelectConfig, PipelineOptions]:
    """argv -> (SelectConfig, PipelineOptions). Raises SystemExit/ValueError on bad flags."""
    args, beam_args = select_parser().parse_known_args(argv)
    options, local = _beam_options(beam_args)
    config = SelectConfig(
        **_input_settings(args, local), output=args.output.rstrip("/"), top_k=args.top_k,
        num_shards=args.num_shards, output_suffix=args.output_suffix, overwrite=args.overwrite,
        output_format=args.output_format, token_budget=args.token_budget,
        fraction=args.fraction, min_score=args.min_score, tokenizer=args.tokenizer,
        write_scores=args.write_scores, contamination_ngram=args.contamination_ngram,
        allow_contaminated=args.allow_contaminated, group_field=args.group_field,
        report=args.report)
    return config, options


def align_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zipfit-beam align",
        description="Dataset-level ZIP-FIT alignment of a source corpus with a target set: the "
                    "mean of 1 - NCD over every (source document, target) pair, the x-axis of "
                    "the paper's Figure 3. Unknown --flags go to Beam's PipelineOptions.")
    add_input_flags(p)
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="score a deterministic uniform sample of N source documents and report "
                        "the estimate with its standard error and a 95%% confidence interval "
                        "(default: every document, exact)")
    p.add_argument("--seed", type=int, default=0, help="which sample --sample draws (default: 0)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="also write the result as JSON to FILE (local or any Beam filesystem)")
    add_scoring_flags(p)
    return p


def parse_align_args(argv: Optional[List[str]]) -> Tuple[AlignConfig, PipelineOptions]:
    """argv -> (AlignConfig, PipelineOptions)."""
    args, beam_args = align_parser().parse_known_args(argv)
    options, local = _beam_options(beam_args)
    config = AlignConfig(**_input_settings(args, local), sample=args.sample, seed=args.seed,
                         output=args.output)
    if not local and not config.output:
        raise ValueError("--output FILE is required with a distributed runner (the result "
                         "is written there, e.g. gs://bucket/alignment.json)")
    return config, options


def parse_report_args(argv: Optional[List[str]]) -> str:
    """``zipfit-beam report DIR`` -> DIR."""
    p = argparse.ArgumentParser(
        prog="zipfit-beam report",
        description="(Re)write report.html and its plots for a finished selection.")
    p.add_argument("output", metavar="DIR", help="the --output directory of a finished run")
    return p.parse_args(argv).output.rstrip("/")


def parse_reselect_args(argv: Optional[List[str]]) -> Tuple[ReselectConfig, PipelineOptions]:
    """argv -> (ReselectConfig, PipelineOptions)."""
    args, beam_args = reselect_parser().parse_known_args(argv)
    options, _ = _beam_options(beam_args)
    config = ReselectConfig(
        scores=args.scores.rstrip("/"), sources=tuple(args.source), output=args.output.rstrip("/"),
        top_k=args.top_k, token_budget=args.token_budget, fraction=args.fraction,
        min_score=args.min_score, num_shards=args.num_shards, output_suffix=args.output_suffix,
        overwrite=args.overwrite)
    return config, options


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
    p = argparse.ArgumentParser(
        prog="zipfit-beam worker-pool",
        description="Serve a Beam SDK worker pool for --environment_type=EXTERNAL runs "
                    "(a Flink TaskManager's sidecar). Unlike Beam's worker_pool_main, it "
                    "listens on one address only.")
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
