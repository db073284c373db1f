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
from zipfit_beam import formats, io, ncd, writers
from zipfit_beam.config import SelectConfig
from zipfit_beam.records import Document
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
        files, targets, config.top_k, config.source_text, config.id_field, config.compressor,
        config.level, config.scoring_threads, config.batch_size)

    selected_files = result.selected | "WriteSelected" >> writers.WriteSelected(
        plan, staging, config.source_text, config.id_field)
    rejected_files = result.rejected | "WriteRejected" >> writers.WriteRejected(plan, staging)

    def count(pcoll, name):
        return AsSingleton(pcoll | f"Count{name}" >> beam.combiners.Count.Globally())

    manifest = {"config": config.to_dict(), "versions": versions(),
                "kernel": ncd.kernel_name(config.compressor, config.level),
                "targets": {"count": len(targets), "files": sorted({d.source for d in targets})},
                "sources": {"files": len(files),
                            "formats": dict(sorted(Counter(f for _, f in files).items()))},
                "output": plan.describe()}
    staged = (selected_files, rejected_files) | "AllStaged" >> beam.Flatten()
    reasons = (result.rejected
               | "RejectReasons" >> beam.Map(lambda d: d.reason)
               | "CountByReason" >> beam.combiners.Count.PerElement()
               | "ReasonsAsDict" >> beam.combiners.ToDict())
    (p
     | "PublishTrigger" >> beam.Create([None])
     | "PublishOutput" >> beam.ParDo(
         _PublishWithCountsDoFn(config.output, staging, manifest),
         AsList(staged),
         read=AsSingleton(result.read), scored=count(result.scored, "Scored"),
         rejected=count(result.rejected, "Rejected"), selected=count(result.selected, "Selected"),
         reasons=AsSingleton(reasons), threshold=AsSingleton(result.threshold)))
    return result


class _PublishWithCountsDoFn(io.PublishOutputDoFn):
    """Assembles the manifest facts (counts, threshold) from the side inputs."""

    def process(self, unused, staged_files, read, scored, rejected, selected, reasons, threshold):
        counts = {"read": read, "scored": scored, "rejected": rejected, "selected": selected}
        yield from super().process(unused, staged_files, counts=counts,
                                   rejected_by_reason=dict(sorted(reasons.items())),
                                   threshold=_threshold_json(threshold))


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
    old = io.existing_outputs(config.output)
    if old and not config.overwrite:
        raise FileExistsError(
            f"{config.output} already holds the output of a previous run ({len(old)} files, e.g. "
            f"{old[0]}); choose another --output or pass --overwrite")
    _LOG.info("zipfit-beam: %d source files, %d targets, kernel=%s", len(files), len(targets),
              ncd.kernel_name(config.compressor, config.level))
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, config, files, targets, plan)
    result = p.run()
    if wait:
        result.wait_until_finish()
    return result
