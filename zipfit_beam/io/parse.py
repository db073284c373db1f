"""Turn one raw record (a JSONL line, or a decoded Parquet/Avro/Hugging Face row) into a
``Document`` or a ``DeadLetter``. Pure: no Beam.

Reasons a record is rejected (the ``reason`` field of a dead letter):
    blank_line, invalid_utf8, invalid_json, not_an_object, missing_text,
    text_not_string, empty_text, invalid_id,
    too_deeply_nested (arrays/objects nested deeper than ``formats.base.MAX_NESTING``, or
        too deep for a decoder's recursion),
    unparseable (anything else that raised while parsing or preparing the record; the
        detail names the exception),
    record_too_large (from a reader: over --max-record-bytes),
    corrupt_file (from a reader: a damaged compressed stream, Parquet footer or Avro block),
    corrupt_row_group (from the Parquet reader: a row group that cannot be decoded),
    corrupt_block (from the Avro reader: a block whose records cannot be decoded)

``parse_any`` never raises: whatever goes wrong with one record is that record's dead
letter, never the job's failure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

from zipfit_beam.formats.base import MAX_NESTING, reader_failure, safe_row_json
from zipfit_beam.io.templates import FieldText, TextSpec, as_text_spec
from zipfit_beam.records import DeadLetter, Document, RawRecord, RowRecord

__all__ = ["content_id", "group_value", "needed_fields", "fast_object", "parse_record",
           "parse_object", "parse_any", "parse_batch", "nesting_depth", "REASONS"]

try:  # a JSON decoder in C about 3x faster than json's on text (json's string scanner)
    import orjson as _orjson
except ImportError:  # optional at run time: json gives the same answers
    _orjson = None

try:  # the common JSON line's Document in one C pass (optional, built by pip install)
    from zipfit_beam.io import _jsonl  # type: ignore[attr-defined]
except ImportError:  # the same answers from orjson and Python
    _jsonl = None

REASONS = ("blank_line", "invalid_utf8", "invalid_json", "not_an_object", "missing_text",
           "text_not_string", "empty_text", "invalid_id", "too_deeply_nested", "unparseable",
           "record_too_large", "corrupt_file", "corrupt_row_group", "corrupt_block")


def content_id(text: str) -> str:
    """A stable id for a record without one: a digest of its text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


MISSING_GROUP = "(missing)"
GROUP_MAX_CHARS = 200  # a group is a label carried with every scored key: keep it small


