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
import posixpath
import time
import uuid
import zlib
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, AsSingleton

import zipfit_beam
from zipfit_beam import contamination, io, ncd, progress
from zipfit_beam.config import SelectConfig
from zipfit_beam.parsing import dead_letter_json, with_score
from zipfit_beam.records import Document
from zipfit_beam.io import SUMMARY_NAME
from zipfit_beam.summary import DescribeDocuments, SummarizeSelection
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


class CountElementsDoFn(beam.DoFn):
    """Counts the elements of a collection in a Beam Metrics counter; emits nothing."""

    def __init__(self, name: str):
        self._counter = Metrics.counter("zipfit", name)

    def process(self, _element):
        self._counter.inc()
        return ()


def build_pipeline(p: beam.Pipeline, config: SelectConfig, files: Sequence[str],
                   targets: Sequence[Document]):
    """Add the whole job to ``p``. ``files``: the resolved source files; ``targets``: the
    parsed target documents (see ``io.load_targets``). Returns the ZipFitResult."""
    staging = posixpath.join(config.output, f"_staging-{uuid.uuid4().hex[:12]}")
    result = p | "ZipFitSelect" >> ZipFitSelect(
        files, targets, config.top_k, config.text_field, config.id_field, config.compressor,
        config.level, config.scoring_threads, config.batch_size,
        guard_ngram=config.contamination_ngram, allow_contaminated=config.allow_contaminated,
        progress_interval=config.progress_interval)
    result.selected | "MeterSelected" >> beam.ParDo(CountElementsDoFn("selected"))

    def write(pcoll, name, to_line):
        return (pcoll
                | f"Format{name}" >> beam.Map(to_line)
                | f"Write{name}" >> beam.io.WriteToText(
                    posixpath.join(staging, name.lower()), file_name_suffix=config.output_suffix,
                    num_shards=config.num_shards, shard_name_template="-SSSSS-of-NNNNN"))

    selected_files = write(result.selected, "Selected", lambda d: with_score(d.record, d.score))
    rejected_files = write(result.rejected, "Rejected", dead_letter_json)

    def count(pcoll, name):
        return AsSingleton(pcoll | f"Count{name}" >> beam.combiners.Count.Globally())

    manifest = {"config": config.to_dict(), "versions": versions(),
                "kernel": ncd.kernel_name(config.compressor, config.level),
                "targets": {"count": len(targets), "files": sorted({d.source for d in targets})},
                "sources": {"files": len(files)},
                "contamination": contamination_facts(config, targets)}
    staged = (selected_files, rejected_files) | "AllStaged" >> beam.Flatten()
    reasons = (result.rejected
               | "RejectReasons" >> beam.Map(lambda d: d.reason)
               | "CountByReason" >> beam.combiners.Count.PerElement()
               | "ReasonsAsDict" >> beam.combiners.ToDict())

    # The report's data: facts about every scored document, reduced by combiners.
    describe = dict(text_field=config.text_field, group_field=config.group_field)
    if result.guarded is not None:
        scored_facts = (
            (result.guarded.clean | "DescribeClean" >> DescribeDocuments(**describe),
             result.guarded.contaminated
             | "DescribeContaminated" >> DescribeDocuments(**describe, contaminated=True))
            | "AllScoredFacts" >> beam.Flatten())
        hits = result.guarded.hits
    else:
        scored_facts = result.scored | "DescribeScored" >> DescribeDocuments(**describe)
        hits = p | "NoHits" >> beam.Create([])
    selected_facts = result.selected | "DescribeSelected" >> DescribeDocuments(**describe, selected=True)
    summary = (scored_facts, selected_facts) | "SummarizeSelection" >> SummarizeSelection(
        config.group_field)
    listed = hits | "ListContaminated" >> beam.combiners.Top.Smallest(
        CONTAMINATED_LISTED, key=lambda h: (h.id, h.source, h.position))
    (p
     | "PublishTrigger" >> beam.Create([None])
     | "PublishOutput" >> beam.ParDo(
         _PublishWithCountsDoFn(config.output, staging, manifest),
         AsList(staged),
         read=AsSingleton(result.read), scored=count(result.scored, "Scored"),
         rejected=count(result.rejected, "Rejected"), selected=count(result.selected, "Selected"),
         contaminated=count(hits, "Contaminated"), listed=AsSingleton(listed),
         reasons=AsSingleton(reasons), threshold=AsSingleton(result.threshold),
         summary=AsSingleton(summary)))
    return result


class _PublishWithCountsDoFn(io.PublishOutputDoFn):
    """Assembles the manifest facts (counts, threshold, contamination) from the side inputs
    and writes ``summary.json`` (the report's data) before the manifest."""

    def process(self, unused, staged_files, read, scored, rejected, selected, contaminated,
                listed, reasons, threshold, summary):
        guard = dict(self._manifest["contamination"])
        if guard["enabled"]:
            guard["documents"] = [
                {"id": h.id, "source": h.source, "position": h.position, "score": h.score,
                 "target": h.target_id, "matching_ngrams": h.windows} for h in listed]
            guard["documents_listed"] = len(listed)
        counts = {"read": read, "scored": scored, "rejected": rejected, "selected": selected,
                  "contaminated": contaminated if guard["enabled"] else None}
        # Staged like the shards, so it is published (moved) with them, before the manifest.
        summary_path = posixpath.join(self._staging_dir, SUMMARY_NAME)
        with io.FileSystems.create(summary_path) as f:
            f.write(json.dumps(summary, sort_keys=True).encode("utf-8"))
        yield from super().process(unused, list(staged_files) + [summary_path], counts=counts,
                                   rejected_by_reason=dict(sorted(reasons.items())),
                                   threshold=_threshold_json(threshold), contamination=guard)


def run(argv: Optional[List[str]] = None):
    """Parse flags, check inputs, build and run the job; returns the PipelineResult."""
    from zipfit_beam.options import parse_select_args

    config, pipeline_options = parse_select_args(argv)
    files = io.resolve_inputs(config.sources, "--source")
    targets = io.load_targets(config.targets, config.target_field, config.id_field)
    old = io.existing_outputs(config.output)
    if old and not config.overwrite:
        raise FileExistsError(
            f"{config.output} already holds the output of a previous run ({len(old)} files, e.g. "
            f"{old[0]}); choose another --output or pass --overwrite")
    _LOG.info("zipfit-beam: %d source files, %d targets, kernel=%s", len(files), len(targets),
              ncd.kernel_name(config.compressor, config.level))
    progress.reset()
    if config.progress_interval:
        progress.count_lines_in_background(files)
    started = time.monotonic()
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, config, files, targets)
    result = p.run()
    result.wait_until_finish()
    finish(config, time.monotonic() - started)
    return result


def finish(config: SelectConfig, wall_s: float) -> None:
    """After the job: print the summary table and write the report, from the manifest and
    summary the job published (skipped when the job published none, e.g. a template build)."""
    from zipfit_beam import report

    manifest_path = posixpath.join(config.output, io.MANIFEST_NAME)
    if not io.FileSystems.exists(manifest_path):
        _LOG.info("no %s yet: no summary or report", manifest_path)
        return
    with io.FileSystems.open(manifest_path) as f:
        manifest = json.loads(f.read())
    written = report.write_report(config.output) if config.report else None
    print(report.format_summary(manifest, wall_s, written), flush=True)
