"""One worker's work on each document, as one object. Pure: no Beam.

    DocumentWork(target set, guard index or None, token counter, long-document settings)
    .score_batch(texts, pool, threads) -> [DocumentResult(score, copied, tokens, size)] in order
    .submit(texts, pool, threads) -> Submitted;  .collect(submitted) -> the same list

Per document: its alignment with the targets (``ncd.document_score`` on the UTF-8 bytes),
the contamination guard's match (``contamination.ContaminationIndex.match``: the id of the
target it shares most n-grams with, "" when none) and its token count (the counter's). A
batch is cut into one part per thread; each part runs on a pool thread.

The C extension ``zipfit_beam.score._docwork`` (optional, built by ``pip install``) does a
part in one call that releases the GIL for the whole part: the guard, the default token
counter (``tokens.count_regex``) and, with a C kernel (``TargetSet.kernel``: gzip-1's
``Gzip1Targets``, lz4's ``Lz4Targets``, zstd's ``ZstdTargets``, which calls the library's own
code from C, and isal's ``IsalTargets``, unless ``ncd.ISAL_C_LOOP`` is off), the scores too,
through the kernel module's capsule (``fused_scores``). So the threads run on every core and
hardly wait for each other or for the Beam thread. Without a C kernel (gzip levels above 1,
lz4 levels above 2, or a kernel not built or not loaded) the scores come from
``ncd.document_score`` per document, after that call; so do the few the pass leaves to Python
(chunk scores reduced by mean; lz4 text past 2 GB, isal past 4 GB, an input the zstd or isal
library refused).

Its results are identical to the Python definitions: the same tokens, token hashes,
windows and target; the same pieces; the same scores (the same float operations in the same
order). ASCII documents are walked once for the guard and the counter (their bytes are the
str's own); the others walk the str's code points with Python's Unicode database (the ``re``
module's own predicates) and take the guard's tokens from Python's ``str.lower()`` (see the
extension's header). A self-check at import compares C and Python on a few texts; on a
mismatch the extension is not used. Without it, or with ``use_extension=False``, the same
results come from Python: ``index.match`` per document in the part, the counter over the
whole batch afterwards. A counter other than the default (``--tokenizer``) always counts the
whole batch.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import Executor
from typing import List, NamedTuple, Optional, Sequence, Tuple

from zipfit_beam.score import contamination, tokens
from zipfit_beam.score.ncd import CHUNK_REDUCERS, TargetSet, document_score

__all__ = ["DocumentResult", "DocumentWork", "ResultColumns", "Submitted", "extension_loaded", "count_tokens", "guard_matches"]


def _load_extension():
    """The C extension, or None when it is not built or disagrees with Python here."""
    try:
        from zipfit_beam.score import _docwork  # type: ignore[attr-defined]
    except ImportError:
        return None
    probe = ["", "def Foo_bar(x, y2):\n\treturn x>=Y2  # it's 12345 ", "naïve CAFÉ İstanbul ΟΔΟΣ ſt's",
             "a  b\r\n\t_ 'LL 'Ve x\u0301 \U0001F600 \x1c"]
    for text in probe:
        toks, hashes = _docwork._guard_tokens(text)
        expected = contamination.normalize(text)
        if ([t.decode("utf-8") for t in toks] != expected
                or hashes != [contamination.token_hash(t) for t in expected]
                or len(_docwork._pieces(text)) != len(tokens._PRETOKEN.findall(text))):
            return None
    return _docwork


_EXT = _load_extension()


def extension_loaded() -> bool:
    return _EXT is not None


class DocumentResult(NamedTuple):
    score: float  # alignment with the targets, under the long-document settings
    copied: str  # the target it shares most n-grams with ("" none, or no guard)
    tokens: int  # its token count (>= 1)
    size: int  # its UTF-8 size in bytes


# ContaminationIndex -> (GuardIndex, sorted ids), built once per index in a process and
# shared by every DocumentWork over it (a large index is copied into C once).
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()


def _compiled(index: contamination.ContaminationIndex):
    with _COMPILED_LOCK:
        found = _COMPILED.get(index)
        if found is None:
            tables, ids = index.tables()
            found = _COMPILED[index] = (_EXT.GuardIndex(tables, len(ids)), ids)
        return found


class DocumentWork:
    """The scoring pass over documents: score, guard, tokens (see the module docstring).
    Thread-safe: ``score_part`` may run on several threads at once."""

    def __init__(self, target_set: TargetSet, index: Optional[contamination.ContaminationIndex] = None,
                 counter: Optional[tokens.TokenCounter] = None, long_documents: Optional[dict] = None,
                 use_extension: bool = True):
        self.target_set, self.index = target_set, index
        self.counter = counter if counter is not None else tokens.TokenCounter()
        self.long_documents = dict(long_documents or {})
        reduce = self.long_documents.get("reduce", "max")
        if reduce not in CHUNK_REDUCERS:
            raise ValueError(f"chunk reduce must be one of {CHUNK_REDUCERS}, got {reduce!r}")
        ext = _EXT if use_extension else None
        self._ext = ext
        self._guard = self._ids = None
        if ext is not None and index is not None:
            self._guard, self._ids = _compiled(index)
        # the default counter is counted in the extension's pass; any other over the batch
        self._count_in_pass = ext is not None and self.counter.name == tokens.DEFAULT_COUNTER
        # with a C kernel (gzip-1, lz4, zstd, isal), scores are computed in the same pass (one
        # GIL release per part); the others score per document below
        self._kernel = target_set.kernel if ext is not None else None
        self._kernel_args = dict(max_bytes=self.long_documents.get("max_bytes") or -1,
                                 chunk_bytes=self.long_documents.get("chunk_bytes") or 0,
                                 chunk_mean=reduce == "mean")

    @property
    def engine(self) -> str:
        """'c' when the guard and default counter run in the extension, else 'python'."""
        return "c" if self._ext is not None else "python"

    @property
    def fused_scores(self) -> bool:
        """Whether the scores come from the extension's pass (a C kernel's alignment, GIL
        released), rather than from ``ncd.document_score`` per document."""
        return self._kernel is not None

    def score_part(self, texts: Sequence[str]) -> "ResultColumns":
        """The texts' results as columns, on this thread; ``tokens`` None when they are
        counted afterwards, over the whole batch (``collect``)."""
        target_set, long_docs = self.target_set, self.long_documents
        if not texts:
            return ResultColumns([], [], None, [])
        if self._kernel is not None:  # everything in one call
            rows = self._ext.analyze(texts, self._guard, self._count_in_pass, self._kernel, **self._kernel_args)
            counts, ranks, _windows, scores, sizes = map(list, zip(*rows))
            if None in scores:  # chunk scores averaged, or past the kernel's limit: Python's
                scores = [score if score is not None else document_score(target_set, t.encode("utf-8"), **long_docs)
                          for t, score in zip(texts, scores)]
            return ResultColumns(scores, self._copied(ranks), counts if self._count_in_pass else None, sizes)
        data = [t.encode("utf-8") for t in texts]
        scores = [document_score(target_set, b, **long_docs) for b in data]
        sizes = list(map(len, data))
        if self._ext is not None and (self._guard is not None or self._count_in_pass):
            counts, ranks, _windows = map(list, zip(*self._ext.analyze(texts, self._guard, self._count_in_pass)))
            return ResultColumns(scores, self._copied(ranks), counts if self._count_in_pass else None, sizes)
        index = self.index
        copied = [""] * len(texts)
        if index is not None:
            for i, t in enumerate(texts):
                match = index.match(t)
                if match is not None:
                    copied[i] = match.target_id
        return ResultColumns(scores, copied, None, sizes)

    def _copied(self, ranks: List[int]) -> List[str]:
        """The guard's ranks as target ids ("" for -1, and for every text without a guard)."""
        ids = self._ids
        if ids is None:
            return [""] * len(ranks)
        return [ids[r] if r >= 0 else "" for r in ranks]

    def score_batch(self, texts: Sequence[str], pool: Optional[Executor] = None,
                    threads: int = 1) -> List[DocumentResult]:
        """Every text's result, in order; the batch cut into ``threads`` parts run on ``pool``
        (None, or a single text: on this thread)."""
        return self.collect(self.submit(texts, pool, threads))

    def submit(self, texts: Sequence[str], pool: Optional[Executor] = None, threads: int = 1) -> "Submitted":
        """Start a batch on ``pool`` (cut into ``threads`` parts) and return at once; with no
        pool (or ``threads`` < 2) it is scored here, now. ``collect`` gives its results."""
        texts = list(texts)
        if pool is None or threads < 2 or len(texts) < 2:
            return Submitted(texts, [self.score_part(texts)])
        step = -(-len(texts) // threads)
        return Submitted(texts, [pool.submit(self.score_part, texts[i:i + step])
                                 for i in range(0, len(texts), step)])

    def collect(self, submitted: "Submitted") -> List[DocumentResult]:
        """A submitted batch's results, in order (waits for its parts; raises what they raised)."""
        return list(map(DocumentResult, *self.collect_columns(submitted)))

    def collect_columns(self, submitted: "Submitted") -> "ResultColumns":
        """``collect`` as columns: one list per field, in order, tokens counted."""
        parts = [part if isinstance(part, ResultColumns) else part.result() for part in submitted.parts]
        if len(parts) == 1:
            scores, copied, counts, sizes = parts[0]
        else:
            scores, copied, sizes = ([v for part in parts for v in part[f]] for f in (0, 1, 3))
            counts = None if parts[0].tokens is None else [v for part in parts for v in part.tokens]
        if counts is None:
            counts = self.counter.count(submitted.texts)
        return ResultColumns(scores, copied, counts, sizes)


class ResultColumns(NamedTuple):
    """A batch's ``DocumentResult`` fields, one list each (tokens None: not counted yet)."""
    scores: List[float]
    copied: List[str]
    tokens: Optional[List[int]]
    sizes: List[int]


class Submitted(NamedTuple):
    """A batch handed to ``DocumentWork.submit``: its texts, and per part its ResultColumns
    or a future of them."""
    texts: List[str]
    parts: list

    def done(self) -> bool:
        return all(isinstance(p, ResultColumns) or p.done() for p in self.parts)


def count_tokens(texts: Sequence[str]) -> List[int]:
    """``tokens.count_regex`` of each text, in the extension (GIL released) when it is built."""
    if _EXT is None:
        return [tokens.count_regex(t) for t in texts]
    return [n for n, _, _ in _EXT.analyze(list(texts), None, True)]


def guard_matches(index: contamination.ContaminationIndex, texts: Sequence[str]
                  ) -> List[Optional[contamination.Match]]:
    """``index.match`` of each text, in the extension when it is built (same answers)."""
    if _EXT is None:
        return [index.match(t) for t in texts]
    guard, ids = _compiled(index)
    return [contamination.Match(ids[rank], windows) if windows else None
            for _, rank, windows in _EXT.analyze(list(texts), guard, False)]

