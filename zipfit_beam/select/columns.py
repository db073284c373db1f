"""The cut's per-document steps over columns of keys, with numpy. Pure: no Beam.

A key table (``io.keys``) is read a batch of rows at a time as ``KeyColumns``: the scores and
token counts as arrays, the rest of each key looked up only for the few rows that need it.
Each function gives exactly what its per-key counterpart in ``select.cut`` gives over the
same rows, in one pass of array operations instead of a Python call (and a tuple) per
document:

    first_histogram(columns, rule)    = histogram_add(first_digit(key)) over every row
    candidates(columns, cursor, rule) = the keys that pass is_next_candidate (round 2)
    kept(columns, cut)                = the rows that keeps(cut, key) selects

Only the rows that decide something become Python objects: the worst key of each bin (one
per bin, found among the bin's lowest scores), the candidates, the kept rows, and the rows
whose score equals the cut's last score (their ids decide).
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Sequence

import numpy as np

from zipfit_beam.records import RankKey
from zipfit_beam.select.cut import (BELOW_FLOOR, DIGIT_BITS, RANK_BITS, Cursor, Cut, Histogram,
                                    SelectionKey, SelectionRule)

__all__ = ["KeyColumns", "rank_bits_of", "first_histogram", "candidates", "kept"]

_SIGN = np.uint64(1 << 63)


class KeyColumns(NamedTuple):
    """A batch of keys: ``score`` (float64) and ``tokens`` (int64) arrays of n rows, and
    ``rest(i)`` -> (id, source, position) of row i."""
    score: np.ndarray
    tokens: np.ndarray
    rest: Callable[[int], tuple]

    def key(self, i: int) -> RankKey:
        return (-float(self.score[i]),) + tuple(self.rest(i))

    def selection_key(self, i: int) -> SelectionKey:
        return SelectionKey(self.key(i), int(self.tokens[i]))


def rank_bits_of(score: np.ndarray) -> np.ndarray:
    """``cut.rank_bits`` of every score's key (whose first part is -score), as uint64
    (-0.0 folded into 0.0)."""
    x = -np.asarray(score, dtype=np.float64) + 0.0
    if np.isnan(x).any():
        raise ValueError("a NaN score cannot be ranked")
    b = x.view(np.uint64)
    return np.where(b & _SIGN, ~b, b | _SIGN)


def _floor_mask(score: np.ndarray, rule: SelectionRule) -> np.ndarray:
    if rule.min_score is None:
        return np.ones(len(score), dtype=bool)
    return score >= rule.min_score


def first_histogram(columns: KeyColumns, rule: SelectionRule) -> Histogram:
    """Round 1's histogram of the batch: per top-16-bit digit (BELOW_FLOOR for rows under
    the floor), the row count, token sum and worst (largest) key."""
    n = len(columns.score)
    if n == 0:
        return {}
    digits = (rank_bits_of(columns.score) >> np.uint64(RANK_BITS - DIGIT_BITS)).astype(np.int64)
    digits[~_floor_mask(columns.score, rule)] = BELOW_FLOOR
    # rows by digit, lowest score (the worst key's first component) first within each
    order = np.lexsort((columns.score, digits))
    d_sorted = digits[order]
    starts = np.flatnonzero(np.r_[True, d_sorted[1:] != d_sorted[:-1]])
    counts = np.diff(np.r_[starts, n])
    tokens = np.add.reduceat(columns.tokens.astype(np.int64)[order], starts)
    s_sorted = columns.score[order]
    hist: Histogram = {}
    for j, start in enumerate(starts):
        end = start + counts[j]
        lowest = s_sorted[start]
        # the rows sharing the bin's lowest score (0.0 and -0.0 alike): their ids decide
        ties = start + int(np.searchsorted(s_sorted[start:end], lowest, side="right"))
        worst = max(columns.key(int(i)) for i in order[start:ties])
        hist[int(d_sorted[start])] = [int(counts[j]), int(tokens[j]), worst]
    return hist


def candidates(columns: KeyColumns, cursor: Cursor, rule: SelectionRule) -> List[SelectionKey]:
    """The batch's keys in the cursor's candidate bin and above the floor (round 2)."""
    if not cursor.open or len(columns.score) == 0:
        return []
    mask = _floor_mask(columns.score, rule)
    if cursor.bits:
        prefix = rank_bits_of(columns.score) >> np.uint64(RANK_BITS - cursor.bits)
        mask &= prefix == np.uint64(cursor.prefix)
    return [columns.selection_key(int(i)) for i in np.flatnonzero(mask)]


def kept(columns: KeyColumns, cut: Cut) -> Sequence[int]:
    """The rows of the batch that the cut selects (key <= cut.last), in row order."""
    if cut.last is None or len(columns.score) == 0:
        return []
    last_score = -cut.last[0]
    score = columns.score
    better = np.flatnonzero(score > last_score)
    tied = np.flatnonzero(score == last_score)
    if len(tied) == 0:
        return better.tolist()
    keep = [int(i) for i in tied if columns.key(int(i)) <= cut.last]
    return np.sort(np.r_[better, np.array(keep, dtype=np.int64)]).tolist()
