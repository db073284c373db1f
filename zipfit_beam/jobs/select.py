"""The selection job: read -> parse -> score -> guard -> select -> fetch and write -> summary
-> publish.

``ZipFitSelect`` is the transform (reading through selecting); ``build_pipeline`` adds the
writers, the summary and the publishing step; ``run`` parses flags, checks the inputs in
the launcher and runs the job. From Python::

    from zipfit_beam import run
    run(["--source", "corpus/*.jsonl", "--target", "humaneval.jsonl", "--output", "out",
         "--top-k", "1000"])
"""

from __future__ import annotations

import json
import logging
import platform
import posixpath
import time
import zlib
from collections import Counter
from typing import List, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, PCollection

import zipfit_beam
from zipfit_beam import formats
from zipfit_beam.io import publish as out
from zipfit_beam.io.files import InputFile, resolve_sources
from zipfit_beam.io.read import ReadDocuments
from zipfit_beam.io.targets import load_targets
from zipfit_beam.io.templates import TextSpec
from zipfit_beam.io.write import OutputPlan, WriteRejected, WriteSelected, plan_output
from zipfit_beam.jobs.config import SelectConfig
from zipfit_beam.records import Document, ScoredDocument
from zipfit_beam.report import progress
from zipfit_beam.report.summary import NamedCombineFn, SummarizeSelection
from zipfit_beam.score import contamination, ncd, tokens
from zipfit_beam.score.spec import PreparedTargets, ScoringSpec, prepare_targets
from zipfit_beam.score.transforms import Guarded, GuardContamination, ScoreDocuments
from zipfit_beam.select.cut import SelectionRule, threshold_json
from zipfit_beam.select.transforms import SelectDocuments

__all__ = ["ZipFitResult", "ZipFitSelect", "build_pipeline", "run", "versions"]

_LOG = logging.getLogger(__name__)


def versions() -> dict:
    return {"zipfit_beam": zipfit_beam.__version__, "apache_beam": beam.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION, "python": platform.python_version()}


# --- the transform ----------------------------------------------------------------------

class ZipFitResult(NamedTuple):
    scored: PCollection  # PCollection[ScoredDocument], every scored document, contaminated or not
    selected: PCollection  # PCollection[ScoredDocument], the selection
    rejected: PCollection  # PCollection[DeadLetter]
    threshold: PCollection  # singleton: the RankKey of the last selected document, or None
    read: PCollection  # singleton: records read
    cut: PCollection  # singleton PCollection[Cut]
    guarded: Optional[Guarded] = None  # None when the contamination guard is off


class ZipFitSelect(beam.PTransform):
    """PBegin -> ZipFitResult: read and parse the source ``files`` ((path, format) pairs
    from ``io.files.resolve_sources``, or paths), score them against ``targets`` as
    ``spec`` says, set aside the documents that share a ``spec.contamination_ngram``-token
    run with a target (left out of the candidates unless ``allow_contaminated``) and
    select by ``rule`` (a SelectionRule, or an int K for top-K).

    ``text_field``: a field name or a TextSpec; ``group_field``: a record field carried as
    ``ScoredDocument.group``. The targets are prepared (ordered, fingerprinted) here, in
    the launcher, once. ``scored``/``selected`` are small ScoredDocument keys;
    ``io.write.WriteSelected`` fetches the selected records from their files."""

    def __init__(self, files: Sequence, targets: Sequence[Document],
                 rule: Union[SelectionRule, int], text_field: Union[str, TextSpec] = "text",
                 id_field: str = "id", spec: ScoringSpec = ScoringSpec(),
                 group_field: Optional[str] = None, allow_contaminated: bool = False):
        super().__init__()
        self._files, self._rule, self._spec = files, rule, spec
        self._targets: PreparedTargets = prepare_targets(targets)
        self._fields = (text_field, id_field, group_field)
        self._allow_contaminated = allow_contaminated

    def expand(self, pbegin):
        read = pbegin | "ReadSources" >> ReadDocuments(self._files, *self._fields)
        targets = pbegin | "CreateTargets" >> beam.Create([self._targets])
        scored = read.documents | "ScoreDocuments" >> ScoreDocuments(targets, self._spec)
        candidates, guarded = scored, None
        if self._spec.contamination_ngram:
            guarded = scored | "GuardContamination" >> GuardContamination()
            if not self._allow_contaminated:
                candidates = guarded.clean
        selection = candidates | "SelectDocuments" >> SelectDocuments(self._rule)
        return ZipFitResult(scored, selection.selected, read.rejected, selection.threshold,
                            read.read, selection.cut, guarded)


# --- the job ----------------------------------------------------------------------------

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


CONTAMINATED_LISTED = 1000  # contaminated documents named in the manifest (the count is exact)


class ContaminationParts(NamedTuple):
    count: int  # every contaminated document
    listed: list  # the first CONTAMINATED_LISTED ContaminationHits by (id, source, position)


