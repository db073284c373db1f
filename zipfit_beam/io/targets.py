"""The target set, read and parsed in the launcher before the job starts, so that a broken
target file is a clear error rather than a silently smaller target set."""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

from zipfit_beam import formats
from zipfit_beam.formats.base import DEFAULT_MAX_RECORD_BYTES
from zipfit_beam.io import hf
from zipfit_beam.io.files import resolve_inputs
from zipfit_beam.io.parse import needed_fields, parse_any
from zipfit_beam.io.read import iter_input
from zipfit_beam.io.templates import TextSpec, as_text_spec
from zipfit_beam.records import DeadLetter, Document

__all__ = ["load_targets"]


def load_targets(patterns: Sequence[str], text: Union[str, TextSpec], id_field: str,
                 fmt: str = "auto",
                 max_record_bytes: Optional[int] = DEFAULT_MAX_RECORD_BYTES) -> List[Document]:
    """Read and parse the (small) target set.

    A pattern is a file glob (any format of ``formats.TARGET_FORMATS``: JSONL, Parquet,
    Avro; .csv/.tsv/.arrow/.txt through ``datasets``), a directory written by
    ``datasets``' ``save_to_disk``, or ``hf:NAME[:CONFIG][:SPLIT]`` for a dataset on the
    Hugging Face Hub. ``fmt`` (from ``--target-format``) overrides the format of matched
    files. Any unusable record is an error listing them (one over ``max_record_bytes``
    included)."""
    if fmt != "auto" and fmt not in formats.TARGET_FORMATS:
        raise ValueError(f"--target-format must be auto or one of {', '.join(formats.TARGET_FORMATS)}")
    spec = as_text_spec(text)
    fields = needed_fields(spec, id_field)
    docs, problems = [], []

    def add(record):
        parsed = record if isinstance(record, DeadLetter) else parse_any(record, spec, id_field)
        if isinstance(parsed, DeadLetter):
            problems.append(f"{parsed.source}:{parsed.position}: {parsed.reason} ({parsed.detail})")
        else:
            docs.append(parsed)

    for pattern in patterns:
        if hf.is_hf_target(pattern):
            for record in hf.load_rows(pattern):
                add(record)
            continue
        for path in resolve_inputs([pattern], "--target"):
            kind = formats.detect_format(path, targets=True) if fmt == "auto" else fmt
            for record in iter_input(path, kind, fields, max_record_bytes):
                add(record)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"{len(problems)} target record(s) cannot be used:\n  {shown}")
    if not docs:
        raise ValueError("the target set is empty")
    return docs
