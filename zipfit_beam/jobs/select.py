"""The selection job: score each source file into a key table -> guard -> select -> fetch
and write -> summary -> publish.

``SelectFiles`` is the transform (reading through selecting; ``jobs.records.ZipFitSelect``
is the same over a PCollection of records); ``build_pipeline`` adds the
writers, the summary and the publishing step; ``run`` parses flags, checks the inputs in
the launcher and runs the job. From Python::

    from zipfit_beam import run
    run(["--source", "corpus/*.jsonl", "--target", "humaneval.jsonl", "--output", "out",
         "--top-k", "1000"])
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import posixpath
import time
import zlib
from collections import Counter
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, PCollection

import zipfit_beam
from zipfit_beam import formats
from zipfit_beam.cli.options import cli_config
from zipfit_beam.combine import NamedCombineFn, global_combine, side_combine
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.io import publish as out
from zipfit_beam.io.files import InputFile, resolve_sources
from zipfit_beam.io import keys
from zipfit_beam.io.keys import KeyTable
from zipfit_beam.io.targets import load_targets
from zipfit_beam.io.templates import TextSpec, as_text_spec
from zipfit_beam.io.write import OutputPlan, WriteRejected, WriteSelected, plan_output
from zipfit_beam.jobs.config import SelectConfig
from zipfit_beam.records import ContaminationHit, DeadLetter, Document, ScoredDocument
from zipfit_beam.report import progress
from zipfit_beam.report.summary import SummarizeSelection
from zipfit_beam.score import contamination, ncd, tokens
from zipfit_beam.score.spec import PreparedTargets, ScoringSpec, prepare_targets, scoring_fingerprint
from zipfit_beam.score.transforms import ContaminationHitDoFn, ScoreFiles
from zipfit_beam.select.cut import SelectionRule, threshold_json
from zipfit_beam.select.transforms import SelectDocuments

__all__ = ["TableTotals", "ZipFitResult", "SelectFiles", "build_pipeline", "run", "versions"]

_LOG = logging.getLogger(__name__)


def versions() -> dict:
    return {"zipfit_beam": zipfit_beam.__version__, "apache_beam": beam.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION, "python": platform.python_version()}


# --- the transform ----------------------------------------------------------------------

class TableTotals(NamedTuple):
    """The counts of a run, summed over its key tables' markers."""
    read: int
    scored: int
    rejected: int
    reasons: dict  # reason -> dead letters
    files_scored: int
    files_reused: int
    documents_reused: int


class SumTablesCombineFn(beam.CombineFn):
    """KeyTable -> TableTotals."""

    def create_accumulator(self):
        return TableTotals(0, 0, 0, {}, 0, 0, 0)

    def add_input(self, acc: TableTotals, t: KeyTable):
        reasons = dict(acc.reasons)
        for reason, n in t.reasons:
            reasons[reason] = reasons.get(reason, 0) + n
        return TableTotals(acc.read + t.read, acc.scored + t.scored,
                           acc.rejected + t.rejected_count, reasons,
                           acc.files_scored + (not t.reused), acc.files_reused + t.reused,
                           acc.documents_reused + (t.scored if t.reused else 0))

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            reasons = dict(out.reasons)
            for reason, n in a.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
            out = TableTotals(*(x + y for x, y in zip(out[:3], a[:3])), reasons,
                              *(x + y for x, y in zip(out[4:], a[4:])))
        return out

    def extract_output(self, acc):
        return acc


class ZipFitResult(NamedTuple):
    tables: PCollection  # PCollection[KeyTable]: one per source file, the spine (every
    # scored document: tables | beam.FlatMap(io.keys.read_keys); no step of the job reads so)
    selected: PCollection  # PCollection[ScoredDocument], the selection
    rejected: PCollection  # PCollection[DeadLetter], read from the tables
    threshold: PCollection  # singleton: the RankKey of the last selected document, or None
    totals: PCollection  # singleton PCollection[TableTotals]
    cut: PCollection  # singleton PCollection[Cut]
    contaminated: Optional[PCollection] = None  # ContaminationHits; None when the guard is off


