"""``ZipFitSelect``: ZIP-FIT selection as a transform over a PCollection of records (dicts),
for a Beam pipeline that already has its data (from BigQuery, Kafka, its own parsing)::

    import zipfit_beam
    result = records | zipfit_beam.ZipFitSelect(targets=["def add(a, b): ...", ...], top_k=1000)
    result.selected   # the selected records, each with "zipfit_score"
    result.rejected   # DeadLetters: records without usable text or id, with their reason

It shares the file job's core: the same parsing (``io.parse``), scoring
(``score.transforms.BatchScorer``: exact kernel, guard, token counts) and selection
(``select.transforms.SelectDocuments``: the exact radix cut, ties broken by id). The text
passes through no shuffle: each record stays where it was scored, paired with its small
key; only the keys go through the cut's rounds, and the pairs are filtered by the cut (a
singleton side input). A runner keeps the pairs until the cut is known: in memory on the
local runner (about the records' own size plus ~150 bytes each), on disk between stages
on Flink or Dataflow. For a corpus in files, the CLI's file job reads them again instead.
"""

from __future__ import annotations

import hashlib
from typing import Any, List, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.pvalue import AsSingleton, PCollection

from zipfit_beam.formats import SCORE_FIELD, row_json
from zipfit_beam.io.parse import parse_object
from zipfit_beam.io.read import REJECTED_TAG, route_dead_letter
from zipfit_beam.io.templates import TextSpec, text_spec
from zipfit_beam.records import DeadLetter, Document, ScoredDocument, rank_key
from zipfit_beam.score.spec import ScoringSpec, prepare_targets
from zipfit_beam.score.transforms import BatchScorer
from zipfit_beam.select import cut as sel
from zipfit_beam.select.cut import SelectionRule
from zipfit_beam.select.transforms import SelectDocuments

__all__ = ["ZipFitSelect", "ZipFitSelection", "ZipFitSelectYaml", "RECORDS_SOURCE"]

RECORDS_SOURCE = "records"  # the ``source`` of documents made from records


def record_position(record: Any) -> int:
    """A stable stand-in for a record's position (records in a PCollection have none): a
    hash of its content, so equal ids with equal scores still rank the same on every run."""
    return int.from_bytes(hashlib.blake2b(row_json(record), digest_size=8).digest(), "big") >> 1


def as_documents(targets: Sequence[Union[str, dict]], text: TextSpec, id_field: str) -> List[Document]:
    """Targets given as strings or records -> Documents (a bad one is an error)."""
    docs = []
    for i, t in enumerate(targets):
        record = {"text": t} if isinstance(t, str) else t
        doc = parse_object(record, "targets", i, b"", "text" if isinstance(t, str) else text, id_field)
        if isinstance(doc, DeadLetter):
            raise ValueError(f"target {i}: {doc.reason} ({doc.detail})")
        docs.append(doc if not isinstance(t, str) else doc._replace(id=f"target-{i}"))
    if not docs:
        raise ValueError("the target set is empty")
    return docs


class ParseRecordDoFn(beam.DoFn):
    """record -> (Document, record), or a DeadLetter (with the record as JSON) on the
    ``rejected`` tag. Any exception while parsing one record makes it a dead letter."""

    def __init__(self, text: TextSpec, id_field: str, group_field: Optional[str]):
        self._text, self._id_field, self._group_field = text, id_field, group_field

    def process(self, record):
        try:
            position = record_position(record)
            parsed = parse_object(record, RECORDS_SOURCE, position, b"", self._text,
                                  self._id_field, self._group_field) if isinstance(record, dict) else \
                DeadLetter(RECORDS_SOURCE, position, "not_an_object",
                           f"a {type(record).__name__}, not a dict", b"")
        except Exception as e:  # noqa: BLE001  one bad record must not fail the job
            parsed = DeadLetter(RECORDS_SOURCE, -1, "unparseable", f"{type(e).__name__}: {e}", b"")
        if isinstance(parsed, DeadLetter):
            try:
                parsed = parsed._replace(record=row_json(record))
            except Exception:  # noqa: BLE001  not JSON-serialisable: keep its repr
                parsed = parsed._replace(record=repr(record).encode("utf-8", "backslashreplace"))
            yield route_dead_letter(parsed)
        else:
            yield parsed, record


class ScoreRecordsDoFn(beam.DoFn):
    """[(Document, record)] + PreparedTargets -> (ScoredDocument, record) per pair."""

    def __init__(self, spec: ScoringSpec):
        self._scorer = BatchScorer(spec)

    def setup(self):
        self._scorer.setup()

    def teardown(self):
        self._scorer.teardown()

    def process(self, batch, targets):
        scored = self._scorer.score([d for d, _ in batch], targets)
        yield from zip(scored, (r for _, r in batch))


class ZipFitSelection(NamedTuple):
    selected: PCollection  # PCollection[dict]: the selected records with "zipfit_score"
    rejected: PCollection  # PCollection[DeadLetter]
    scored: PCollection  # PCollection[ScoredDocument]: every scored record's key
    cut: PCollection  # singleton PCollection[select.cut.Cut]


