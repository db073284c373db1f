"""Build and run the selection job: read -> parse -> score -> select -> write -> publish.

Run it from the command line (``zipfit-beam select ...``) or from Python::

    from zipfit_beam.pipeline import run
    run(["--source", "corpus/*.jsonl", "--target", "humaneval.jsonl", "--output", "out",
         "--top-k", "1000"])
"""

from __future__ import annotations

import json
import logging
import platform
from collections import Counter
import posixpath
import time
import uuid
import zlib
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, AsSingleton

import zipfit_beam
from zipfit_beam import contamination, formats, io, ncd, progress, tokens, writers
from zipfit_beam.config import SelectConfig
from zipfit_beam.options import cli_config
from zipfit_beam.records import Document, ScoredDocument
from zipfit_beam.summary import SummarizeSelection
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
                      ("bytes", pa.int64()), ("source", pa.string()), ("position", pa.int64()),
                      ("group", pa.string()), ("contaminated_by", pa.string())])


def score_row(d: ScoredDocument) -> dict:
    """One row of the scores table (``--write-scores``)."""
    return {"id": d.id, "score": d.score, "tokens": d.tokens, "bytes": d.text_bytes,
            "source": d.source, "position": d.position, "group": d.group,
            "contaminated_by": d.contaminated_by}


class MeterSelectedDoFn(beam.DoFn):
    """Counts the selected documents and their tokens in Beam Metrics counters (``selected``,
    ``selected_tokens``), so the manifest's counts show in the runner's UI; emits nothing."""

    def __init__(self):
        self._selected = Metrics.counter("zipfit", "selected")
        self._tokens = Metrics.counter("zipfit", "selected_tokens")

    def process(self, doc: ScoredDocument):
        self._selected.inc()
        self._tokens.inc(doc.tokens)
        return ()


def selection_facts(selected, cut) -> dict:
    """Side inputs for the manifest: how many documents and tokens were selected, the cut
    (also counted in Metrics)."""
    selected | "MeterSelected" >> beam.ParDo(MeterSelectedDoFn())
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


CONTAMINATED_LISTED = 1000  # contaminated documents named in the manifest (the count is exact)


def contamination_facts(config: SelectConfig, targets: Sequence[Document]) -> dict:
    """What the launcher knows about the guard before the job: its settings and the targets
    too short to be looked for (see ``contamination``)."""
    n = config.contamination_ngram
    if not n:
        return {"enabled": False}
    unguarded = sorted(d.id for d in targets if not contamination.is_guarded(d.text, n))
    if unguarded:
        _LOG.warning("contamination guard: %d target(s) have fewer than %d tokens and are not "
                     "looked for: %s", len(unguarded), min(n, contamination.MIN_TARGET_TOKENS),
                     ", ".join(unguarded[:10]))
    return {"enabled": True, "ngram": n, "excluded": not config.allow_contaminated,
            "min_target_tokens": min(n, contamination.MIN_TARGET_TOKENS),
            "targets_guarded": len(targets) - len(unguarded), "targets_unguarded": unguarded,
            "normalization": "lowercase; tokens are runs of letters and digits"}


class _AssembleSelect:
    """Manifest facts of a select run from its side inputs: counts, reasons, threshold and
    the contamination guard's findings (``guard``: ``contamination_facts``)."""

    def __init__(self, guard: dict):
        self._guard = guard

    def __call__(self, read, scored, rejected, selected, selected_tokens, reasons, cut,
                 contamination=(None, ())):
        contaminated, listed = contamination
        guard = dict(self._guard)
        if guard["enabled"]:
            guard["documents"] = [{"id": h.id, "source": h.source, "position": h.position,
                                   "score": h.score, "target": h.target_id} for h in listed]
            guard["documents_listed"] = len(listed)
        counts = {"read": read, "scored": scored, "rejected": rejected, "selected": selected,
                  "selected_tokens": selected_tokens,
                  "contaminated": contaminated if guard["enabled"] else None}
        return {"counts": counts, "rejected_by_reason": dict(sorted(reasons.items())),
                "threshold": _threshold_json(cut.threshold), "contamination": guard}


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
        config.level, config.scoring_threads, config.batch_size, group_field=config.group_field,
        contamination_ngram=config.contamination_ngram,
        allow_contaminated=config.allow_contaminated, tokenizer=config.tokenizer,
        progress_interval=config.progress_interval, **config.score_options)

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

    manifest = {"config": config.to_dict(), "cli_config": cli_config(config), "versions": versions(),
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
    if result.guarded is not None:  # how many, and the first CONTAMINATED_LISTED by id
        facts["contamination"] = AsSingleton(
            result.guarded.hits | "CountAndListContaminated" >> beam.CombineGlobally(
                beam.combiners.SingleInputTupleCombineFn(
                    beam.combiners.CountCombineFn(),
                    beam.combiners.TopCombineFn(CONTAMINATED_LISTED, reverse=True,
                                                key=lambda h: (h.id, h.source, h.position)))))

    # The report's data (summary.json), reduced from the scored keys by combiners; the
    # few example texts are read back from their files.
    summary = (result.scored, result.selected) | "SummarizeSelection" >> SummarizeSelection(
        (plan.format_overrides, config.source_text, config.id_field), config.group_field,
        tokens.counter_name(config.tokenizer))
    staged.append(summary | "WriteSummary" >> beam.ParDo(
        io.WriteJsonDoFn(posixpath.join(staging, io.SUMMARY_NAME), indent=None)))
    publish(p, config.output, staging, manifest, staged,
            _AssembleSelect(contamination_facts(config, targets)), facts)
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
    progress.reset()
    if config.progress_interval:
        progress.count_records_in_background(files)
    started = time.monotonic()
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, config, files, targets, plan)
    result = p.run()
    if wait:
        result.wait_until_finish()
        finish(config, time.monotonic() - started)
    return result


def finish(config: SelectConfig, wall_s: float) -> None:
    """After the job: print the summary table and write the report, from the manifest and
    summary the job published (skipped when it published none, e.g. a Dataflow dry run)."""
    from zipfit_beam import report

    manifest_path = posixpath.join(config.output, io.MANIFEST_NAME)
    if not io.FileSystems.exists(manifest_path):
        _LOG.info("no %s: no summary or report", manifest_path)
        return
    with io.FileSystems.open(manifest_path) as f:
        manifest = json.loads(f.read())
    written = report.write_report(config.output) if config.report else None
    print(report.format_summary(manifest, wall_s, written), flush=True)
