"""Turn one raw JSONL record into a ``Document`` or a ``DeadLetter``. Pure: no Beam.

Reasons a record is rejected (the ``reason`` field of a dead letter):
    blank_line, invalid_utf8, invalid_json, not_an_object, missing_text,
    text_not_string, empty_text, invalid_id, corrupt_file (from the reader)
"""

from __future__ import annotations

import hashlib
import json
from typing import Union

from zipfit_beam.records import DeadLetter, Document, RawRecord

REASONS = ("blank_line", "invalid_utf8", "invalid_json", "not_an_object", "missing_text",
           "text_not_string", "empty_text", "invalid_id", "corrupt_file")


def content_id(text: str) -> str:
    """A stable id for a record without one: a digest of its text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def parse_record(raw: RawRecord, text_field: str, id_field: str) -> Union[Document, DeadLetter]:
    def reject(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(raw.source, raw.position, reason, detail, raw.data)

    if not raw.data.strip():
        return reject("blank_line", "the line is empty")
    try:
        line = raw.data.decode("utf-8")
    except UnicodeDecodeError as e:
        return reject("invalid_utf8", str(e))
    try:
        obj = json.loads(line)
    except ValueError as e:
        return reject("invalid_json", str(e))
    if not isinstance(obj, dict):
        return reject("not_an_object", f"JSON value is a {type(obj).__name__}, not an object")
    if text_field not in obj:
        return reject("missing_text", f"no field {text_field!r}")
    text = obj[text_field]
    if not isinstance(text, str):
        return reject("text_not_string", f"field {text_field!r} is a {type(text).__name__}")
    if not text.strip():
        return reject("empty_text", f"field {text_field!r} is empty or whitespace only")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates from \\ud800-style escapes
        return reject("invalid_utf8", f"field {text_field!r}: {e}")
    raw_id = obj.get(id_field)
    if raw_id is None:
        doc_id = content_id(text)
    elif isinstance(raw_id, str):
        doc_id = raw_id
    elif isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        return reject("invalid_id", f"field {id_field!r} is a {type(raw_id).__name__}")
    return Document(doc_id, text, raw.source, raw.position, raw.data)


def with_score(record: bytes, score: float) -> bytes:
    """The original JSON object line, byte for byte, with ``"zipfit_score": score`` appended.

    Splicing (rather than re-serialising) keeps the record unchanged: key order, number
    formatting and escapes stay as they were. A record that already has the field gets
    it replaced through a re-serialisation.
    """
    body = record.rstrip()
    obj_had_field = b'"zipfit_score"' in body and "zipfit_score" in json.loads(body)
    if obj_had_field:
        obj = json.loads(body)
        obj["zipfit_score"] = score
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return body[:-1].rstrip() + b', "zipfit_score": ' + repr(score).encode("ascii") + b"}"


def dead_letter_json(dead: DeadLetter) -> str:
    return json.dumps({
        "source": dead.source, "position": dead.position, "reason": dead.reason,
        "detail": dead.detail, "record": dead.record.decode("utf-8", "backslashreplace"),
    }, ensure_ascii=False)
