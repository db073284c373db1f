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

from zipfit_beam.config import DEFAULT_CHUNK_BYTES, ReselectConfig, SelectConfig

LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "BundleBasedDirectRunner"}
DEFAULT_LOCAL_RUNNER = "FnApiRunner"


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
    add_selection_flags(p)
    p.add_argument("--text-field", default="text", help="record field holding the text (default: text)")
    p.add_argument("--target-text-field", default=None,
                   help="text field of target records (default: --text-field)")
    p.add_argument("--id-field", default="id",
                   help="record field holding a stable id (default: id); "
                        "records without one get a hash of their text")
    p.add_argument("--compressor", default="gzip", choices=["gzip"], help="compressor (default: gzip)")
    p.add_argument("--level", type=int, default=1, help="compression level (default: 1; 0 is refused)")
    add_output_flags(p)
    p.add_argument("--scoring-threads", type=int, default=None,
                   help="scoring threads per worker process (default: all cores on a local "
                        "run, 1 on a distributed runner, which runs a process per core)")
    p.add_argument("--batch-size", type=int, default=64, help="documents per scoring batch")
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="count tokens with this Hugging Face tokenizer.json (needs the "
                        "'tokenizers' package; default: a regex count close to GPT-style BPE)")
    p.add_argument("--max-doc-bytes", type=int, default=None, metavar="N",
                   help="score only the first N bytes (UTF-8) of each document")
    p.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, metavar="N",
                   help="score documents longer than N bytes chunk by chunk (default: "
                        f"{DEFAULT_CHUNK_BYTES}, deflate's window; 0: score every document whole)")
    p.add_argument("--chunk-reduce", default="max", choices=["max", "mean"],
                   help="document score from its chunk scores (default: max)")
    p.add_argument("--write-scores", action="store_true",
                   help="also write every scored document's id, score, tokens, bytes, source "
                        "and position to DIR/scores/scores-*.parquet (for zipfit-beam reselect)")
    return p


def add_selection_flags(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--top-k", type=int, metavar="N", help="select the N best documents")
    mode.add_argument("--token-budget", type=int, metavar="T",
                      help="select the best documents up to T tokens in all: the ranking is "
                           "walked best first and stops at the first document that does not fit")
    mode.add_argument("--fraction", type=float, metavar="P",
                      help="select the best floor(P x scored) documents, 0 < P <= 1")
    p.add_argument("--min-score", type=float, metavar="S", default=None,
                   help="only documents scoring >= S can be selected (with any mode)")


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-shards", type=int, default=0,
                   help="selected-* shards (default: one per ~128 MiB of selected records)")
    p.add_argument("--output-suffix", default=".jsonl", choices=[".jsonl", ".jsonl.gz"],
                   help="suffix, and so compression, of the output shards (default: .jsonl)")
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
    local = standard.runner in LOCAL_RUNNERS
    if standard.runner is None:
        standard.runner = DEFAULT_LOCAL_RUNNER
        options.view_as(DirectOptions).direct_running_mode = "in_memory"
    return options, local


def parse_select_args(argv: Optional[List[str]]) -> Tuple[SelectConfig, PipelineOptions]:
    """argv -> (SelectConfig, PipelineOptions). Raises SystemExit/ValueError on bad flags."""
    args, beam_args = select_parser().parse_known_args(argv)
    options, local = _beam_options(beam_args)
    threads = args.scoring_threads or ((os.cpu_count() or 1) if local else 1)
    config = SelectConfig(
        sources=tuple(args.source), targets=tuple(args.target), output=args.output.rstrip("/"),
        top_k=args.top_k, text_field=args.text_field, id_field=args.id_field,
        target_text_field=args.target_text_field, compressor=args.compressor, level=args.level,
        num_shards=args.num_shards, output_suffix=args.output_suffix, scoring_threads=threads,
        batch_size=args.batch_size, overwrite=args.overwrite, token_budget=args.token_budget,
        fraction=args.fraction, min_score=args.min_score, tokenizer=args.tokenizer,
        max_doc_bytes=args.max_doc_bytes, chunk_bytes=args.chunk_bytes,
        chunk_reduce=args.chunk_reduce, write_scores=args.write_scores)
    return config, options


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
