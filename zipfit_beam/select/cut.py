"""Which documents are selected, and how the cut is found at corpus scale. Pure: no Beam.

A selection is always a *prefix of the ranking* (score descending, then id, source,
position: ``records.rank_key``), restricted to documents with ``score >= min_score`` when
a floor is given. The mode decides how long the prefix is:

    top_k K           the first min(K, n) documents
    fraction p        the first floor(p * N) documents, N = every scored document
                      (p is taken as the decimal it is written as: 0.29 * 100 = 29, not 28)
    token_budget T    the longest prefix whose token count is <= T: the walk stops at the
                      first document that does not fit, even if a later, shorter one would

All three are "the longest prefix whose total *weight* is at most a budget", with weight
1 per document (top_k, fraction; budget K) or its token count (token_budget; budget T).
Every document counts at least one token (``tokens.py``), so every weight is >= 1.

Finding the cut without sorting, and without holding the selection on one worker
---------------------------------------------------------------------------------
Each score maps to 64 *rank bits*: an unsigned integer that orders exactly like the
ranking's first component (``-score``), so a smaller value is a better score. The cut is
found by a most-significant-digit radix select over those bits, 16 bits per round:

    round r (1..4): histogram of the candidates by their next 16-bit digit (round 1: of
                    every key, documents under the floor in a bin of their own)
                    -> per digit: document count, token sum, worst key in the bin
                    walk the digits best first: whole bins that fit the remaining budget
                    are selected; the first bin that does not fit holds the boundary and
                    becomes the candidate set of the next round
    after round 4:  the candidates share all 64 bits, i.e. one exact score: sort those
                    ties by (id, source, position) and walk them with the budget left

Every histogram has at most 2**16 bins, whatever K or N is; each round scans only the
previous round's boundary bin. Only exact score ties at the boundary are ever gathered on
one worker. The result is a ``Cut``: the last selected key, and the selected count and
tokens. A document is selected iff its key <= that last key (keys are unique).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

from zipfit_beam.records import RankKey

__all__ = ["SelectionRule", "SelectionKey", "Cut", "keeps", "weight", "rank_bits", "Cursor",
           "start", "first_digit", "first_round", "is_next_candidate", "is_candidate",
           "digit", "histogram_add", "histogram_merge", "advance", "resolve", "find_cut",
           "brute_force_cut", "selected_keys", "threshold_json"]

RANK_BITS = 64
DIGIT_BITS = 16
ROUNDS = RANK_BITS // DIGIT_BITS
_DIGIT_MASK = (1 << DIGIT_BITS) - 1
_SIGN = 1 << 63
_ALL = (1 << 64) - 1

MODES = ("top_k", "token_budget", "fraction")


@dataclass(frozen=True)
class SelectionRule:
    """Exactly one of ``top_k``, ``token_budget``, ``fraction``; ``min_score`` optional."""
    top_k: Optional[int] = None
    token_budget: Optional[int] = None
    fraction: Optional[float] = None
    min_score: Optional[float] = None

    def __post_init__(self):
        given = [m for m in MODES if getattr(self, m) is not None]
        if len(given) != 1:
            flags = ", ".join("--" + m.replace("_", "-") for m in MODES)
            got = "none" if not given else " and ".join("--" + m.replace("_", "-") for m in given)
            raise ValueError(f"exactly one of {flags} is required (got {got})")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"--top-k must be a positive integer, got {self.top_k}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"--token-budget must be a positive integer, got {self.token_budget}")
        if self.fraction is not None and not (0 < self.fraction <= 1):
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ValueError(f"--min-score must be a finite number, got {self.min_score}")

    @property
    def mode(self) -> str:
        return next(m for m in MODES if getattr(self, m) is not None)

    @property
    def weighs_tokens(self) -> bool:
        return self.token_budget is not None

    def budget(self, scored: int) -> int:
        """The weight budget, given the number of scored documents (for ``fraction``)."""
        if self.top_k is not None:
            return self.top_k
        if self.token_budget is not None:
            return self.token_budget
        return math.floor(Fraction(repr(float(self.fraction))) * scored)

    def passes_floor(self, score: float) -> bool:
        return self.min_score is None or score >= self.min_score

    def to_dict(self) -> dict:
        return {"mode": self.mode, self.mode: getattr(self, self.mode), "min_score": self.min_score}


class SelectionKey(NamedTuple):
    """What selection needs of a scored document: its ranking key and token count."""
    key: RankKey
    tokens: int


class Cut(NamedTuple):
    """Where the selection ends: ``last`` is the worst selected key (None: nothing is
    selected); ``selected``/``tokens``: how many documents and tokens the prefix holds;
    ``scored``: how many documents were ranked."""
    last: Optional[RankKey]
    selected: int
    tokens: int
    scored: int

    @property
    def threshold(self) -> Optional[RankKey]:
        """The last selected key, or None when nothing was cut off (or nothing selected)."""
        return None if self.selected == self.scored else self.last


def keeps(cut: Cut, key: RankKey) -> bool:
    """Is the document with this key selected?"""
    return cut.last is not None and key <= cut.last


def weight(tokens: int, weighs_tokens: bool) -> int:
    return tokens if weighs_tokens else 1


def rank_bits(key: RankKey) -> int:
    """64 bits that order like the key's first component, ``-score`` (smaller = better).

    IEEE-754 doubles order like their bit patterns once negative values have all bits
    flipped and non-negative ones the sign bit set. -0.0 is folded into 0.0, which Python
    compares equal to it."""
    x = key[0] + 0.0  # -0.0 + 0.0 == 0.0
    if x != x:
        raise ValueError("a NaN score cannot be ranked")
    (b,) = struct.unpack(">Q", struct.pack(">d", x))
    return (~b & _ALL) if b & _SIGN else (b | _SIGN)


# --- one radix round -------------------------------------------------------------------

class Cursor(NamedTuple):
    """The state between rounds. Every document in a bin better than the candidate bin is
    selected (``selected``, ``tokens``, ``last`` sum them up); the candidate bin is the
    documents whose top ``bits`` rank bits equal ``prefix``; ``budget`` is the weight
    still available for it. ``open`` is False once the cut is known."""
    bits: int
    prefix: int
    budget: int
    selected: int
    tokens: int
    last: Optional[RankKey]
    open: bool
    scored: int


def start(rule: SelectionRule, scored: int) -> Cursor:
    budget = rule.budget(scored)
    return Cursor(0, 0, budget, 0, 0, None, budget > 0, scored)


BELOW_FLOOR = -1  # round 1's bin for documents under --min-score: counted, never selected


def first_digit(sk: SelectionKey, rule: SelectionRule) -> int:
    """Round 1's bin: the top 16 rank bits, or BELOW_FLOOR. Needs no cursor, so round 1
    can run in the same pass that produces the keys."""
    if not rule.passes_floor(-sk.key[0]):
        return BELOW_FLOOR
    return rank_bits(sk.key) >> (RANK_BITS - DIGIT_BITS)


def first_round(hist: "Histogram", rule: SelectionRule) -> Cursor:
    """The cursor after round 1: every document counts as scored (for ``fraction``), the
    bins above the floor are walked."""
    cursor = start(rule, sum(b[0] for b in hist.values()))
    return advance(cursor, {d: b for d, b in hist.items() if d != BELOW_FLOOR}, rule)


def is_next_candidate(sk: SelectionKey, cursor: Cursor, rule: SelectionRule) -> bool:
    """Round 2's filter over all keys: in round 1's boundary bin and above the floor."""
    return is_candidate(sk, cursor) and rule.passes_floor(-sk.key[0])


def is_candidate(sk: SelectionKey, cursor: Cursor) -> bool:
    if not cursor.open:
        return False
    return cursor.bits == 0 or rank_bits(sk.key) >> (RANK_BITS - cursor.bits) == cursor.prefix


def digit(sk: SelectionKey, cursor: Cursor) -> int:
    """The next 16 bits of the key's rank bits below the cursor's fixed prefix."""
    return (rank_bits(sk.key) >> (RANK_BITS - cursor.bits - DIGIT_BITS)) & _DIGIT_MASK


# A histogram: digit -> [count, token sum, worst (largest) key in the bin].
Histogram = Dict[int, list]


def histogram_add(hist: Histogram, d: int, sk: SelectionKey) -> Histogram:
    b = hist.get(d)
    if b is None:
        hist[d] = [1, sk.tokens, sk.key]
    else:
        b[0] += 1
        b[1] += sk.tokens
        if sk.key > b[2]:
            b[2] = sk.key
    return hist


def histogram_merge(hists: Iterable[Histogram]) -> Histogram:
    out: Histogram = {}
    for h in hists:
        for d, (count, tokens, worst) in h.items():
            b = out.get(d)
            if b is None:
                out[d] = [count, tokens, worst]
            else:
                b[0] += count
                b[1] += tokens
                if worst > b[2]:
                    b[2] = worst
    return out


def advance(cursor: Cursor, hist: Histogram, rule: SelectionRule) -> Cursor:
    """Walk the candidate bin's sub-bins best first: take each whole sub-bin whose weight
    fits the budget; the first one that does not becomes the next candidate bin. Weights
    are >= 1, so once the budget is 0 nothing more can fit and the cut is known."""
    if not cursor.open:
        return cursor
    budget, selected, tokens, last = cursor.budget, cursor.selected, cursor.tokens, cursor.last
    for d in sorted(hist):
        count, tok, worst = hist[d]
        w = tok if rule.weighs_tokens else count
        if w <= budget:
            budget -= w
            selected += count
            tokens += tok
            last = worst
            continue
        return Cursor(cursor.bits + DIGIT_BITS, (cursor.prefix << DIGIT_BITS) | d, budget,
                      selected, tokens, last, budget > 0, cursor.scored)
    return Cursor(cursor.bits, cursor.prefix, budget, selected, tokens, last, False, cursor.scored)


def resolve(cursor: Cursor, ties: Sequence[SelectionKey], rule: SelectionRule) -> Cut:
    """After the last round: the candidates share one exact score; walk them in key order
    with the budget left. With a closed cursor there are no ties and the cut is known."""
    budget, selected, tokens, last = cursor.budget, cursor.selected, cursor.tokens, cursor.last
    if cursor.open:
        for sk in sorted(ties):
            w = weight(sk.tokens, rule.weighs_tokens)
            if w > budget:
                break
            budget -= w
            selected += 1
            tokens += sk.tokens
            last = sk.key
    return Cut(last, selected, tokens, cursor.scored)


# --- the same rounds in memory, and the brute-force oracle ----------------------------

def find_cut(keys: Sequence[SelectionKey], rule: SelectionRule) -> Cut:
    """Run the radix rounds in one process, exactly as the Beam transform runs them
    (used by tests, by ``reselect`` planning and as documentation of the algorithm)."""
    hist: Histogram = {}
    for sk in keys:
        histogram_add(hist, first_digit(sk, rule), sk)
    cursor = first_round(hist, rule)
    candidates = [sk for sk in keys if is_next_candidate(sk, cursor, rule)]
    for _ in range(ROUNDS - 1):
        hist = {}
        for sk in candidates:
            histogram_add(hist, digit(sk, cursor), sk)
        cursor = advance(cursor, hist, rule)
        candidates = [sk for sk in candidates if is_candidate(sk, cursor)]
    return resolve(cursor, candidates, rule)


def brute_force_cut(keys: Sequence[SelectionKey], rule: SelectionRule) -> Cut:
    """The definition, by sorting everything: the oracle the tests compare against."""
    budget = rule.budget(len(keys))
    selected, tokens, last = 0, 0, None
    for sk in sorted(keys):
        if not rule.passes_floor(-sk.key[0]):
            break  # sorted by score: everything after is below the floor too
        w = weight(sk.tokens, rule.weighs_tokens)
        if w > budget:
            break
        budget -= w
        selected += 1
        tokens += sk.tokens
        last = sk.key
    return Cut(last, selected, tokens, len(keys))


def selected_keys(keys: Iterable[SelectionKey], cut: Cut) -> List[SelectionKey]:
    return [sk for sk in keys if keeps(cut, sk.key)]


def threshold_json(key: Optional[RankKey]) -> Optional[dict]:
    """The manifest's ``threshold``: the ranking key of the last selected document."""
    if key is None:
        return None
    neg_score, doc_id, source, position = key
    return {"score": -neg_score, "id": doc_id, "source": source, "position": position}
