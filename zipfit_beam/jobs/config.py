"""The settings of the selection (and reselect, align) jobs: frozen, validated dataclasses.
No argparse here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from zipfit_beam import formats
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.io.templates import FieldText, TextSpec, TextTemplate
from zipfit_beam.score import contamination, ncd
from zipfit_beam.score.spec import DEFAULT_BATCH_SIZE, ScoringSpec
from zipfit_beam.select.cut import SelectionRule

__all__ = ["SelectConfig", "ReselectConfig", "AlignConfig"]

OUTPUT_SUFFIXES = tuple(formats.OUTPUT_SUFFIXES)
DEFAULT_CHUNK_BYTES = ncd.DEFAULT_CHUNK_BYTES


class InputSettings:
    """What ``select`` and ``align`` share: how sources and targets are read and their text
    found, and how documents are scored. Mixed into their frozen dataclasses, which hold
    the fields (sources, targets, formats, text fields and templates, id field,
    compressor, level, long-document settings, threads, batch size, progress interval)."""

    def _check_inputs(self) -> None:
        if not self.sources:
            raise ValueError("at least one --source pattern is required")
        if not self.targets:
            raise ValueError("at least one --target pattern is required")
        self.scoring  # validates the scoring settings
        if self.source_format not in ("auto",) + formats.SOURCE_FORMATS:
            raise ValueError(f"--format must be auto or one of {', '.join(formats.SOURCE_FORMATS)}")
        if self.target_format not in ("auto",) + formats.TARGET_FORMATS:
            raise ValueError(f"--target-format must be auto or one of {', '.join(formats.TARGET_FORMATS)}")
        for spec in ("source_text", "target_text"):  # compile the templates: a bad one fails here
            getattr(self, spec)
        for name in ("text_field", "id_field"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} must not be empty")
        if self.max_record_bytes < 1:
            raise ValueError("--max-record-bytes must be at least 1")

    @property
    def target_field(self) -> str:
        return self.target_text_field or self.text_field

    @property
    def source_text(self) -> TextSpec:
        """Where a source record's text comes from: the template, else the text field."""
        if self.text_template is not None:
            return TextTemplate(self.text_template)
        return FieldText(self.text_field)

    @property
    def target_text(self) -> TextSpec:
        """A target's text: --target-text-template, --target-text-field, then the source's."""
        if self.target_text_template is not None:
            return TextTemplate(self.target_text_template)
        if self.target_text_field is not None:
            return FieldText(self.target_text_field)
        return self.source_text

    # The guard and the token counter: select's settings; align uses neither.
    tokenizer: Optional[str] = None
    contamination_ngram: int = 0

    @property
    def scoring(self) -> ScoringSpec:
        """The scoring settings, as the transforms take them."""
        return ScoringSpec(
            compressor=self.compressor, level=self.level, max_doc_bytes=self.max_doc_bytes,
            chunk_bytes=self.chunk_bytes, chunk_reduce=self.chunk_reduce, tokenizer=self.tokenizer,
            contamination_ngram=self.contamination_ngram, threads=self.scoring_threads,
            batch_size=self.batch_size, progress_interval=self.progress_interval)


class SelectionFlags:
    """The selection rule of a config with ``top_k``, ``token_budget``, ``fraction`` and
    ``min_score`` fields (select and reselect share it)."""

    @property
    def rule(self) -> SelectionRule:
        return SelectionRule(top_k=self.top_k, token_budget=self.token_budget,
                             fraction=self.fraction, min_score=self.min_score)

