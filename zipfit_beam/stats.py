"""Small mergeable statistics behind the report and ``align``. Pure: no Beam.

Everything here is built to be combined in pieces (per bundle, then merged), so the
pipeline can summarize any corpus without collecting documents in one place.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

# Histogram bins are fixed so partial histograms merge by adding counts: bin i holds scores
# in [i * w, (i + 1) * w). Scores sit in a narrow band (gzip-1 alignments of real corpora span
# ~0.05), so the bins are fine and the histogram is sparse; the report re-bins for display.
HISTOGRAM_BIN_WIDTH = 1e-4
SNIPPET_CHARS = 600


def count_tokens(text: str) -> int:
    """Whitespace-separated tokens: the token measure of the report. One function, so a
    model tokenizer can replace it in one place."""
    return len(text.split())


class DocFacts(NamedTuple):
    """What the report needs to know about one scored document (no full text)."""
    id: str
    score: float
    source: str
    position: int
    n_bytes: int  # UTF-8 bytes of the text
    n_tokens: int  # count_tokens(text)
    group: str  # the --group-field value ("" when not asked for, "(missing)" when absent)
    selected: bool
    contaminated: bool
    snippet: str  # the first SNIPPET_CHARS characters of the text


MISSING_GROUP = "(missing)"


def record_text_and_group(record: bytes, text_field: str,
                          group_field: Optional[str]) -> Tuple[str, str]:
    """The text and group of a record that parsing already accepted (a JSON object with a
    string in ``text_field``). The group is the field's value as text: strings as they are,
    other JSON values serialized, ``MISSING_GROUP`` when the field is absent or null."""
    obj = json.loads(record)
    text = obj[text_field]
    if not group_field:
        return text, ""
    value = obj.get(group_field)
    if value is None:
        group = MISSING_GROUP
    elif isinstance(value, str):
        group = value
    else:
        group = json.dumps(value, sort_keys=True)
    return text, group


def sample_key(source: str, position: int, seed: int = 0) -> int:
    """A stable pseudo-random 64-bit key per record: the smallest keys form a deterministic
    uniform sample (same files, same seed -> same sample on every runner)."""
    h = hashlib.blake2b(f"{seed}\0{source}\0{position}".encode("utf-8", "surrogatepass"),
                        digest_size=8)
    return int.from_bytes(h.digest(), "big")


def histogram_bin(score: float, width: float = HISTOGRAM_BIN_WIDTH) -> int:
    return math.floor(score / width)


def merge_counts(parts: Iterable[Dict]) -> Dict:
    out: Dict = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


def rebin(histogram: Dict[int, int], width: float, bins: int = 60):
    """Fine sparse histogram {bin: count} -> (edges, counts) over the occupied range in
    ``bins`` equal bins, for display."""
    if not histogram:
        return [0.0, width], [0]
    lo, hi = min(histogram), max(histogram) + 1
    step = max(1, math.ceil((hi - lo) / bins))
    n = math.ceil((hi - lo) / step)
    counts = [0] * n
    for b, c in histogram.items():
        counts[(b - lo) // step] += c
    edges = [(lo + i * step) * width for i in range(n + 1)]
    return edges, counts


class MeanVariance(NamedTuple):
    """Count, mean and sum of squared deviations (Chan et al.'s parallel form): merges
    exactly in any order up to float rounding, without the cancellation of sum/sum-of-squares."""
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> "MeanVariance":
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return MeanVariance(n, mean, self.m2 + delta * (x - mean))

    def merge(self, other: "MeanVariance") -> "MeanVariance":
        if not other.n:
            return self
        if not self.n:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return MeanVariance(n, self.mean + delta * other.n / n,
                            self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1 in the denominator)."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def mean_estimate(stats: MeanVariance, population: Optional[int]) -> Dict:
    """The mean of a simple random sample as an estimate of the population mean, with its
    standard error (finite-population corrected when ``population`` is known) and a normal
    95% confidence interval. A full pass (n == population) has zero sampling error."""
    n = stats.n
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "standard_error": None, "ci95": None}
    fpc = 1.0
    if population:
        fpc = max(0.0, (population - n) / (population - 1)) if population > 1 else 0.0
    se = stats.std / math.sqrt(n) * math.sqrt(fpc) if n > 1 else None
    ci = None if se is None else [stats.mean - Z_95 * se, stats.mean + Z_95 * se]
    return {"mean": stats.mean, "std": stats.std, "n": n, "standard_error": se, "ci95": ci}
