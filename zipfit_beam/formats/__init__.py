"""Input and output formats: one module per format behind one protocol
(``formats.base.Format``), and this registry of their names and suffixes. Pure: no Beam.

    jsonl    JSON Lines, optionally .gz/.zst/.bz2/.xz compressed (also the default for a
             name no other format claims)
    parquet  .parquet, .pq
    avro     .avro
    hf       targets only: .csv/.tsv/.arrow/.txt through ``datasets`` (reading only)

Adding a format is one module and one line in ``FORMATS``; no code outside this package
branches on a format's name.
"""

from __future__ import annotations

import posixpath
from types import ModuleType
from typing import Dict, Iterable, Optional, Tuple

from zipfit_beam.formats import avro, hf, jsonl, parquet
from zipfit_beam.formats.base import SCORE_FIELD, Format, dead_letter_row, record_size, row_json

__all__ = ["FORMATS", "SOURCE_FORMATS", "TARGET_FORMATS", "OUTPUT_SUFFIXES", "SCORE_FIELD",
           "Format", "get", "detect_format", "format_of", "resolve_output", "dead_letter_row",
           "record_size", "row_json"]

# Name -> module. No two claim the same file name, so the order is only that of help texts.
FORMATS: Dict[str, ModuleType] = {m.NAME: m for m in (jsonl, parquet, avro, hf)}
SOURCE_FORMATS = tuple(n for n, m in FORMATS.items() if hasattr(m, "write_shard"))
TARGET_FORMATS = tuple(FORMATS)
DEFAULT_FORMAT = jsonl.NAME  # a name no format claims
# Output suffix -> (format, codec); each format's first suffix is its default.
OUTPUT_SUFFIXES: Dict[str, Tuple[str, Optional[str]]] = {
    suffix: (name, codec) for name in SOURCE_FORMATS for suffix, codec in FORMATS[name].SUFFIXES.items()}


def get(name: str) -> ModuleType:
    """The format module called ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}") from None


def detect_format(path: str, targets: bool = False) -> str:
    """The format of a file, from its name. Names no format claims are JSON Lines; formats
    that only read targets (``hf``) are refused for sources."""
    name = posixpath.basename(path.rstrip("/")).lower()
    for fmt, module in FORMATS.items():
        if module.claims(name):
            if fmt not in SOURCE_FORMATS and not targets:
                raise ValueError(
                    f"{path}: {posixpath.splitext(name)[1]} sources are not supported; convert them "
                    f"to {', '.join(SOURCE_FORMATS)} (targets in this format are read with `datasets`)")
            return fmt
    return DEFAULT_FORMAT


def format_of(path: str, source_format: str = "auto") -> ModuleType:
    """The module of a source file: ``source_format`` (``--format``), or from its name when
    that is ``auto``."""
    return get(detect_format(path) if source_format == "auto" else source_format)


def resolve_output(output_format: Optional[str], output_suffix: Optional[str],
                   input_formats: Iterable[str]) -> Tuple[str, str, Optional[str]]:
    """(format, suffix, codec) of the output: --output-format, else the format the
    --output-suffix names, else the sources' format (which must then be a single one)."""
    if output_suffix is not None and output_suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"unknown output suffix {output_suffix!r}; choose one of "
                         + ", ".join(OUTPUT_SUFFIXES))
    fmt = output_format
    if fmt is None and output_suffix is not None:
        fmt = OUTPUT_SUFFIXES[output_suffix][0]
    if fmt is None:
        found = sorted(set(input_formats))
        if len(found) != 1:
            raise ValueError(f"the sources mix formats ({', '.join(found)}); "
                             "choose the output's with --output-format")
        fmt = found[0]
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(SOURCE_FORMATS)}")
    suffix = output_suffix or next(iter(FORMATS[fmt].SUFFIXES))
    if OUTPUT_SUFFIXES[suffix][0] != fmt:
        raise ValueError(f"output suffix {suffix!r} does not fit output format {fmt!r}; use one "
                         f"of {', '.join(FORMATS[fmt].SUFFIXES)}")
    return fmt, suffix, OUTPUT_SUFFIXES[suffix][1]
