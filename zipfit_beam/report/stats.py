"""Small mergeable statistics behind the report and ``align``. Pure: no Beam.

Everything here is built to be combined in pieces (per bundle, then merged), so the
pipeline can summarize any corpus without collecting documents in one place.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

__all__ = ["source_hash", "sample_key", "sample_keys", "histogram_bin", "merge_counts", "rebin", "MeanVariance",
           "mean_estimate"]

# Histogram bins are fixed so partial histograms merge by adding counts: bin i holds scores
# in [i * w, (i + 1) * w). Scores sit in a narrow band (gzip-1 alignments of real corpora span
# ~0.05), so the bins are fine and the histogram is sparse; the report re-bins for display.
HISTOGRAM_BIN_WIDTH = 1e-4
SNIPPET_CHARS = 600


_MASK64 = (1 << 64) - 1
_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  # splitmix64


@functools.lru_cache(maxsize=4096)
def source_hash(source: str, seed: int = 0) -> int:
    """The 64-bit hash of a source file's name (and the seed) that its records' sample keys
    start from (cached: a run names few files, and each record's key starts here)."""
    h = hashlib.blake2b(f"{seed}\0{source}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def sample_key(source: str, position: int, seed: int = 0) -> int:
    """A stable pseudo-random 64-bit key per record: the smallest keys form a deterministic
    uniform sample (same files, same seed -> same sample on every runner). splitmix64's
    finaliser of (source hash + position): a bijection of 64-bit words, so the records of
    one file never share a key. ``sample_keys`` computes the same over arrays."""
    z = (source_hash(source, seed) + position + _MIX[0]) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX[1]) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX[2]) & _MASK64
    return z ^ (z >> 31)


def sample_keys(source_hashes, positions):
    """``sample_key`` of each (``source_hash``, position) pair, as a numpy uint64 array."""
    import numpy as np
    with np.errstate(over="ignore"):
        z = np.asarray(source_hashes, dtype=np.uint64) + np.asarray(positions).astype(np.uint64) \
            + np.uint64(_MIX[0])
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX[1])
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX[2])
        return z ^ (z >> np.uint64(31))


def histogram_bin(score: float, width: float = HISTOGRAM_BIN_WIDTH) -> int:
    return math.floor(score / width)


def histogram_of(scores, width: float = HISTOGRAM_BIN_WIDTH) -> Dict[int, int]:
    """{``histogram_bin``: count} of a numpy array of scores."""
    import numpy as np
    bins, counts = np.unique(np.floor(np.asarray(scores, dtype=np.float64) / width), return_counts=True)
    return {int(b): int(c) for b, c in zip(bins, counts)}


def merge_counts(parts: Iterable[Dict]) -> Dict:
    out: Dict = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


def rebin(histograms: Sequence[Dict[int, int]], width: float,
          bins: int = 60) -> Tuple[List[float], List[List[int]]]:
    """Fine sparse histograms {bin: count} -> (edges, counts per histogram) on one grid of
    ``bins`` equal bars over the range any of them occupies, for display."""
    occupied = [b for h in histograms for b in h]
    if not occupied:
        return [0.0, width], [[0] for _ in histograms]
    lo, hi = min(occupied), max(occupied) + 1
    step = max(1, math.ceil((hi - lo) / bins))
    n = math.ceil((hi - lo) / step)
    out = []
    for h in histograms:
        counts = [0] * n
        for b, c in h.items():
            counts[(b - lo) // step] += c
        out.append(counts)
    return [(lo + i * step) * width for i in range(n + 1)], out


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