@dataclass(frozen=True)
class SelectConfig(InputSettings, SelectionFlags):
    """Everything that decides a selection.

    ``sources`` / ``targets``: file patterns (local paths or any Beam filesystem, e.g.
    gs://; targets also ``hf:NAME[:CONFIG][:SPLIT]`` and ``save_to_disk`` directories);
    ``output``: the directory that receives ``selected-*``, ``rejected-*`` and
    ``manifest.json``. ``*_format``: ``auto`` follows each file's name. ``text_template``
    builds the text from several fields (see ``templates``). ``output_format`` None and
    ``output_suffix`` None: the output follows the sources' format.
    """
    sources: Tuple[str, ...]
    targets: Tuple[str, ...]
    output: str
    # Selection (``selection.SelectionRule``): exactly one of top_k, token_budget, fraction;
    # min_score is an extra floor.
    top_k: Optional[int] = None
    text_field: str = "text"
    id_field: str = "id"
    target_text_field: Optional[str] = None  # defaults to text_field
    compressor: str = "gzip"
    level: int = 1
    num_shards: int = 0  # 0: one shard per io.write.SHARD_BYTES of records
    output_suffix: Optional[str] = None  # None: the output format's default (.jsonl, .parquet, .avro)
    scoring_threads: int = 1  # threads per worker process inside the scoring step
    batch_size: int = DEFAULT_BATCH_SIZE  # documents per scoring call
    overwrite: bool = False
    source_format: str = "auto"
    target_format: str = "auto"
    text_template: Optional[str] = None
    target_text_template: Optional[str] = None
    output_format: Optional[str] = None  # None: as the sources (or as --output-suffix names)
    token_budget: Optional[int] = None
    fraction: Optional[float] = None
    min_score: Optional[float] = None
    tokenizer: Optional[str] = None  # a tokenizer.json; None: the regex counter (tokens.py)
    # Long documents (ncd.document_score): truncate to max_doc_bytes, then score documents
    # longer than chunk_bytes chunk by chunk (0: never) and reduce by chunk_reduce.
    max_doc_bytes: Optional[int] = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_reduce: str = "max"
    write_scores: bool = False  # publish the key tables as DIR/scores/ (for reselect)
    cache: Optional[str] = None  # directory of key tables reused across runs (io.keys)
    # Contamination guard: documents sharing a run of this many normalized tokens with a
    # target are left out of the selection (kept with allow_contaminated); 0 turns it off.
    contamination_ngram: int = contamination.DEFAULT_NGRAM
    allow_contaminated: bool = False
    group_field: Optional[str] = None  # record field the report breaks the corpus down by
    report: bool = True  # write report.html + PNG plots next to the output
    progress_interval: float = 0.0  # seconds between progress lines (0: off)
    # A record (JSONL line, Parquet/Avro row) larger than this is a record_too_large dead
    # letter, never held whole by a reader (see formats.base).
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def __post_init__(self):
        self._check_inputs()
        if not self.output:
            raise ValueError("--output is required")
        self.rule  # validates the selection flags
        if self.num_shards < 0:
            raise ValueError("--num-shards must be >= 0")
        if self.output_suffix is not None and self.output_suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"--output-suffix must be one of {', '.join(OUTPUT_SUFFIXES)}")
        if self.output_format is not None and self.output_format not in formats.SOURCE_FORMATS:
            raise ValueError(f"--output-format must be one of {', '.join(formats.SOURCE_FORMATS)}")
        if self.output_format and self.output_suffix and \
                formats.OUTPUT_SUFFIXES[self.output_suffix][0] != self.output_format:
            raise ValueError(f"--output-suffix {self.output_suffix} does not fit "
                             f"--output-format {self.output_format}")
        if self.group_field == "":
            raise ValueError("--group-field must not be empty")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReselectConfig(SelectionFlags):
    """A new selection from the scores table of a previous ``select --write-scores`` run.

    ``scores``: that run's output directory (``scores/`` and ``manifest.json``);
    ``sources``: the source files it read, to copy the selected records from."""
    scores: str
    sources: Tuple[str, ...]
    output: str
    top_k: Optional[int] = None
    token_budget: Optional[int] = None
    fraction: Optional[float] = None
    min_score: Optional[float] = None
    num_shards: int = 0
    output_suffix: Optional[str] = None  # None: as the scoring run's output
    overwrite: bool = False

    def __post_init__(self):
        if not self.scores or not self.output:
            raise ValueError("--scores and --output are required")
        if not self.sources:
            raise ValueError("at least one --source pattern is required")
        if self.scores.rstrip("/") == self.output.rstrip("/"):
            raise ValueError("--output must differ from --scores (it holds the scores being read)")
        self.rule  # validates the selection flags
        if self.num_shards < 0:
            raise ValueError("--num-shards must be >= 0")
        if self.output_suffix is not None and self.output_suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"output suffix must be one of {OUTPUT_SUFFIXES}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AlignConfig(InputSettings):
    """Settings of ``zipfit-beam align``: the dataset-level ZIP-FIT alignment of a source
    corpus with a target set, over every source document or a deterministic sample of
    ``sample`` of them (``seed`` picks which). Sources, targets, text and scoring settings
    mean what they mean for ``select``."""
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
    batch_size: int = DEFAULT_BATCH_SIZE
    progress_interval: float = 0.0
    source_format: str = "auto"
    target_format: str = "auto"
    text_template: Optional[str] = None
    target_text_template: Optional[str] = None
    max_doc_bytes: Optional[int] = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_reduce: str = "max"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # as for select

    def __post_init__(self):
        self._check_inputs()
        if self.sample is not None and self.sample < 2:
            raise ValueError("--sample must be at least 2 (a standard error needs two documents)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
