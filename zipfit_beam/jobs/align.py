"""``zipfit-beam align``: the dataset-level ZIP-FIT alignment of a source corpus with a target
set, for comparing candidate corpora before selecting from one (the x-axis of the paper's
Figure 3, where higher alignment meant lower cross-entropy after fine-tuning).

    alignment(D, T) = mean over (x in D, y in T) of (1 - NCD(x, y))
                    = mean over x in D of alignment(x)     (every x is paired with all of T)

It reuses the selection's scoring (``ScoreDocuments``, so ``score.ncd.TargetSet`` and the exact
gzip-1 kernel). Every target is used; what can be sampled is the source corpus:

* full (default): every parsed source document; the value is exact.
* ``--sample N``: N documents drawn uniformly without replacement, deterministically (the N
  smallest keys ``blake2b(seed, file, position)``, so the same files and seed give the same
  sample on any runner). The estimate is their mean; its standard error is s / sqrt(N) times the
  finite-population correction sqrt((P - N) / (P - 1)), P = parsed documents in the corpus,
  and the 95% interval is mean +- 1.96 SE (normal approximation; fine for N >= 30). The
  corpus is read twice (once to count and draw the keys, once to score the sample), but
  only the sample is scored, which is nearly all of the cost.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import List, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from zipfit_beam.combine import global_combine, side_combine
from zipfit_beam.io.files import resolve_sources
from zipfit_beam.io.publish import WriteJsonDoFn
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.io.read import ReadDocuments
from zipfit_beam.io.targets import load_targets
from zipfit_beam.io.templates import TextSpec
from zipfit_beam.records import Document
from zipfit_beam.report import progress, stats
from zipfit_beam.score import ncd
from zipfit_beam.score.spec import ScoringSpec, prepare_targets
from zipfit_beam.score.transforms import ScoreDocuments

__all__ = ["MeasureAlignment", "alignment_result", "run_align"]

_LOG = logging.getLogger(__name__)


class MeanVarianceCombineFn(beam.CombineFn):
    """float -> stats.MeanVariance (count, mean, squared deviations), merged in parallel."""

    def create_accumulator(self):
        return stats.MeanVariance()

    def add_input(self, acc, x):
        return acc.add(x)

    def merge_accumulators(self, accs):
        out = stats.MeanVariance()
        for acc in accs:
            out = out.merge(stats.MeanVariance(*acc))
        return out

    def extract_output(self, acc):
        return stats.MeanVariance(*acc)


def _key(doc: Document, seed: int) -> int:
    return stats.sample_key(doc.source, doc.position, seed)


def _kth(keys: List[int], n: int) -> Optional[int]:
    return keys[-1] if len(keys) >= n else None  # fewer documents than n: take them all


def alignment_result(moments, population: int, rejected: int, sample: Optional[int],
                     seed: int, targets: int) -> dict:
    """The result record: estimate, spread, error and what it was computed over."""
    moments = stats.MeanVariance(*moments)
    estimate = stats.mean_estimate(moments, population)
    sampled = sample is not None and moments.n < population
    return {
        "alignment": estimate["mean"],
        "mode": "sampled" if sampled else "full",
        "documents": moments.n,
        "population": population,
        "targets": targets,
        "pairs": moments.n * targets,
        "std": estimate["std"],
        "standard_error": estimate["standard_error"],
        "ci95": estimate["ci95"],
        "rejected_records": rejected,
        "seed": seed if sample is not None else None,
        "error_model": ("simple random sample of source documents without replacement; "
                        "SE = s/sqrt(n) * sqrt((P-n)/(P-1)); 95% CI = mean +- 1.96 SE")
        if sampled else "exact: every parsed source document against every target",
    }


class MeasureAlignment(beam.PTransform):
    """PBegin -> a singleton PCollection with the ``alignment_result`` dict of the source
    ``files`` (paths, or (path, format) pairs from ``io.files.resolve_sources``) against
    ``targets`` (see the module docstring for the full and sampled modes), scored as
    ``spec`` says (its guard and token counter are not used). ``text_field``: a field name
    or a TextSpec."""

    def __init__(self, files: Sequence, targets: Sequence[Document],
                 text_field: Union[str, TextSpec] = "text", id_field: str = "id",
                 spec: ScoringSpec = ScoringSpec(contamination_ngram=0),
                 sample: Optional[int] = None, seed: int = 0,
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self._files, self._targets = list(files), prepare_targets(targets)
        self._fields = (text_field, id_field, None, max_record_bytes)
        self._spec = spec
        self._sample, self._seed = sample, seed

    def expand(self, pbegin):
        n, seed = self._sample, self._seed
        targets = pbegin | "CreateTargets" >> beam.Create([self._targets])
        read = pbegin | "ReadSources" >> ReadDocuments(self._files, *self._fields)
        population = side_combine(read.documents, "CountDocuments", beam.combiners.CountCombineFn())
        rejected = side_combine(read.rejected, "CountRejected", beam.combiners.CountCombineFn())
        chosen = read.documents
        if n is not None:
            # Pass 1 draws the n smallest keys; pass 2 reads again and keeps the documents at
            # or under the n-th key. The second read only starts once the key is known, so no
            # runner has to hold the corpus while waiting for it.
            kth = (read.documents
                   | "SampleKeys" >> beam.Map(_key, seed)
                   | "SmallestKeys" >> beam.combiners.Top.Smallest(n)
                   | "KthKey" >> beam.Map(_kth, n))
            again = pbegin | "ReadSample" >> ReadDocuments(self._files, *self._fields)
            chosen = again.documents | "KeepSample" >> beam.Filter(
                lambda d, k: k is None or _key(d, seed) <= k, AsSingleton(kth))
        scores = (chosen
                  | "ScoreDocuments" >> ScoreDocuments(targets, self._spec)
                  | "Scores" >> beam.Map(lambda d: d.score))
        moments = global_combine(scores, "MeanVariance", MeanVarianceCombineFn())
        return moments | "Result" >> beam.Map(
            alignment_result, population, rejected, n, seed,
            len(self._targets.texts))


def format_result(r: dict) -> str:
    """One paragraph for the terminal."""
    head = f"ZIP-FIT dataset alignment: {r['alignment']:.6f}" if r["alignment"] is not None else \
        "ZIP-FIT dataset alignment: no document could be scored"
    if r["alignment"] is None:
        return head
    if r["mode"] == "full":
        return (f"{head}  (exact: {r['documents']:,} documents x {r['targets']:,} targets = "
                f"{r['pairs']:,} pairs; std of per-document alignment {r['std']:.6f})")
    lo, hi = r["ci95"] if r["ci95"] else (float("nan"), float("nan"))
    return (f"{head} +- {r['standard_error']:.6f} (standard error)\n"
            f"  95% confidence interval [{lo:.6f}, {hi:.6f}]; a sample of {r['documents']:,} of "
            f"{r['population']:,} documents (seed {r['seed']}) x {r['targets']:,} targets")


def run_align(argv: Optional[List[str]] = None) -> dict:
    """Parse flags, run the job, print and return the result dict."""
    from zipfit_beam.cli.options import parse_align_args

    config, options = parse_align_args(argv)
    files = resolve_sources(config.sources, config.source_format)
    targets = load_targets(config.targets, config.target_text, config.id_field,
                              config.target_format, config.max_record_bytes)
    scratch = None
    path = config.output
    if not path:
        scratch = tempfile.mkdtemp(prefix="zipfit-align-")
        path = os.path.join(scratch, "alignment.json")
    _LOG.info("zipfit-beam align: %d source files, %d targets, %s", len(files), len(targets),
              f"a sample of {config.sample}" if config.sample else "every document")
    progress.reset()
    if config.progress_interval:
        if config.sample is None:
            progress.estimate_total_in_background(files)
        else:
            progress.expect_total(config.sample)
    started = time.monotonic()
    extra = {"config": config.to_dict(), "target_count": len(targets),
             "kernel": ncd.kernel_name(config.compressor, config.level),
             "scoring": ncd.scoring_identity(config.compressor, config.level)}
    try:
        p = beam.Pipeline(options=options)
        (p
         | "MeasureAlignment" >> MeasureAlignment(
             files, targets, config.source_text, config.id_field, config.scoring,
             config.sample, config.seed, config.max_record_bytes)
         | "WriteResult" >> beam.ParDo(WriteJsonDoFn(path, extra)))
        p.run().wait_until_finish()
        with FileSystems.open(path) as f:
            result = json.loads(f.read())
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    print(format_result(result), flush=True)
    if config.output:
        print(f"  written to {config.output}")
    return result
