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

from zipfit_beam import contamination, ncd
from zipfit_beam.config import AlignConfig, SelectConfig

LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "BundleBasedDirectRunner"}
DEFAULT_LOCAL_RUNNER = "FnApiRunner"
DEFAULT_PROGRESS_INTERVAL = 10.0  # seconds


def select_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zipfit-beam select",
        description="Select the source documents best aligned with a target set by ZIP-FIT. "
                    "Unknown --flags go to Beam's PipelineOptions.")
    p.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="source JSONL files (glob; .gz/.zst by extension); repeatable")
    p.add_argument("--target", action="append", required=True, metavar="PATTERN",
                   help="target JSONL files (glob); repeatable")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="output directory: selected-*, rejected-*, manifest.json")
    p.add_argument("--top-k", type=int, required=True, metavar="N",
                   help="number of documents to select")
    p.add_argument("--text-field", default="text", help="record field holding the text (default: text)")
    p.add_argument("--target-text-field", default=None,
                   help="text field of target records (default: --text-field)")
    p.add_argument("--id-field", default="id",
                   help="record field holding a stable id (default: id); "
                        "records without one get a hash of their text")
    p.add_argument("--compressor", default="gzip", choices=sorted(ncd.COMPRESSORS),
                   help="gzip (exact, default), or a faster approximation: lz4 (the paper's "
                        "best in its ablation), zstd, isal (DEFLATE by ISA-L)")
    p.add_argument("--level", type=int, default=None,
                   help="compression level (default: gzip 1, lz4 0, zstd 1, isal 1; gzip 0 is refused)")
    p.add_argument("--num-shards", type=int, default=0, help="output shards (default: runner decides)")
    p.add_argument("--output-suffix", default=".jsonl", choices=[".jsonl", ".jsonl.gz"],
                   help="suffix, and so compression, of the output shards (default: .jsonl)")
    p.add_argument("--scoring-threads", type=int, default=None,
                   help="scoring threads per worker process (default: all cores on a local "
                        "run, 1 on a distributed runner, which runs a process per core)")
    p.add_argument("--batch-size", type=int, default=64, help="documents per scoring batch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output of a previous run in --output")
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
    p.add_argument("--progress-interval", type=float, default=None, metavar="S",
                   help="seconds between progress lines while scoring (default: 10 on a "
                        "local run, 0 = off on a distributed runner)")
    return p


def _beam_options(beam_args: List[str]) -> Tuple[PipelineOptions, bool]:
    """Beam's options from the flags we did not parse; the local runner by default.
    Returns (options, whether the job runs locally)."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    local = standard.runner in LOCAL_RUNNERS
    if standard.runner is None:
        standard.runner = DEFAULT_LOCAL_RUNNER
        options.view_as(DirectOptions).direct_running_mode = "in_memory"
    return options, local


def _local_defaults(args, local: bool) -> Tuple[int, float]:
    """Scoring threads and progress interval: every core and progress lines locally; one
    thread (a process per core) and no progress lines on a distributed runner."""
    threads = args.scoring_threads or ((os.cpu_count() or 1) if local else 1)
    interval = args.progress_interval
    if interval is None:
        interval = DEFAULT_PROGRESS_INTERVAL if local else 0.0
    return threads, interval


def parse_select_args(argv: Optional[List[str]]) -> Tuple[SelectConfig, PipelineOptions]:
    """argv -> (SelectConfig, PipelineOptions). Raises SystemExit/ValueError on bad flags."""
    args, beam_args = select_parser().parse_known_args(argv)
    options, local = _beam_options(beam_args)
    threads, progress_interval = _local_defaults(args, local)
    config = SelectConfig(
        sources=tuple(args.source), targets=tuple(args.target), output=args.output.rstrip("/"),
        top_k=args.top_k, text_field=args.text_field, id_field=args.id_field,
        target_text_field=args.target_text_field, compressor=args.compressor,
        level=ncd.default_level(args.compressor) if args.level is None else args.level,
        num_shards=args.num_shards, output_suffix=args.output_suffix, scoring_threads=threads,
        batch_size=args.batch_size, overwrite=args.overwrite,
        contamination_ngram=args.contamination_ngram, allow_contaminated=args.allow_contaminated,
        group_field=args.group_field, report=args.report, progress_interval=progress_interval)
    return config, options


def align_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zipfit-beam align",
        description="Dataset-level ZIP-FIT alignment of a source corpus with a target set: the "
                    "mean of 1 - NCD over every (source document, target) pair, the x-axis of "
                    "the paper's Figure 3. Unknown --flags go to Beam's PipelineOptions.")
    p.add_argument("--source", action="append", required=True, metavar="PATTERN",
                   help="source JSONL files (glob); repeatable, taken together as one dataset")
    p.add_argument("--target", action="append", required=True, metavar="PATTERN",
                   help="target JSONL files (glob); repeatable")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="score a deterministic uniform sample of N source documents and report "
                        "the estimate with its standard error and a 95%% confidence interval "
                        "(default: every document, exact)")
    p.add_argument("--seed", type=int, default=0, help="which sample --sample draws (default: 0)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="also write the result as JSON to FILE (local or any Beam filesystem)")
    p.add_argument("--text-field", default="text", help="record field holding the text")
    p.add_argument("--target-text-field", default=None,
                   help="text field of target records (default: --text-field)")
    p.add_argument("--id-field", default="id", help="record field holding a stable id")
    p.add_argument("--compressor", default="gzip", choices=sorted(ncd.COMPRESSORS))
    p.add_argument("--level", type=int, default=None,
                   help="compression level (default: the compressor's, gzip 1)")
    p.add_argument("--scoring-threads", type=int, default=None,
                   help="scoring threads per worker process (default: all cores locally)")
    p.add_argument("--batch-size", type=int, default=64, help="documents per scoring batch")
    p.add_argument("--progress-interval", type=float, default=None, metavar="S",
                   help="seconds between progress lines (default: 10 locally, 0 = off remotely)")
    return p


def parse_align_args(argv: Optional[List[str]]) -> Tuple[AlignConfig, PipelineOptions]:
    """argv -> (AlignConfig, PipelineOptions)."""
    args, beam_args = align_parser().parse_known_args(argv)
    options, local = _beam_options(beam_args)
    threads, progress_interval = _local_defaults(args, local)
    config = AlignConfig(
        sources=tuple(args.source), targets=tuple(args.target), text_field=args.text_field,
        id_field=args.id_field, target_text_field=args.target_text_field,
        compressor=args.compressor,
        level=ncd.default_level(args.compressor) if args.level is None else args.level,
        sample=args.sample, seed=args.seed, output=args.output, scoring_threads=threads,
        batch_size=args.batch_size, progress_interval=progress_interval)
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
