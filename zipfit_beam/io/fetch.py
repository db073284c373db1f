"""Reading the selected records back from their source files (late materialisation).

Scoring keeps only small keys, so no step holds or shuffles the corpus text while the
selection is found; at the end the selected keys are grouped by source file and each
file is read again by one worker, only where it holds selected records.
"""

from __future__ import annotations

from typing import Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from zipfit_beam import formats
from zipfit_beam.io.files import open_file
from zipfit_beam.io.parse import parse_any
from zipfit_beam.io.templates import TextSpec, as_text_spec
from zipfit_beam.records import RankKey

__all__ = ["FetchSelectedDoFn", "FetchSelected"]


class FetchSelectedDoFn(beam.DoFn):
    """(source file, [(position, id, score), ...]) -> (RankKey, record) for the selected
    records of one file, read again and carrying ``zipfit_score`` as the file's format
    does it (``Format.with_score``: a JSONL line spliced byte for byte, or a whole row
    dict); ``source_format``: ``--format`` (``auto``: from each file's name); with
    ``with_score`` False, the RawRecord / RowRecord as read. Each record is
    parsed again and must give the id that was scored, so a source file that changed since
    scoring is an error, never a wrong selection. ``counter``: the Metrics counter of
    fetched records."""

    def __init__(self, source_format: str, text: Union[str, TextSpec],
                 id_field: str, counter: str = "fetched", with_score: bool = True):
        self._source_format, self._text, self._id_field = source_format, as_text_spec(text), id_field
        self._fetched = Metrics.counter("zipfit", counter)
        self._with_score = with_score

    def process(self, element):
        path, wanted = element
        by_position = {position: (doc_id, score) for position, doc_id, score in wanted}
        fmt = formats.format_of(path, self._source_format)
        found = 0
        with open_file(path) as f:
            for record in fmt.take(f, path, sorted(by_position)):
                doc_id, score = by_position[record.position]
                if getattr(parse_any(record, self._text, self._id_field), "id", None) != doc_id:
                    raise ValueError(f"{path}:{record.position} changed since it was scored "
                                     f"(scored as id {doc_id!r})")
                found += 1
                # The ranking key orders and shards the output deterministically.
                key: RankKey = (-score, doc_id, path, record.position)
                yield key, fmt.with_score(record, score) if self._with_score else record
        self._fetched.inc(found)
        if found != len(by_position):
            raise ValueError(f"{path}: {len(by_position) - found} selected records are missing; "
                             "the file changed since it was scored")


class FetchSelected(beam.PTransform):
    """PCollection[ScoredDocument] -> PCollection[(RankKey, record)]: the selected records
    read back from their source files (see FetchSelectedDoFn). ``counter``: the Metrics
    counter of fetched records (``fetched`` for the selection); ``with_score``: see the DoFn."""

    def __init__(self, source_format: str, text: Union[str, TextSpec],
                 id_field: str, counter: str = "fetched", with_score: bool = True):
        super().__init__()
        self._args = (source_format, text, id_field, counter, with_score)

    def expand(self, selected):
        return (selected
                | "KeyByFile" >> beam.Map(lambda d: (d.source, (d.position, d.id, d.score)))
                | "GroupByFile" >> beam.GroupByKey()
                | "FetchRecords" >> beam.ParDo(FetchSelectedDoFn(*self._args)))
