"""The elements that cross PCollections, and the ranking key.

Every record read is exactly one of: a ``Document`` that gets scored, or a
``DeadLetter`` with a reason. ``source`` + ``position`` (file path, 1-based line)
name the record in its input, so every element can be traced back.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class RawRecord(NamedTuple):
    """One undecoded input record: a line of a JSONL shard."""
    source: str
    position: int
    data: bytes


class Document(NamedTuple):
    """A parsed source or target document."""
    id: str
    text: str
    source: str
    position: int
    record: bytes  # the original record, unchanged, for the output


class ScoredDocument(NamedTuple):
    """A document with its ZIP-FIT alignment score (the text is no longer needed), its
    token count (``tokens.py``) and the UTF-8 size of its text."""
    id: str
    score: float
    source: str
    position: int
    record: bytes
    tokens: int = 1
    text_bytes: int = 0


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