class SelectFiles(beam.PTransform):
    """PBegin -> ZipFitResult: score the source files that the ``sources`` patterns match
    (matched on the workers, so the job graph does not grow with the number of files; each
    file's format from its name, or ``source_format``) against ``targets`` as ``spec``
    says, one key table per
    file in ``tables`` (a directory: the cache, or the run's staging area), leave out the
    documents that share a ``spec.contamination_ngram``-token run with a target (unless
    ``allow_contaminated``) and select by ``rule`` (a SelectionRule, or an int K).

    ``text_field``: a field name or a TextSpec; ``group_field``: a record field carried as
    ``ScoredDocument.group``; ``tokenizer_digest``: the tokenizer file's SHA-256 (part of
    the scoring fingerprint); ``max_record_bytes``: larger records are dead letters (part of
    it too). The targets are prepared (ordered, fingerprinted) here, in
    the launcher, once. Every pass after scoring reads the tables again (``io.keys``), so
    no step keeps every key; ``io.write.WriteSelected`` fetches the selected records."""

    def __init__(self, sources: Sequence[str], targets: Sequence[Document],
                 rule: Union[SelectionRule, int], tables: str,
                 text_field: Union[str, TextSpec] = "text", id_field: str = "id",
                 spec: ScoringSpec = ScoringSpec(), group_field: Optional[str] = None,
                 allow_contaminated: bool = False, tokenizer_digest: Optional[str] = None,
                 source_format: str = "auto",
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self._sources, self._source_format = sorted(set(sources)), source_format
        self._rule, self._spec, self._tables = rule, spec, tables
        self._targets: PreparedTargets = prepare_targets(targets)
        self._text, self._id_field, self._group_field = as_text_spec(text_field), id_field, group_field
        self._max_record_bytes = max_record_bytes
        self._allow_contaminated = allow_contaminated
        self.fingerprint = scoring_fingerprint(spec, self._targets, self._text, id_field,
                                               group_field, tokenizer_digest, max_record_bytes)

    def expand(self, pbegin):
        guard = bool(self._spec.contamination_ngram)
        targets = pbegin | "CreateTargets" >> beam.Create([self._targets])
        source_format = self._source_format
        tables = (pbegin
                  | "SourcePatterns" >> beam.Create(self._sources)
                  | "MatchFiles" >> fileio.MatchAll()
                  | "FilePaths" >> beam.FlatMap(lambda m: [] if m.path.endswith("/") else [m.path])
                  | "EachFileOnce" >> beam.Distinct()
                  | "WithFormat" >> beam.Map(lambda path: (path, formats.format_of(path, source_format).NAME))
                  .with_output_types(Tuple[str, str])
                  | "ScoreFiles" >> ScoreFiles(targets, self._spec, self._text, self._id_field,
                                               self._group_field, self._tables, self.fingerprint,
                                               self._max_record_bytes))
        candidates = "clean" if guard and not self._allow_contaminated else None
        selection = tables | "SelectDocuments" >> SelectDocuments(
            self._rule, batches=functools.partial(keys.read_key_batches, only=candidates))
        contaminated = None
        if guard:
            contaminated = (tables
                            | "ReadContaminated" >> beam.FlatMap(keys.read_keys, only="contaminated")
                            | "Hits" >> beam.ParDo(ContaminationHitDoFn()).with_output_types(ContaminationHit))
        return ZipFitResult(
            tables,
            selection.selected,
            tables | "ReadRejected" >> beam.FlatMap(keys.read_rejected).with_output_types(DeadLetter),
            selection.threshold,
            global_combine(tables, "SumTables", SumTablesCombineFn()),
            selection.cut, contaminated)


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


class SelectedTotals(NamedTuple):
    count: int  # selected documents
    tokens: int  # their tokens


def selection_facts(selected, cut) -> dict:
    """Side inputs for the manifest: how many documents and tokens were selected (also
    counted in Metrics), the cut."""
    selected | "MeterSelected" >> beam.ParDo(MeterSelectedDoFn())
    return {
        "selected": side_combine(
            selected | "SelectedTokens" >> beam.Map(lambda d: d.tokens), "CountSelected",
            NamedCombineFn(SelectedTotals, count=beam.combiners.CountCombineFn(),
                           tokens=beam.CombineFn.maybe_from_callable(sum))),
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

    def __call__(self, totals: TableTotals, selected: SelectedTotals, cut,
                 contamination: ContaminationParts = ContaminationParts(None, [])):
        guard = dict(self._guard)
        if guard["enabled"]:
            guard["documents"] = [{"id": h.id, "source": h.source, "position": h.position,
                                   "score": h.score, "target": h.target_id}
                                  for h in contamination.listed]
            guard["documents_listed"] = len(contamination.listed)
        counts = {"read": totals.read, "scored": totals.scored, "rejected": totals.rejected,
                  "selected": selected.count, "selected_tokens": selected.tokens,
                  "contaminated": contamination.count if guard["enabled"] else None}
        return {"counts": counts, "rejected_by_reason": dict(sorted(totals.reasons.items())),
                "threshold": threshold_json(cut.threshold), "contamination": guard,
                "cache": {"files_reused": totals.files_reused, "files_scored": totals.files_scored,
                          "documents_reused": totals.documents_reused}}


def build_pipeline(p: beam.Pipeline, config: SelectConfig, files: Sequence,
                   targets: Sequence[Document], plan: Optional[OutputPlan] = None,
                   tokenizer_digest: Optional[str] = None, staging: Optional[str] = None):
    """Add the whole job to ``p``. ``files``: the resolved source files ((path, format)
    pairs from ``io.files.resolve_sources``, or paths); ``targets``: the parsed target
    documents (``io.targets.load_targets``); ``plan``: how the output is written (default:
    ``io.write.plan_output`` from the config); ``tokenizer_digest``: the SHA-256 of the
    ``--tokenizer`` file; ``staging``: the staging directory (default: a new name; ``run``
    claims one, ``io.publish.claim_staging``). Returns the ZipFitResult."""
    files: List[InputFile] = [(f, formats.detect_format(f)) if isinstance(f, str) else tuple(f)
                              for f in files]
    if plan is None:
        plan = plan_output(files, config.output_format, config.output_suffix,
                           config.num_shards, config.source_text, config.source_format)
    staging = staging or out.staging_dir(config.output)
    # The key tables: in the cache, or in the staging area, where they are published as
    # DIR/scores/ with --write-scores and removed with it otherwise.
    staged_scores = posixpath.join(staging, out.SCORES_DIR)
    select = SelectFiles(
        config.sources, targets, config.rule, config.cache or staged_scores, config.source_text,
        config.id_field, config.scoring, group_field=config.group_field,
        allow_contaminated=config.allow_contaminated, tokenizer_digest=tokenizer_digest,
        source_format=config.source_format, max_record_bytes=config.max_record_bytes)
    result = p | "ZipFitSelect" >> select

    staged = [result.selected | "WriteSelected" >> WriteSelected(
                  plan, staging, config.source_text, config.id_field),
              result.rejected | "WriteRejected" >> WriteRejected(plan, staging)]
    if config.write_scores:
        staged.append(result.tables | "StageScores" >> beam.FlatMap(
            keys.stage_table, staged_scores, copy=bool(config.cache)))

    manifest = {"config": config.to_dict(), "cli_config": cli_config(config), "versions": versions(),
                "kernel": ncd.kernel_name(config.compressor, config.level),
                "scoring": ncd.scoring_identity(config.compressor, config.level),
                "selection": dict(config.rule.to_dict(),
                                  token_counter=tokens.counter_name(config.tokenizer)),
                "targets": {"count": len(targets), "files": sorted({d.source for d in targets})},
                "sources": {"files": len(files),
                            "formats": dict(sorted(Counter(f for _, f in files).items()))},
                "output": plan.describe(), "scoring_fingerprint": select.fingerprint}
    facts = dict(selection_facts(result.selected, result.cut), totals=AsSingleton(result.totals))
    if result.contaminated is not None:  # how many, and the first CONTAMINATED_LISTED by id
        facts["contamination"] = side_combine(
            result.contaminated, "CountAndListContaminated",
            NamedCombineFn(ContaminationParts, count=beam.combiners.CountCombineFn(),
                           listed=beam.combiners.TopCombineFn(
                               CONTAMINATED_LISTED, reverse=True,
                               key=lambda h: (h.id, h.source, h.position))))

    # The report's data (summary.json), reduced from the scored keys by combiners; the
    # few example texts are read back from their files.
    summary = (result.tables, result.selected) | "SummarizeSelection" >> SummarizeSelection(
        (plan.source_format, config.source_text, config.id_field), config.group_field,
        tokens.counter_name(config.tokenizer), batches=keys.read_key_batches)
    staged.append(summary | "WriteSummary" >> beam.ParDo(
        out.WriteJsonDoFn(posixpath.join(staging, out.SUMMARY_NAME), indent=None)))
    out.publish(p, config.output, staging, manifest, staged,
                _AssembleSelect(contamination_facts(config, targets)), facts)
    return result


def run(argv: Optional[List[str]] = None, wait: bool = True):
    """Parse flags, check inputs, build and run the job; returns the PipelineResult.

    ``wait=False`` returns once the runner has accepted the job (a Dataflow Flex Template
    launcher must exit then; the job itself writes ``manifest.json`` when it is done)."""
    from zipfit_beam.cli.options import parse_select_args

    config, pipeline_options = parse_select_args(argv)
    files = resolve_sources(config.sources, config.source_format)
    targets = load_targets(config.targets, config.target_text, config.id_field,
                           config.target_format, config.max_record_bytes)
    plan = plan_output(files, config.output_format, config.output_suffix,
                       config.num_shards, config.source_text, config.source_format)
    tokenizer_digest = None
    if config.tokenizer:
        tokens.load_counter(config.tokenizer)  # a bad tokenizer is an error before the job
        tokenizer_digest = keys.file_digest(config.tokenizer)
    out.check_output(config.output, config.overwrite)
    _LOG.info("zipfit-beam: %d source files, %d targets, kernel=%s", len(files), len(targets),
              ncd.kernel_name(config.compressor, config.level))
    progress.reset()
    if config.progress_interval:
        progress.estimate_total_in_background(files)
    started = time.monotonic()
    p = beam.Pipeline(options=pipeline_options)
    with out.claim_staging(config.output, out.launcher_runs_job(pipeline_options),
                           pipeline_options) as staging:
        build_pipeline(p, config, files, targets, plan, tokenizer_digest, staging)
        result = p.run()
        if wait:
            result.wait_until_finish()
    if wait:
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
