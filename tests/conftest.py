"""Tiny fixtures shared by the three test layers: real documents from the bundled example
(Python stdlib functions, man pages, C headers, Perl), a few HumanEval targets, a set of
malformed lines with the reason each must be rejected for, and a brute-force oracle."""

from __future__ import annotations

import gzip
import itertools
import json
import os
from typing import Dict, Iterable, List

import pytest

from zipfit_beam.jobs.example import EXAMPLE_SOURCE, EXAMPLE_TARGETS

# (line, reason): one of each way a record can be unusable.
BAD_LINES = [
    (b'{"id": "bad-json", "text": "unterminated', "invalid_json"),
    (b'[1, 2, 3]', "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"id": "no-text", "body": "x"}', "missing_text"),
    (b'{"id": "num-text", "text": 42}', "text_not_string"),
    (b'{"id": "null-text", "text": null}', "text_not_string"),
    (b'{"id": "empty", "text": ""}', "empty_text"),
    (b'{"id": "blank", "text": "  \\n\\t "}', "empty_text"),
    (b'{"id": "latin1", "text": "caf\xe9"}', "invalid_utf8"),
    (b'{"id": "surrogate", "text": "\\ud800 lone"}', "invalid_utf8"),
    (b'{"id": {"nested": 1}, "text": "def f(): pass"}', "invalid_id"),
    (b'   ', "blank_line"),
]


# What every select run writes next to its shards and manifest (``report``, ``summary``).
REPORT_FILES = ["report-groups.svg", "report-score-histogram.svg", "report-score-vs-length.svg",
                "report-tokens.svg", "report.html", "summary.json"]


def read_jsonl(path: str) -> List[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_lines(path, lines: Iterable[bytes]) -> str:
    data = b"\n".join(lines) + b"\n"
    path = str(path)
    with (gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")) as f:
        f.write(data)
    return path


def write_jsonl(path, records: Iterable[dict]) -> str:
    return write_lines(path, (json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records))


@pytest.fixture(scope="session")
def sources() -> List[dict]:
    """40 real documents with ids, kinds interleaved."""
    return list(itertools.islice(read_jsonl(EXAMPLE_SOURCE), 40))


@pytest.fixture(scope="session")
def targets() -> List[dict]:
    return read_jsonl(EXAMPLE_TARGETS)[:5]


# The gzip-module oracles give canonical gzip-1 lengths only where Python links a canonical zlib
# (ncd.CANONICAL_ZLIB). On another deflate (zlib-ng, Fedora 40+) our gzip scores still follow
# canonical zlib whenever the kernel is built, so tests of the scores against these oracles, or
# of golden lengths, do not apply there.
def _oracle_is_canonical() -> bool:
    from zipfit_beam.score import ncd
    return ncd.zlib_is_canonical()


ORACLE_IS_CANONICAL = pytest.mark.skipif(
    not _oracle_is_canonical(),
    reason="this Python's zlib is not canonical (see ncd.CANONICAL_ZLIB): the gzip-module oracle "
           "gives other lengths than the scores, which follow canonical zlib")


def gzip_len(s: str) -> int:
    return len(gzip.compress(s.encode("utf-8"), 1))


def oracle_scores(sources: List[dict], targets: List[dict]) -> Dict[str, float]:
    """Brute force straight from the paper's definition, with the gzip module."""
    t_lens = [gzip_len(t["text"]) for t in targets]
    out = {}
    for s in sources:
        c_x = gzip_len(s["text"])
        ncds = [(gzip_len(s["text"] + t["text"]) - min(c_x, c_y)) / max(c_x, c_y)
                for t, c_y in zip(targets, t_lens)]
        out[s["id"]] = 1 - sum(ncds) / len(ncds)
    return out


def oracle_top_k(scores: Dict[str, float], k: int) -> List[str]:
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def local_pipeline_options():
    from apache_beam.options.pipeline_options import PipelineOptions
    return PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])


@pytest.fixture
def test_pipeline():
    from apache_beam.testing.test_pipeline import TestPipeline
    return TestPipeline(options=local_pipeline_options())


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def oracle_select(docs, top_k=None, token_budget=None, fraction=None, min_score=None):
    """The selection modes straight from their definition, on (id, score, source, position,
    tokens) tuples: sort by (-score, id, source, position), walk best first, stop at the
    first document over the budget or below the floor. Returns the selected tuples."""
    import math
    from fractions import Fraction
    ranked = sorted(docs, key=lambda d: (-d[1], d[0], d[2], d[3]))
    if top_k is not None:
        budget, weigh = top_k, (lambda d: 1)
    elif token_budget is not None:
        budget, weigh = token_budget, (lambda d: d[4])
    else:
        budget, weigh = math.floor(Fraction(str(fraction)) * len(docs)), (lambda d: 1)
    out = []
    for d in ranked:
        if (min_score is not None and d[1] < min_score) or weigh(d) > budget:
            break
        budget -= weigh(d)
        out.append(d)
    return out
