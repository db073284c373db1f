"""Counting tokens for ``--token-budget`` and the scores table. No Beam import at module level.

The default counter needs no download: it counts the pieces GPT-2's pre-tokenizer regex
cuts a text into (a word with its leading space, a run of up to 3 digits, a run of
punctuation, underscores, whitespace). Measured by ``benchmarks/token_counter.py`` on 4,164
real documents (Python functions, man pages, C headers, Perl, HumanEval), it gives 0.96x
the tokens of OpenAI's cl100k_base in total (median ratio per document 0.99; 94% of
documents within 20%), and 0.86x those of a 65k-vocabulary BPE (Anthropic's legacy
tokenizer). It runs at about 50 us per KB in CPython; in the scoring pass it is counted by the
C extension ``_docwork`` (same pieces, GIL released, a few us per KB; see ``docwork``), and
``count_regex`` here is its definition and fallback.

``--tokenizer PATH`` counts with a Hugging Face ``tokenizer.json`` instead, through the
``tokenizers`` library (optional extra ``zipfit-beam[tokenizers]``); PATH may be any Beam
filesystem path (local, gs://). Special tokens are not added.

Every counter returns at least 1 for a document: the selection maths relies on every
document weighing something (an empty text is rejected before it is counted anyway).
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence

__all__ = ["count_regex", "TokenCounter", "HFTokenCounter", "load_counter", "counter_name"]

DEFAULT_COUNTER = "regex-gpt2"

# GPT-2's pattern ('s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+) in Python's
# ``re``: [^\W\d_] is a letter; digit runs are capped at 3 as in cl100k; \w includes "_",
# so underscores get their own branch. Every character is matched by some branch.
_PRETOKEN = re.compile(
    r"""'(?i:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|_+|\s+(?!\S)|\s+""")


# Longer texts are counted match by match: findall's list would hold one string per token
# (about 10x the text's size in memory).
_FINDALL_CHARS = 1 << 20


def count_regex(text: str) -> int:
    if len(text) <= _FINDALL_CHARS:
        return max(1, len(_PRETOKEN.findall(text)))
    return max(1, sum(1 for _ in _PRETOKEN.finditer(text)))


class TokenCounter:
    """Counts tokens of texts. ``name`` says which counter it is (recorded in manifests)."""
    name = DEFAULT_COUNTER

    def count(self, texts: Sequence[str]) -> List[int]:
        return [count_regex(t) for t in texts]


class HFTokenCounter(TokenCounter):
    """A Hugging Face ``tokenizer.json``, read through Beam's FileSystems."""

    def __init__(self, path: str):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ValueError("--tokenizer needs the 'tokenizers' package: "
                             "pip install 'zipfit-beam[tokenizers]'") from e
        from apache_beam.io.filesystems import FileSystems  # only to open PATH anywhere
        try:
            with FileSystems.open(path) as f:
                spec = f.read().decode("utf-8")
            self._tokenizer = Tokenizer.from_str(spec)
        except Exception as e:
            raise ValueError(f"--tokenizer {path!r}: not a readable tokenizer.json: {e}") from e
        self.name = f"tokenizer.json:{path}"

    def count(self, texts: Sequence[str]) -> List[int]:
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [max(1, len(e.ids)) for e in encoded]


def load_counter(tokenizer: Optional[str]) -> TokenCounter:
    """The counter for ``--tokenizer`` (None: the default regex counter)."""
    return HFTokenCounter(tokenizer) if tokenizer else TokenCounter()


def counter_name(tokenizer: Optional[str]) -> str:
    return f"tokenizer.json:{tokenizer}" if tokenizer else DEFAULT_COUNTER
