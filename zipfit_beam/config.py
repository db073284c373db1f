"""The selection job's settings: a frozen, validated dataclass. No argparse here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from zipfit_beam import contamination, ncd

OUTPUT_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class SelectConfig:
    """Everything that decides a selection.

    ``sources`` / ``targets``: file patterns (local paths or any Beam filesystem, e.g.
    gs://); ``output``: the directory that receives ``selected-*``, ``rejected-*`` and
    ``manifest.json``.
    """
    sources: Tuple[str, ...]
    targets: Tuple[str, ...]
    output: str
    top_k: int
    text_field: str = "text"
    id_field: str = "id"
    target_text_field: Optional[str] = None  # defaults to text_field
    compressor: str = "gzip"
    level: int = 1
    num_shards: int = 0  # 0: let the runner decide
    output_suffix: str = ".jsonl"
    scoring_threads: int = 1  # threads per worker process inside the scoring step
    batch_size: int = 64  # documents per scoring call (amortises per-element overhead)
    overwrite: bool = False
    # Contamination guard: documents sharing a run of this many normalized tokens with a
    # target are left out of the selection (kept with allow_contaminated); 0 turns it off.
    contamination_ngram: int = contamination.DEFAULT_NGRAM
    allow_contaminated: bool = False
    group_field: Optional[str] = None  # record field the report breaks the corpus down by
    report: bool = True  # write report.html + PNG plots next to the output
    progress_interval: float = 0.0  # seconds between progress lines (0: off)

    def __post_init__(self):
        if not self.sources:
            raise ValueError("at least one --source pattern is required")
        if not self.targets:
            raise ValueError("at least one --target pattern is required")
        if not self.output:
            raise ValueError("--output is required")
        if self.top_k < 1:
            raise ValueError(f"--top-k must be a positive integer, got {self.top_k}")
        ncd.check_compressor(self.compressor, self.level)
        if self.num_shards < 0:
            raise ValueError("--num-shards must be >= 0")
        if self.output_suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"output suffix must be one of {OUTPUT_SUFFIXES}")
        if self.scoring_threads < 1 or self.batch_size < 1:
            raise ValueError("scoring threads and batch size must be >= 1")
        if self.contamination_ngram < 0:
            raise ValueError("--contamination-ngram must be >= 0 (0 turns the guard off)")
        if self.progress_interval < 0:
            raise ValueError("--progress-interval must be >= 0")
        if self.group_field == "":
            raise ValueError("--group-field must not be empty")
        for name in ("text_field", "id_field"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} must not be empty")

    @property
    def target_field(self) -> str:
        return self.target_text_field or self.text_field

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AlignConfig:
    """Settings of ``zipfit-beam align``: the dataset-level ZIP-FIT alignment of a source
    corpus with a target set, over every source document or a deterministic sample of
    ``sample`` of them (``seed`` picks which)."""
    sources: Tuple[str, ...]
    targets: Tuple[str, ...]
    text_field: str = "text"
    id_field: str = "id"
    target_text_field: Optional[str] = None
    compressor: str = "gzip"
    level: int = 1
    sample: Optional[int] = None  # None: every document
    seed: int = 0
    output: Optional[str] = None  # where the result JSON is written (default: printed only)
    scoring_threads: int = 1
    batch_size: int = 64
    progress_interval: float = 0.0

    def __post_init__(self):
        if not self.sources:
            raise ValueError("at least one --source pattern is required")
        if not self.targets:
            raise ValueError("at least one --target pattern is required")
        ncd.check_compressor(self.compressor, self.level)
        if self.sample is not None and self.sample < 2:
            raise ValueError("--sample must be at least 2 (a standard error needs two documents)")
        if self.scoring_threads < 1 or self.batch_size < 1:
            raise ValueError("scoring threads and batch size must be >= 1")

    @property
    def target_field(self) -> str:
        return self.target_text_field or self.text_field

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