def contamination_facts(config: SelectConfig, targets: Sequence[Document]) -> dict:
    """What the launcher knows about the guard before the job: its settings and the targets
    too short to be looked for (see ``score.contamination``)."""
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
                 contamination: ContaminationParts = ContaminationParts(None, [])):
        guard = dict(self._guard)
        if guard["enabled"]:
            guard["documents"] = [{"id": h.id, "source": h.source, "position": h.position,
                                   "score": h.score, "target": h.target_id}
                                  for h in contamination.listed]
            guard["documents_listed"] = len(contamination.listed)
        counts = {"read": read, "scored": scored, "rejected": rejected, "selected": selected,
                  "selected_tokens": selected_tokens,
                  "contaminated": contamination.count if guard["enabled"] else None}
        return {"counts": counts, "rejected_by_reason": dict(sorted(reasons.items())),
                "threshold": threshold_json(cut.threshold), "contamination": guard}


def build_pipeline(p: beam.Pipeline, config: SelectConfig, files: Sequence,
                   targets: Sequence[Document], plan: Optional[OutputPlan] = None):
    """Add the whole job to ``p``. ``files``: the resolved source files ((path, format)
    pairs from ``io.files.resolve_sources``, or paths); ``targets``: the parsed target
    documents (``io.targets.load_targets``); ``plan``: how the output is written (default:
    ``io.write.plan_output`` from the config). Returns the ZipFitResult."""
    files: List[InputFile] = [(f, formats.detect_format(f)) if isinstance(f, str) else tuple(f)
                              for f in files]
    if plan is None:
        plan = plan_output(files, config.output_format, config.output_suffix,
                           config.num_shards, config.source_text)
    staging = out.staging_dir(config.output)
    result = p | "ZipFitSelect" >> ZipFitSelect(
        files, targets, config.rule, config.source_text, config.id_field, config.scoring,
        group_field=config.group_field, allow_contaminated=config.allow_contaminated)

    staged = [result.selected | "WriteSelected" >> WriteSelected(
                  plan, staging, config.source_text, config.id_field),
              result.rejected | "WriteRejected" >> WriteRejected(plan, staging)]
    if config.write_scores:
        staged.append(result.scored
                      | "ScoreRows" >> beam.Map(score_row)
                      | "WriteScores" >> beam.io.WriteToParquet(
                          posixpath.join(staging, out.SCORES_DIR, "scores"), scores_schema(),
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
    if result.guarded is not None:  # how many, and the first CONTAMINATED_LISTED by id
        facts["contamination"] = AsSingleton(
            result.guarded.hits | "CountAndListContaminated" >> beam.CombineGlobally(
                NamedCombineFn(ContaminationParts,
                               count=beam.combiners.CountCombineFn(),
                               listed=beam.combiners.TopCombineFn(
                                   CONTAMINATED_LISTED, reverse=True,
                                   key=lambda h: (h.id, h.source, h.position)))))

    # The report's data (summary.json), reduced from the scored keys by combiners; the
    # few example texts are read back from their files.
    summary = (result.scored, result.selected) | "SummarizeSelection" >> SummarizeSelection(
        (plan.format_overrides, config.source_text, config.id_field), config.group_field,
        tokens.counter_name(config.tokenizer))
    staged.append(summary | "WriteSummary" >> beam.ParDo(
        out.WriteJsonDoFn(posixpath.join(staging, out.SUMMARY_NAME), indent=None)))
    out.publish(p, config.output, staging, manifest, staged,
                _AssembleSelect(contamination_facts(config, targets)), facts)
    return result


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


def run(argv: Optional[List[str]] = None, wait: bool = True):
    """Parse flags, check inputs, build and run the job; returns the PipelineResult.

    ``wait=False`` returns once the runner has accepted the job (a Dataflow Flex Template
    launcher must exit then; the job itself writes ``manifest.json`` when it is done)."""
    from zipfit_beam.cli.options import parse_select_args

    config, pipeline_options = parse_select_args(argv)
    files = resolve_sources(config.sources, config.source_format)
    targets = load_targets(config.targets, config.target_text, config.id_field,
                           config.target_format)
    plan = plan_output(files, config.output_format, config.output_suffix,
                       config.num_shards, config.source_text)
    if config.tokenizer:
        tokens.load_counter(config.tokenizer)  # a bad tokenizer is an error before the job
    out.check_output(config.output, config.overwrite)
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
    from apache_beam.io.filesystems import FileSystems

    from zipfit_beam.report import html

    manifest_path = posixpath.join(config.output, out.MANIFEST_NAME)
    if not FileSystems.exists(manifest_path):
        _LOG.info("no %s: no summary or report", manifest_path)
        return
    with FileSystems.open(manifest_path) as f:
        manifest = json.loads(f.read())
    written = html.write_report(config.output) if config.report else None
    print(html.format_summary(manifest, wall_s, written), flush=True)
