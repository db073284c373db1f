"""The elements that cross PCollections, and the ranking key.

Every record read is exactly one of: a ``Document`` that gets scored, or a
``DeadLetter`` with a reason. ``source`` + ``position`` name the record in its input
(JSONL: file path and 1-based line; Parquet/Avro: file path and 0-based row index;
Hugging Face targets: the dataset and row index), so every element can be traced back.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

__all__ = ["RawRecord", "RowRecord", "Document", "ScoredDocument", "DeadLetter", "rank_key",
           "ContaminationHit"]


class RawRecord(NamedTuple):
    """One undecoded input record: a line of a JSONL shard."""
    source: str
    position: int
    data: bytes


class RowRecord(NamedTuple):
    """One decoded input row (Parquet, Avro): only the fields scoring needs (text or
    template fields, id). ``position`` is the 0-based row index within the file."""
    source: str
    position: int
    row: dict


class Document(NamedTuple):
    """A parsed source or target document."""
    id: str
    text: str
    source: str
    position: int
    record: bytes  # b"" for sources (the selected records are read again, whole, when the
    # output is written, so the text is the only copy of a record that travels)
    group: Optional[str] = None  # the --group-field value (``parsing.group_value``); None: not asked


class ScoredDocument(NamedTuple):
    """A document's score and where it lives: small (no text, no record), so every scored
    document can be kept, ranked and shuffled cheaply. The records of the selected ones
    are fetched from their source files at the end (``writers.FetchSelected``). ``tokens``
    (``tokens.py``) and ``text_bytes`` (UTF-8 size) feed token budgets and reports;
    ``group`` is the document's ``--group-field`` value (None: not asked for);
    ``contaminated_by`` the id of the target it shares an n-gram with ("": none, or the
    guard is off; see ``contamination``), found while the text was at hand."""
    id: str
    score: float
    source: str
    position: int
    tokens: int = 1
    text_bytes: int = 0
    group: Optional[str] = None
    contaminated_by: str = ""


class DeadLetter(NamedTuple):
    """An input record that could not be scored, and why."""
    source: str
    position: int
    reason: str
    detail: str
    record: bytes


# Ranking: score descending, then id ascending; (source, position) makes the key
# unique even when two records share an id, so "exactly K" always holds.
RankKey = Tuple[float, str, str, int]


def rank_key(doc: ScoredDocument) -> RankKey:
    """Smaller key = better rank."""
    return (-doc.score, doc.id, doc.source, doc.position)


class ContaminationHit(NamedTuple):
    """A scored source document that shares an n-gram with a target (see ``contamination``)."""
    id: str
    score: float
    source: str
    position: int
    target_id: str  # the target it shares the most n-grams with
