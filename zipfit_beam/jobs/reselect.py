"""A new selection from saved scores, without rescoring: ``zipfit-beam reselect``.

    DIR/scores/keys-*.parquet (the scoring run's key tables) --> ScoredDocument
        --(the scoring run's contamination guard: its contaminated rows left out)
        --SelectDocuments(rule)--> the selected rows
        --io.write.WriteSelected--> read only the files holding selected records, copy
                                   them (checking each still has the scored id) into
                                   selected-* ; manifest.json

The ranking, the cut and the shards are computed by the same code as ``select``, from the
same scores and token counts, so the output equals a fresh ``select`` run with the same
mode and ``--num-shards``/``--output-suffix`` byte for byte. Files without a selected
document are not read; no document text is shuffled.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import posixpath
from typing import Iterator, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from zipfit_beam.io import keys
from zipfit_beam.io import publish as out
from zipfit_beam.io.keys import KeyTable
from zipfit_beam.io.files import InputFile, resolve_inputs, resolve_sources
from zipfit_beam.io.write import WriteSelected, plan_output
from zipfit_beam.jobs.config import ReselectConfig, SelectConfig
from zipfit_beam.jobs.select import SelectedTotals, selection_facts, versions
from zipfit_beam.records import ScoredDocument
from zipfit_beam.select.cut import threshold_json
from zipfit_beam.select.transforms import SelectDocuments

__all__ = ["build_reselect", "run_reselect"]

_LOG = logging.getLogger(__name__)


def check_scored(doc: ScoredDocument) -> ScoredDocument:
    """A key read back from a scores table, refused when it cannot have been written by a
    scoring run (a damaged or edited table)."""
    if doc.score is None or not math.isfinite(doc.score) or doc.tokens is None or doc.tokens < 1:
        raise ValueError(f"scores table row {doc!r}: score must be finite and tokens >= 1")
    return doc


def row_to_scored(row: dict) -> ScoredDocument:
    """A scores-table row -> ScoredDocument, checked."""
    return check_scored(ScoredDocument(row["id"], row["score"], row["source"], row["position"],
                                       row["tokens"], row["bytes"], row.get("group"),
                                       row.get("contaminated_by") or ""))


def excludes_contaminated(previous: dict) -> bool:
    """Did the scoring run leave contaminated documents out of its candidates?"""
    guard = previous.get("contamination") or {}
    return bool(guard.get("enabled") and guard.get("excluded"))


class CheckKnownSourceDoFn(beam.DoFn):
    """Passes a selected ScoredDocument through if its source file is among ``--source``."""

    def __init__(self, files: Sequence[str]):
        self._files = frozenset(files)

    def process(self, doc: ScoredDocument):
        if doc.source not in self._files:
            raise ValueError(f"the scores name source file {doc.source!r}, which is not among --source")
        yield doc


def read_previous_manifest(scores_dir: str) -> dict:
    path = posixpath.join(scores_dir, out.MANIFEST_NAME)
    try:
        with FileSystems.open(path) as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except Exception as e:
        raise FileNotFoundError(f"--scores {scores_dir!r}: no readable {out.MANIFEST_NAME} ({e})") from e
    if not manifest.get("config", {}).get("write_scores"):
        raise ValueError(f"--scores {scores_dir!r}: that run did not write scores "
                         "(run select with --write-scores)")
    return manifest


class _AssembleReselect:
    """Manifest facts of a reselect run: read/scored/rejected come from the scoring run."""

    def __init__(self, previous_counts: dict, previous_reasons: dict, excluded: bool):
        self._counts, self._reasons, self._excluded = previous_counts, previous_reasons, excluded

    def __call__(self, selected: SelectedTotals, cut):
        contaminated = self._counts.get("contaminated")
        candidates = self._counts["scored"] - (contaminated or 0 if self._excluded else 0)
        if cut.scored != candidates:
            raise ValueError(f"the scores table holds {cut.scored} candidate rows but the run "
                             f"that wrote it had {candidates}: it is incomplete")
        counts = {"read": self._counts["read"], "scored": self._counts["scored"],
                  "rejected": self._counts["rejected"], "selected": selected.count,
                  "selected_tokens": selected.tokens, "contaminated": contaminated}
        return {"counts": counts, "rejected_by_reason": self._reasons,
                "threshold": threshold_json(cut.threshold)}


def checked_batches(table: KeyTable, only: Optional[str] = None) -> Iterator[keys.KeyBatch]:
    """The rows of one table of the scoring run, a batch at a time, each row checked as
    ``check_scored`` checks it (the first bad row of a batch is refused with its message)."""
    import pyarrow.compute as pc
    for batch in keys.read_key_batches(table, only):
        rb = batch.batch
        bad = pc.fill_null(pc.or_kleene(pc.invert(pc.is_finite(rb.column("score"))),
                                        pc.less(rb.column("tokens"), 1)), True)
        if pc.any(bad).as_py():
            check_scored(batch.documents([pc.index(bad, True).as_py()])[0])
        yield batch


def build_reselect(p: beam.Pipeline, config: ReselectConfig, previous: dict,
                   tables: Sequence[KeyTable], files: Sequence[InputFile],
                   staging: Optional[str] = None):
    staging = staging or out.staging_dir(config.output)
    scoring = previous["config"]
    scoring_config = SelectConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in scoring.items()})
    plan = plan_output(files, scoring.get("output_format"), config.output_suffix,
                       config.num_shards, scoring_config.source_text, scoring_config.source_format)
    # The same candidates as the scoring run: its clean documents if the guard excluded.
    only = "clean" if excludes_contaminated(previous) else None
    selection = (p
                 | "ListTables" >> beam.Create(list(tables))
                 | "SelectDocuments" >> SelectDocuments(
                     config.rule, batches=functools.partial(checked_batches, only=only)))
    selected = selection.selected | "CheckKnownSource" >> beam.ParDo(
        CheckKnownSourceDoFn([path for path, _ in files])).with_output_types(ScoredDocument)
    staged = [selected | "WriteSelected" >> WriteSelected(
        plan, staging, scoring_config.source_text, scoring_config.id_field)]
    manifest = {"config": config.to_dict(), "scoring_config": scoring, "versions": versions(),
                "kernel": previous.get("kernel"), "scoring": previous.get("scoring"),
                "selection": dict(config.rule.to_dict(),
                                  token_counter=previous.get("selection", {}).get("token_counter")),
                "reselected_from": config.scores, "targets": previous.get("targets"),
                "contamination": previous.get("contamination"),
                "sources": {"files": len(files)}}
    out.publish(p, config.output, staging, manifest, staged,
            _AssembleReselect(previous["counts"], previous.get("rejected_by_reason", {}),
                              excludes_contaminated(previous)),
            selection_facts(selected, selection.cut))
    return selected


def run_reselect(argv: Optional[List[str]] = None):
    """Parse flags, check inputs, build and run the reselect job; returns the PipelineResult."""
    from zipfit_beam.cli.options import parse_reselect_args

    config, pipeline_options = parse_reselect_args(argv)
    previous = read_previous_manifest(config.scores)
    score_pattern = posixpath.join(config.scores, out.SCORES_DIR, keys.MARKERS_GLOB)
    resolve_inputs([score_pattern], "--scores")
    tables = keys.tables_in(posixpath.join(config.scores, out.SCORES_DIR))
    files = resolve_sources(config.sources, previous["config"].get("source_format", "auto"))
    out.check_output(config.output, config.overwrite)
    _LOG.info("zipfit-beam reselect: scores from %s, %d source files", config.scores, len(files))
    p = beam.Pipeline(options=pipeline_options)
    with out.claim_staging(config.output, out.launcher_runs_job(pipeline_options),
                           pipeline_options) as staging:
        build_reselect(p, config, previous, tables, files, staging)
        result = p.run()
        result.wait_until_finish()
    return result
