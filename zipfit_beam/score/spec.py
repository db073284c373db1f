"""The scoring settings as one frozen spec, and the target set prepared once in the
launcher. Pure: no Beam.

``ScoringSpec`` is built once from the config (``SelectConfig.scoring``) and handed whole
to the transforms and their DoFns. ``PreparedTargets`` is the target set in a fixed order
(file, then position: the order the float sum of the NCDs follows, so scores are
reproducible) with its fingerprint, which names the per-process shared objects built
from it (the compressed target lengths, the n-gram index), the way ``RunInference``
hands its model's tag to its DoFn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from zipfit_beam.records import Document
from zipfit_beam.score import contamination, ncd

__all__ = ["ScoringSpec", "PreparedTargets", "prepare_targets", "SCORES_VERSION", "scoring_fingerprint"]


# Documents per scoring call: enough that the per-call work (a pool task, the C call, the
# key table's columns) is spread thin; a file's batch also ends at BATCH_CHARS characters.
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class ScoringSpec:
    """How documents are scored. Errors name the CLI flags that set each field.

    compressor, level   the compressed-length function (``ncd.COMPRESSORS``); gzip 1 is exact
    max_doc_bytes       score only the first N UTF-8 bytes of a document (None: all)
    chunk_bytes         score longer documents chunk by chunk (0: never), reduced by
    chunk_reduce        ``max`` or ``mean`` (see ``ncd.document_score``)
    tokenizer           a tokenizer.json for token counts (None: the regex counter)
    contamination_ngram n of the contamination guard's n-grams (0: no guard)
    threads             scoring threads per worker process
    batch_size          documents per scoring call
    progress_interval   seconds between progress lines (0: none; local runs)
    """
    compressor: str = "gzip"
    level: int = 1
    max_doc_bytes: Optional[int] = None
    chunk_bytes: int = ncd.DEFAULT_CHUNK_BYTES
    chunk_reduce: str = "max"
    tokenizer: Optional[str] = None
    contamination_ngram: int = contamination.DEFAULT_NGRAM
    threads: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    progress_interval: float = 0.0

    def __post_init__(self):
        if self.max_doc_bytes is not None and self.max_doc_bytes < 1:
            raise ValueError(f"--max-doc-bytes must be a positive integer, got {self.max_doc_bytes}")
        if self.chunk_bytes < 0:
            raise ValueError(f"--chunk-bytes must be >= 0 (0: no chunking), got {self.chunk_bytes}")
        if self.chunk_reduce not in ncd.CHUNK_REDUCERS:
            raise ValueError(f"--chunk-reduce must be one of {ncd.CHUNK_REDUCERS}")
        ncd.check_compressor(self.compressor, self.level)
        if self.threads < 1 or self.batch_size < 1:
            raise ValueError("scoring threads and batch size must be >= 1")
        if self.progress_interval < 0:
            raise ValueError("--progress-interval must be >= 0")
        if self.contamination_ngram < 0:
            raise ValueError("--contamination-ngram must be >= 0 (0 turns the guard off)")

    @property
    def long_documents(self) -> Dict:
        """``ncd.document_score``'s keyword arguments."""
        return dict(max_bytes=self.max_doc_bytes, chunk_bytes=self.chunk_bytes or None,
                    reduce=self.chunk_reduce)

    def is_chunked(self, size: int) -> bool:
        """Whether a document of ``size`` UTF-8 bytes is scored in chunks."""
        return self.chunked_above is not None and size > self.chunked_above

    @property
    def chunked_above(self) -> Optional[int]:
        """Documents over this many UTF-8 bytes are scored in chunks (None: none is)."""
        if not self.chunk_bytes or (self.max_doc_bytes and self.max_doc_bytes <= self.chunk_bytes):
            return None
        return self.chunk_bytes


class PreparedTargets(NamedTuple):
    """The target set as every worker uses it: ids and texts in (source, position) order,
    and a fingerprint of their content."""
    ids: Tuple[str, ...]
    texts: Tuple[str, ...]
    fingerprint: str

    def target_set(self, spec: ScoringSpec) -> ncd.TargetSet:
        return ncd.TargetSet([t.encode("utf-8") for t in self.texts], spec.compressor, spec.level)

    def ngram_index(self, n: int) -> contamination.ContaminationIndex:
        return contamination.ContaminationIndex(
            e for i, t in zip(self.ids, self.texts) for e in contamination.target_ngrams(i, t, n))

    def tag(self, *settings) -> str:
        """The name of an object built from these targets and ``settings``."""
        return ":".join([self.fingerprint, *map(str, settings)])


def prepare_targets(targets: Sequence[Document]) -> PreparedTargets:
    """Order the targets by (source, position) and fingerprint their texts (SHA-256)."""
    ordered = sorted(targets, key=lambda d: (d.source, d.position))
    h = hashlib.sha256()
    for d in ordered:
        h.update(d.text.encode("utf-8"))
        h.update(b"\0")
    return PreparedTargets(tuple(d.id for d in ordered), tuple(d.text for d in ordered), h.hexdigest())


# Bump when a change to parsing, scoring, token counting or the guard changes any key of a
# key table (``io.keys``): tables in a --cache made before then are scored again.
SCORES_VERSION = 2  # 2: the guard's token hash (was blake2b-64)


def scoring_fingerprint(spec: ScoringSpec, targets: PreparedTargets, text, id_field: str,
                        group_field: Optional[str], tokenizer_digest: Optional[str] = None,
                        max_record_bytes: Optional[int] = None) -> str:
    """A digest of everything that decides a source file's keys: the targets' content, the
    settings that change scores, token counts or the guard (not threads, batch size or
    progress), which lengths this machine computes (``ncd.scoring_class``: tables made with
    zlib-ng are not reused where scores follow canonical zlib), how records become documents
    (text spec, id and group fields, the largest record read), the content of the tokenizer
    file and ``SCORES_VERSION``."""
    import json
    parts = {"version": SCORES_VERSION, "targets": targets.fingerprint,
             "compressor": spec.compressor, "level": spec.level,
             "lengths": ncd.scoring_class(ncd.scoring_identity(spec.compressor, spec.level)),
             "max_doc_bytes": spec.max_doc_bytes, "chunk_bytes": spec.chunk_bytes,
             "chunk_reduce": spec.chunk_reduce, "tokenizer": spec.tokenizer,
             "tokenizer_sha256": tokenizer_digest, "ngram": spec.contamination_ngram,
             "text": repr(text), "id_field": id_field, "group_field": group_field,
             "max_record_bytes": max_record_bytes}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