class ZipFitSelect(beam.PTransform):
    """PCollection[dict] -> ZipFitSelection: the records best aligned with ``targets``.

    ``targets``: a list of strings, a list of records (their text by ``target_text_field``
    or ``target_text_template``, default as for the sources), or a PCollection of either.
    How much to keep: exactly one of ``top_k``, ``token_budget``, ``fraction``, optionally
    with ``min_score``. ``text_field`` / ``text_template`` / ``id_field`` / ``group_field``:
    where a record's text, id and group are (a record without an id gets a digest of its
    text). ``compressor``, ``level``, ``contamination_ngram`` (0: no guard),
    ``allow_contaminated`` and the rest of ``ScoringSpec`` (or ``spec=``) say how records
    are scored. The selection equals the brute-force one, ties broken by id."""

    def __init__(self, targets, top_k: Optional[int] = None, token_budget: Optional[int] = None,
                 fraction: Optional[float] = None, min_score: Optional[float] = None,
                 text_field: str = "text", text_template: Optional[str] = None,
                 id_field: str = "id", group_field: Optional[str] = None,
                 target_text_field: Optional[str] = None, target_text_template: Optional[str] = None,
                 compressor: str = "gzip", level: Optional[int] = None,
                 allow_contaminated: bool = False, spec: Optional[ScoringSpec] = None, **spec_fields):
        super().__init__()
        from zipfit_beam.score import ncd
        self._rule = SelectionRule(top_k=top_k, token_budget=token_budget, fraction=fraction,
                                   min_score=min_score)
        self._text = text_spec(text_field, text_template)
        target_text = (text_spec(target_text_field, target_text_template)
                       if target_text_field or target_text_template else self._text)
        self._id_field, self._group_field = id_field, group_field
        self._spec = spec or ScoringSpec(
            compressor=compressor, level=ncd.default_level(compressor) if level is None else level,
            **spec_fields)
        self._allow_contaminated = allow_contaminated
        self._targets = targets if isinstance(targets, PCollection) else \
            prepare_targets(as_documents(list(targets), target_text, id_field))
        self._target_text = target_text

    def expand(self, records):
        spec, text, id_field = self._spec, self._target_text, self._id_field
        if isinstance(self._targets, PCollection):
            targets = (self._targets
                       | "TargetList" >> beam.combiners.ToList()
                       | "PrepareTargets" >> beam.Map(lambda ts: prepare_targets(as_documents(
                           sorted(ts, key=lambda t: row_json(t if isinstance(t, dict) else {"text": t})),
                           text, id_field))))
        else:
            targets = records.pipeline | "CreateTargets" >> beam.Create([self._targets])
        parsed = (records
                  | "Parse" >> beam.ParDo(ParseRecordDoFn(self._text, id_field, self._group_field))
                  .with_outputs(REJECTED_TAG, main="documents"))
        pairs = (parsed.documents
                 | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=spec.batch_size)
                 | "Score" >> beam.ParDo(ScoreRecordsDoFn(spec), AsSingleton(targets)))
        exclude = bool(spec.contamination_ngram) and not self._allow_contaminated
        keys = pairs | "Keys" >> beam.Map(lambda pair: pair[0]).with_output_types(ScoredDocument)
        candidates = keys | "Candidates" >> beam.Filter(lambda d: not (exclude and d.contaminated_by))
        selection = candidates | "SelectDocuments" >> SelectDocuments(self._rule)

        def keep(pair, cut):
            key, _ = pair
            return not (exclude and key.contaminated_by) and sel.keeps(cut, rank_key(key))

        selected = (pairs
                    | "KeepSelected" >> beam.Filter(keep, AsSingleton(selection.cut))
                    | "WithScore" >> beam.MapTuple(lambda key, record: {
                        **{k: v for k, v in record.items() if k != SCORE_FIELD}, SCORE_FIELD: key.score}))
        return ZipFitSelection(selected, parsed[REJECTED_TAG], keys, selection.cut)


class ZipFitSelectYaml(beam.PTransform):
    """``type: ZipFitSelect`` in a Beam YAML pipeline (see the README): rows in, the selected
    rows (with ``zipfit_score``) as output ``selected`` and the dead letters as ``rejected``
    (source, position, reason, detail). The config keys are ``ZipFitSelect``'s arguments.

        providers:
          - type: python
            config: {}
            transforms:
              ZipFitSelect: zipfit_beam.jobs.records.ZipFitSelectYaml
    """

    def __init__(self, **config):
        super().__init__()
        self._select = ZipFitSelect(**config)

    def expand(self, rows):
        def as_dict(row):
            return row._asdict() if hasattr(row, "_asdict") else dict(row)

        from apache_beam.typehints.row_type import RowTypeConstraint

        # The selected rows keep the input's schema, plus zipfit_score (a YAML sink needs one).
        fields = [(n, t) for n, t in getattr(rows.element_type, "_fields", ()) if n != SCORE_FIELD]
        result = rows | "AsRecords" >> beam.Map(as_dict) | "ZipFitSelect" >> self._select
        return {
            "selected": result.selected | "AsRows" >> beam.Map(lambda r: beam.Row(**r)).with_output_types(
                RowTypeConstraint.from_fields(fields + [(SCORE_FIELD, float)])),
            "rejected": result.rejected | "DeadLetterRows" >> beam.Map(
                lambda d: beam.Row(source=d.source, position=d.position, reason=d.reason,
                                   detail=d.detail)).with_output_types(RowTypeConstraint.from_fields(
                    [("source", str), ("position", int), ("reason", str), ("detail", str)])),
        }
