"""Build and run the selection job: read -> parse -> score -> select -> write -> publish.

Run it from the command line (``zipfit-beam select ...``) or from Python::

    from zipfit_beam.pipeline import run
    run(["--source", "corpus/*.jsonl", "--target", "humaneval.jsonl", "--output", "out",
         "--top-k", "1000"])
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
import posixpath
import uuid
import zlib
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.pvalue import AsList, AsSingleton

import zipfit_beam
from zipfit_beam import formats, io, ncd, tokens, writers
from zipfit_beam.config import SelectConfig
from zipfit_beam.records import Document, ScoredDocument
from zipfit_beam.transforms import ZipFitSelect

_LOG = logging.getLogger(__name__)


def versions() -> dict:
    return {"zipfit_beam": zipfit_beam.__version__, "apache_beam": beam.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION, "python": platform.python_version()}


def _threshold_json(key) -> Optional[dict]:
    if key is None:
        return None
    neg_score, doc_id, source, position = key
    return {"score": -neg_score, "id": doc_id, "source": source, "position": position}


def scores_schema():
    import pyarrow as pa
    return pa.schema([("id", pa.string()), ("score", pa.float64()), ("tokens", pa.int64()),
                      ("bytes", pa.int64()), ("source", pa.string()), ("position", pa.int64())])


def score_row(d: ScoredDocument) -> dict:
    """One row of the scores table (``--write-scores``)."""
    return {"id": d.id, "score": d.score, "tokens": d.tokens, "bytes": d.text_bytes,
            "source": d.source, "position": d.position}


def selection_facts(selected, cut) -> dict:
    """Side inputs for the manifest: how many documents and tokens were selected, the cut."""
    return {
        "selected": AsSingleton(selected | "CountSelected" >> beam.combiners.Count.Globally()),
        "selected_tokens": AsSingleton(selected
                                       | "SelectedTokens" >> beam.Map(lambda d: d.tokens)
                                       | "SumSelectedTokens" >> beam.CombineGlobally(sum)),
        "cut": AsSingleton(cut),
    }


def publish(p, output: str, staging: str, manifest: dict, staged: list, assemble, facts: dict):
    """Move the staged files into ``output`` and write the manifest, once everything is
    written. ``assemble(**facts) -> dict`` turns the side inputs into manifest entries."""
    all_staged = tuple(staged) | "AllStaged" >> beam.Flatten()
    return (p
            | "PublishTrigger" >> beam.Create([None])
            | "PublishOutput" >> beam.ParDo(_PublishDoFn(output, staging, manifest, assemble),
                                            AsList(all_staged), **facts))


class _PublishDoFn(io.PublishOutputDoFn):
    """Assembles the manifest facts from the side inputs, then publishes."""

    def __init__(self, output_dir, staging_dir, manifest, assemble):
        super().__init__(output_dir, staging_dir, manifest)
        self._assemble = assemble

    def process(self, unused, staged_files, **side):
        yield from super().process(unused, staged_files, **self._assemble(**side))


def _assemble_select(read, scored, rejected, selected, selected_tokens, reasons, cut):
    counts = {"read": read, "scored": scored, "rejected": rejected, "selected": selected,
              "selected_tokens": selected_tokens}
    return {"counts": counts, "rejected_by_reason": dict(sorted(reasons.items())),
            "threshold": _threshold_json(cut.threshold)}


def build_pipeline(p: beam.Pipeline, config: SelectConfig, files: Sequence,
                   targets: Sequence[Document], plan: Optional[writers.OutputPlan] = None):
    """Add the whole job to ``p``. ``files``: the resolved source files (paths, or
    ``(path, format)`` pairs from ``io.resolve_sources``); ``targets``: the parsed target
    documents (see ``io.load_targets``); ``plan``: how the output is written (default:
    ``writers.plan_output`` from the config). Returns the ZipFitResult."""
    files = [(f, formats.detect_format(f)) if isinstance(f, str) else tuple(f) for f in files]
    if plan is None:
        plan = writers.plan_output(files, config.output_format, config.output_suffix,
                                   config.num_shards, config.source_text)
    staging = posixpath.join(config.output, f"_staging-{uuid.uuid4().hex[:12]}")
    result = p | "ZipFitSelect" >> ZipFitSelect(
        files, targets, config.rule, config.source_text, config.id_field, config.compressor,
        config.level, config.scoring_threads, config.batch_size,
        max_doc_bytes=config.max_doc_bytes, chunk_bytes=config.chunk_bytes,
        chunk_reduce=config.chunk_reduce, tokenizer=config.tokenizer)

    staged = [result.selected | "WriteSelected" >> writers.WriteSelected(
                  plan, staging, config.source_text, config.id_field),
              result.rejected | "WriteRejected" >> writers.WriteRejected(plan, staging)]
    if config.write_scores:
        staged.append(result.scored
                      | "ScoreRows" >> beam.Map(score_row)
                      | "WriteScores" >> beam.io.WriteToParquet(
                          posixpath.join(staging, io.SCORES_DIR, "scores"), scores_schema(),
                          file_name_suffix=".parquet", shard_name_template="-SSSSS-of-NNNNN"))

    def count(pcoll, name):
        return AsSingleton(pcoll | f"Count{name}" >> beam.combiners.Count.Globally())

    manifest = {"config": config.to_dict(), "versions": versions(),
                "kernel": ncd.kernel_name(config.compressor, config.level),
                "selection": dict(config.rule.to_dict(),
                                  token_counter=tokens.counter_name(config.tokenizer)),
                "targets": {"count": len(targets), "files": sorted({d.source for d in targets})},
                "sources": {"files": len(files),
                            "formats": dict(sorted(Counter(f for _, f in files).items()))},
                "output": plan.describe()}
    reasons = (result.rejected
               | "RejectReasons" >> beam.Map(lambda d: d.reason)
               | "CountByReason" >> beam.combiners.Count.PerElement()
               | "ReasonsAsDict" >> beam.combiners.ToDict())
    facts = dict(selection_facts(result.selected, result.cut),
                 read=AsSingleton(result.read), scored=count(result.scored, "Scored"),
                 rejected=count(result.rejected, "Rejected"), reasons=AsSingleton(reasons))
    publish(p, config.output, staging, manifest, staged, _assemble_select, facts)
    return result


def check_output(output: str, overwrite: bool) -> None:
    old = io.existing_outputs(output)
    if old and not overwrite:
        raise FileExistsError(
            f"{output} already holds the output of a previous run ({len(old)} files, e.g. "
            f"{old[0]}); choose another --output or pass --overwrite")


def run(argv: Optional[List[str]] = None, wait: bool = True):
    """Parse flags, check inputs, build and run the job; returns the PipelineResult.

    ``wait=False`` returns once the runner has accepted the job (a Dataflow Flex Template
    launcher must exit then; the job itself writes ``manifest.json`` when it is done)."""
    from zipfit_beam.options import parse_select_args

    config, pipeline_options = parse_select_args(argv)
    files = io.resolve_sources(config.sources, config.source_format)
    targets = io.load_targets(config.targets, config.target_text, config.id_field,
                              config.target_format)
    plan = writers.plan_output(files, config.output_format, config.output_suffix,
                               config.num_shards, config.source_text)
    if config.tokenizer:
        tokens.load_counter(config.tokenizer)  # a bad tokenizer is an error before the job
    check_output(config.output, config.overwrite)
    _LOG.info("zipfit-beam: %d source files, %d targets, kernel=%s", len(files), len(targets),
              ncd.kernel_name(config.compressor, config.level))
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, config, files, targets, plan)
    result = p.run()
    if wait:
        result.wait_until_finish()
    return result