def group_value(obj: Mapping, group_field: str) -> str:
    """A record's ``--group-field`` value as text: a string as it is, any other value as
    JSON (non-JSON values of Parquet/Avro rows, e.g. dates, as ``str``), ``MISSING_GROUP``
    when the field is absent or null; a lone surrogate (``"\\ud800"`` in JSON) is kept as
    that escape, so the group is valid UTF-8. Longer values are cut to ``GROUP_MAX_CHARS``
    characters (the group travels with every scored key). A group never rejects a record."""
    value: Any = obj.get(group_field)
    if value is None:
        return MISSING_GROUP
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if len(value) > GROUP_MAX_CHARS:
        value = value[:GROUP_MAX_CHARS - 3] + "..."
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# A JSON string (escapes included) or one bracket: what nesting_depth steps over.
_JSON_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def nesting_depth(line: bytes, stop: int = MAX_NESTING) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not
    count), exact up to ``stop``: any answer <= ``stop`` means "not deeper than ``stop``"
    (0 when the line has too few opening brackets to be: then it costs only a
    ``bytes.count`` pair), and the walk stops once past it."""
    if line.count(b"[") + line.count(b"{") <= stop:
        return 0
    depth = deepest = 0
    for m in _JSON_NESTING.finditer(line):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop:
                    break
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


@functools.lru_cache(maxsize=64)  # asked once per record: the settings repeat
def needed_fields(text: Union[str, TextSpec], id_field: str,
                  group_field: Optional[str] = None) -> Tuple[str, ...]:
    """The fields a record is read for: the text field(s), the id and the group (what a
    columnar reader must read, and what ``fast_object`` checks)."""
    group = (group_field,) if group_field else ()
    return tuple(dict.fromkeys(as_text_spec(text).fields + (id_field,) + group))


_BIG = float(2 ** 63)


def _as_json_reads(value: Any) -> bool:
    """Whether orjson's ``value`` is surely json's: orjson turns an integer outside 64 bits
    into a float (json keeps the int), and that float is integral and at least 2**63."""
    t = type(value)
    if t is float:
        return not (abs(value) >= _BIG and value.is_integer())
    if t is list:
        return all(map(_as_json_reads, value))
    if t is dict:
        return all(map(_as_json_reads, value.values()))
    return True  # str, int, bool, None


def fast_object(line: bytes, fields: Sequence[str]) -> Optional[dict]:
    """orjson's decoding of a JSON line's bytes, where it is surely ``json.loads``'s of
    their UTF-8, for a record read only for ``fields``; else None, and json decides: what
    orjson refuses and json takes (NaN, 1e400, lone surrogates), every error, invalid UTF-8
    among them (json's messages are the dead letters' details), a value that is not an
    object, and a field that may hold an integer orjson made a float. A differential test throws mutated lines at both (``tests/unit/test_parsing.py``)."""
    if _orjson is None:
        return None
    try:
        obj = _orjson.loads(line)
    except Exception:  # JSONDecodeError, or its recursion limit
        return None
    if type(obj) is not dict:
        return None
    for f in fields:
        v = obj.get(f)
        if type(v) is not str and not _as_json_reads(v):
            return None
    return obj


def _flat(obj: dict) -> bool:
    """No array or object among the values: nested one level, whatever the brackets in its strings."""
    for v in obj.values():
        if type(v) is list or type(v) is dict:
            return False
    return True


def parse_record(raw: RawRecord, text: Union[str, TextSpec], id_field: str,
                 group_field: Optional[str] = None) -> Union[Document, DeadLetter]:
    """One JSONL line -> Document or DeadLetter. ``text``: a field name or a TextSpec;
    ``group_field``: the field whose value becomes ``Document.group`` (None: no group).
    The Document carries no record (the output reads the line again)."""
    def reject(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(raw.source, raw.position, reason, detail, raw.data)

    # orjson reads the bytes themselves (refusing invalid UTF-8, as it refuses all it is not
    # sure json would read alike: fast_object); a flat object it read is the record's (it
    # cannot nest too deeply, so its line is not walked). Else json's path, as ever: blank,
    # UTF-8, nesting, json.loads, each with its dead letter.
    data = raw.data
    obj = fast_object(data, needed_fields(text, id_field, group_field))
    if obj is None or not _flat(obj):
        if not data.strip():
            return reject("blank_line", "the line is empty")
        line = None
        if obj is None:
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as e:
                return reject("invalid_utf8", str(e))
        if nesting_depth(data) > MAX_NESTING:
            return reject("too_deeply_nested", f"arrays/objects nest deeper than {MAX_NESTING} levels")
        if obj is None:
            try:
                obj = json.loads(line)
            except RecursionError as e:
                return reject("too_deeply_nested", reader_failure(e))
            except ValueError as e:
                return reject("invalid_json", str(e))
        del line  # the decoded line: no longer needed while the document is prepared
    if not isinstance(obj, dict):
        return reject("not_an_object", f"JSON value is a {type(obj).__name__}, not an object")
    return parse_object(obj, raw.source, raw.position, raw.data, text, id_field, group_field,
                        carry_record=False)


def parse_object(obj: Mapping, source: str, position: int, record: bytes,
                 text: Union[str, TextSpec], id_field: str,
                 group_field: Optional[str] = None,
                 carry_record: bool = True) -> Union[Document, DeadLetter]:
    """A decoded record (a JSON object, a Parquet/Avro row, a Hugging Face example) ->
    Document or DeadLetter. ``record`` is what dead letters carry, and the Document too
    when ``carry_record``."""
    def reject(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(source, position, reason, detail, record)

    spec = as_text_spec(text)
    try:
        value, problem = spec.extract(obj)
    except Exception as e:  # e.g. a number too long for str() in a template
        reason = "too_deeply_nested" if isinstance(e, RecursionError) else "unparseable"
        return reject(reason, f"{spec.describe()}: {reader_failure(e)}")
    if problem is not None:
        return reject(*problem)
    if not value.isascii():  # (O(1) for a str) an ASCII text has no lone surrogate
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates from \\ud800-style escapes
            return reject("invalid_utf8", f"{spec.describe()}: {e}")
    raw_id = obj.get(id_field)
    if raw_id is None:
        doc_id = content_id(value)
    elif isinstance(raw_id, str):
        doc_id = raw_id
    elif isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        return reject("invalid_id", f"field {id_field!r} is a {type(raw_id).__name__}")
    group = group_value(obj, group_field) if group_field else None
    return Document(doc_id, value, source, position, record if carry_record else b"", group)


def parse_any(record: Union[RawRecord, RowRecord], text: Union[str, TextSpec],
              id_field: str, group_field: Optional[str] = None) -> Union[Document, DeadLetter]:
    """A JSONL line or a decoded row -> Document or DeadLetter (which carries the row as
    JSON, so the dead-letter file shows what was rejected). Never raises: an exception
    while parsing or preparing the record (a recursion too deep for a value's JSON, a
    number too long to print, ...) makes it a ``too_deeply_nested`` or ``unparseable``
    dead letter with the exception in its detail."""
    try:
        if isinstance(record, RawRecord):
            return parse_record(record, text, id_field, group_field)
        parsed = parse_object(record.row, record.source, record.position, b"", text, id_field,
                              group_field)
        if isinstance(parsed, DeadLetter):
            return parsed._replace(record=safe_row_json(record.row))
        return parsed
    except Exception as e:
        return failed(record, e)


def failed(record: Any, e: BaseException) -> DeadLetter:
    """The dead letter of a record whose parsing raised ``e``."""
    reason = "too_deeply_nested" if isinstance(e, RecursionError) else "unparseable"
    source = getattr(record, "source", "?")
    position = getattr(record, "position", -1)
    if isinstance(record, RawRecord):
        data = record.data
    elif isinstance(record, RowRecord):
        data = safe_row_json(record.row)
    else:
        data = safe_row_json(record)
    return DeadLetter(source, position, reason, f"while parsing: {reader_failure(e)}", data)


def parse_batch(records: Sequence[Union[RawRecord, RowRecord, DeadLetter]], text: Union[str, TextSpec],
                id_field: str, group_field: Optional[str] = None) -> List[Union[Document, DeadLetter]]:
    """``parse_any`` of each record, in order; a reader's DeadLetter passes as it is.

    The common JSON line (an object with no array or object among its values, whose text
    field is a non-blank ASCII string, whose id is a string, an integer or absent, and whose
    group, when asked, is a string or absent) becomes its Document without ``parse_any``'s
    calls per record: in one C pass over its bytes where ``_jsonl`` is built (which also
    takes non-ASCII text; its "plain" line is in ``_jsonl.c``), else, and for every line the
    C pass leaves, by ``orjson`` and the checks of ``_common_line``. Every other record goes
    through ``parse_any``, so the answers are its answers (``tests/unit/test_parsing.py``
    compares all three on mutated lines)."""
    spec = as_text_spec(text)
    if type(spec) is not FieldText:
        return [r if type(r) is DeadLetter else parse_any(r, spec, id_field, group_field) for r in records]
    one = functools.partial(_common_line, spec, id_field, group_field)
    if _jsonl is not None:
        return _jsonl.documents(records, spec.field, id_field, group_field, Document, RawRecord, one)
    return list(map(one, records))


def _common_line(spec: FieldText, id_field: str, group_field: Optional[str],
                 r: Union[RawRecord, RowRecord, DeadLetter]) -> Union[Document, DeadLetter]:
    """``parse_batch``'s answer for one record: a common JSON line's Document from orjson's
    object, else what ``parse_any`` says (a DeadLetter passes as it is)."""
    if type(r) is RawRecord and _orjson is not None:
        try:
            obj = _orjson.loads(r.data)
        except Exception:  # json decides, and words the dead letter
            obj = None
        if type(obj) is dict:
            value, raw_id = obj.get(spec.field), obj.get(id_field)
            kind = type(raw_id)
            if (type(value) is str and value.isascii() and value and not value.isspace()
                    and (kind is str or kind is int or raw_id is None)
                    and (group_field is None or type(obj.get(group_field, "")) is str)):
                for v in obj.values():
                    if type(v) is list or type(v) is dict:
                        break
                else:
                    doc_id = raw_id if kind is str else content_id(value) if raw_id is None else str(raw_id)
                    group = group_value(obj, group_field) if group_field else None
                    return Document(doc_id, value, r.source, r.position, b"", group)
    return r if type(r) is DeadLetter else parse_any(r, spec, id_field, group_field)
