import json

import pytest

from zipfit_beam.formats import dead_letter_row, jsonl
from zipfit_beam.io import parse
from zipfit_beam.io.parse import MISSING_GROUP, content_id, group_value, parse_record
from zipfit_beam.records import DeadLetter, Document, RawRecord, ScoredDocument, rank_key
from zipfit_beam.select.cut import SelectionKey, SelectionRule, find_cut, keeps

from tests.conftest import BAD_LINES


def raw(data: bytes, pos=1) -> RawRecord:
    return RawRecord("f.jsonl", pos, data)


@pytest.mark.parametrize("line,reason", BAD_LINES)
def test_every_bad_line_gets_its_reason(line, reason):
    out = parse_record(raw(line, 7), "text", "id")
    assert isinstance(out, DeadLetter)
    assert (out.reason, out.source, out.position, out.record) == (reason, "f.jsonl", 7, line)
    assert json.loads(jsonl.encode(dead_letter_row(out)))["reason"] == reason


def test_good_record_and_id_rules():
    doc = parse_record(raw(b'{"id": "a/1", "text": "x = 1"}'), "text", "id")
    assert isinstance(doc, Document) and (doc.id, doc.text) == ("a/1", "x = 1")
    assert parse_record(raw(b'{"id": 17, "text": "x"}'), "text", "id").id == "17"
    no_id = parse_record(raw(b'{"text": "x = 1"}'), "text", "id")
    assert no_id.id == content_id("x = 1") and no_id.id.startswith("sha256:")
    assert parse_record(raw(b'{"k": "c", "body": "y"}'), "body", "k").id == "c"


# Lines where orjson and json differ: integers past 64 bits (orjson makes them floats), in
# every field a record is read for and elsewhere; what only json accepts; deep and duplicate.
DECODER_EDGES = [
    b'{"id": 123456789012345678901234567890, "text": "t"}',
    b'{"id": -9223372036854775809, "text": "t"}',
    b'{"id": 18446744073709551615, "text": "t"}',
    b'{"id": 1e19, "text": "t"}',
    b'{"id": "a", "text": 12345678901234567890123}',
    b'{"id": "a", "text": "t", "g": [1, {"x": 99999999999999999999}]}',
    b'{"id": "a", "text": "t", "other": 99999999999999999999}',
    b'{"id": NaN, "text": "t"}', b'{"id": 1e400, "text": "t"}', b'{"id": "a", "text": "\\ud800"}',
    b'{"id": "a", "text": "t", "id": "b"}', b'12345678901234567890123', b'[1e999]',
    b'{"id": "a", "text": "t", "x": ' + b"[" * 600 + b"]" * 600 + b"}",
    b'{"id": "a", "text": "t", "x": ' + b"[" * 512 + b"]" * 512 + b"}",
    b'{"id": "a", "text": "' + b"[{" * 600 + b'"}',  # brackets in a string do not nest
    # bytes orjson reads itself: a BOM, UTF-8 surrogates, overlong, truncated and too-high
    # sequences, NUL after the object, whitespace around it
    b'\xef\xbb\xbf{"id": "a", "text": "t"}', b'{"id": "a", "text": "\xed\xa0\x80"}',
    b'{"id": "a", "text": "\xc0\xaf"}', b'{"id": "a", "text": "\xe2\x82"}',
    b'{"id": "a", "text": "\xf4\x90\x80\x80"}', b'{"id": "a", "text": "t"}\x00',
    b' \t{"id": "a", "text": "\xc3\xa9"} ',
]


def _both_decoders(line: bytes, **fields):
    """parse_record with orjson (when installed) and with json alone."""
    with_orjson = parse_record(raw(line), **fields)
    saved, parse._orjson = parse._orjson, None
    try:
        return with_orjson, parse_record(raw(line), **fields)
    finally:
        parse._orjson = saved


@pytest.mark.skipif(parse._orjson is None, reason="orjson is not installed")
@pytest.mark.parametrize("line", DECODER_EDGES + [line for line, _ in BAD_LINES])
def test_orjson_decodes_as_json_does(line):
    fast, exact = _both_decoders(line, text="text", id_field="id", group_field="g")
    assert fast == exact


@pytest.mark.skipif(parse._orjson is None, reason="orjson is not installed")
def test_orjson_and_json_agree_on_mutated_lines():
    """Differential fuzzing: 20,000 random edits of JSON lines (a character anywhere, a
    number rewritten: up to 25 digits, signs, fractions, exponents), each decoded both ways,
    give the same Document or dead letter (reason and detail), with a template text too."""
    import random
    import re

    from zipfit_beam.io.templates import TextTemplate
    rng = random.Random(12)
    seeds = ['{"id": "a/1", "text": "def f(x):\\n    return x \\u00e9 \\"q\\"", "g": [1, 2.5e-3, null]}',
             '{"id": 17, "text": "x", "n": {"k": true, "v": -0.0}, "g": "grp"}',
             '{"id": 1.5, "text": "y", "n": 123456789012345678, "g": 3}']
    alphabet = '{}[]",:0123456789.eE+-\\u nulltruefalseNaN\t\n\x00\x7f\ud800\u00e9\U0001F600 /bfnrt'
    template = TextTemplate("{text} / {n}")

    def number():
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        return (rng.choice(["", "-"]) + digits + rng.choice(["", "", ".5", ".0"])
                + rng.choice(["", "", "e19", "E-3", "e400"]))

    decoded = 0
    for _ in range(20_000):
        s = rng.choice(seeds)
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.6:
                numbers = list(re.finditer(r"-?\d[\d.eE+-]*", s))
                m = rng.choice(numbers)
                s = s[:m.start()] + number() + s[m.end():]
            else:
                p = rng.randrange(len(s) + 1)
                s = s[:p] + rng.choice(alphabet) + s[p + rng.randint(0, 1):]
        line = s.encode("utf-8", "surrogatepass")
        for text in ("text", template):
            fast, exact = _both_decoders(line, text=text, id_field="id", group_field="g")
            assert fast == exact, line
        decoded += isinstance(exact, Document)
    assert decoded > 1000  # many edits stay decodable, so both paths are exercised


def _mutated_lines(n, seed):
    """JSON lines with random edits, as above, and the bad and edge-case lines."""
    import random
    rng = random.Random(seed)
    seeds = ['{"id": "a/1", "text": "def f(x):\\n    return x", "g": "grp"}',
             '{"id": 17, "text": "x = 1", "g": 3}', '{"text": "no id", "n": 1.5}',
             '{"id": "b", "text": "caf\\u00e9", "g": null, "m": [1]}',
             # plain lines for the C pass: every escape, duplicate keys, whitespace, long groups
             '{"id": "q", "text": "a\\"b\\\\c\\/d\\b\\f\\r\\t\\u0041\\u007f\\u0000", "g": "' + "y" * 205 + '"}',
             ' {\t"id" : 123456789012345678 ,\r\n"text":"x", "text": "last", "n": -1.5e-3, "b": true}  ',
             '{"text": "\\u000b\\u001c x", "id": "\\u0061", "g": "' + "z" * 199 + '", "f": false, "z": null}',
             '{"id": "\u00fc/1", "text": "na\u00efve \\u00e9\\ud83d\\ude00 \U0001F600 \u65e5\u672c \\u2028", "g": "'
             + "\u00e9" * 205 + '"}']
    alphabet = '{}[]",:0123456789.eE+-\\u nulltruefalseNaN\t\n\x00\ud800\u00e9 /bfnrt'
    from zipfit_beam.formats.base import MAX_NESTING
    deep = b'{"a": ' * (MAX_NESTING + 2) + b"1" + b"}" * (MAX_NESTING + 2)
    lines = [line for line, _ in BAD_LINES] + list(DECODER_EDGES) + [
        b'{"id": true, "text": "x"}', b'{"id": 2.5, "text": "x"}', b'{"id": null, "text": "x"}',
        b'{"text": "x", "n": ' + deep + b"}", b'{"text": "x", "n": {"k": 1}}', b'{"text": " \\t\\n "}',
        b'{"text": "x", "g": {"k": 1}}', b'{"text": "x", "g": ["y"]}', b'{"text": "x", "g": 1e400}',
        b'{"text": "x", "g": 123456789012345678901234567890}', b'{"id": 123456789012345678901234567890, "text": "x"}',
        b'{"id": -0, "text": "x"}', b'{"id": 0, "text": "x"}', b'{"id": -12, "text": "x"}',
        b'{"id": 1234567890123456789, "text": "x"}', b'{"id": "a", "text": "\\u000b\\u001c\\u001f \\t"}',
        b'{"id": "a", "text": "\\u0080"}', b'{"id": "a", "text": "x\\q"}', b'{"id": "a", "text": "x\\u00"}',
        b'{"id": "a", "text": "x"} x', b'{"id": "a", "text": "x",}', b'{"id": "a" "text": "x"}',
        b'{"te\\u0078t": "x", "id": "a"}', b'{"id": "a", "text": "x\tx"}', b'{"id": 01, "text": "x"}',
        b'{"id": 1., "text": "x"}', b'{"id": "a", "text": "x", "g": "' + b"w" * 200 + b'"}',
        b'{"id": "a", "text": "x", "g": "' + b"w" * 201 + b'"}', b'{"id": "a", "text": ""}', b"{}",
        b'{"id": "a", "text": "\\u00a0\\u2003 \\u3000"}', b'{"id": "a", "text": "\xc2\xa0 "}',
        b'{"id": "a", "text": "\\ud83d"}', b'{"id": "a", "text": "\\ude00"}', b'{"id": "a", "text": "\\ud83d\\u0041"}',
        b'{"id": "a", "text": "\\ud83d\\ude00"}', b'{"id": "a", "text": "\xf0\x9f\x98\x80"}',
        b'{"id": "a", "text": "\xf4\x8f\xbf\xbf"}', b'{"id": "a", "text": "\xe0\xa0\x80"}',
        b'{"id": "a", "text": "\xe0\x9f\xbf"}', b'{"id": "a", "text": "\xef\xbf\xbf"}',
        b'{"id": "a", "text": "x\xc3"}', b'{"id": "a", "text": "x", "g": "\xc3\xa9' + b"w" * 200 + b'"}']
    for _ in range(n):
        s = rng.choice(seeds)
        for _ in range(rng.randint(0, 2)):
            p = rng.randrange(len(s) + 1)
            s = s[:p] + rng.choice(alphabet) + s[p + rng.randint(0, 1):]
        lines.append(s.encode("utf-8", "surrogatepass"))
    return lines


@pytest.mark.parametrize("path", ["c", "orjson", "python"])
def test_parse_batch_equals_parse_any_record_by_record(path, monkeypatch):
    """parse_batch's paths for common lines (the C pass, orjson's, json's) give parse_any's
    Document or dead letter for every line (mutated, bad, edge cases), with a field or a
    template as the text and with or without a group; a reader's dead letter passes as it
    is. The C pass makes most of the Documents itself."""
    from zipfit_beam.io.parse import parse_any, parse_batch
    from zipfit_beam.io.templates import TextTemplate
    if path == "c" and parse._jsonl is None:
        pytest.skip("the _jsonl extension is not built")
    if path != "c":
        monkeypatch.setattr(parse, "_jsonl", None)
    if path == "python":
        monkeypatch.setattr(parse, "_orjson", None)
    left = []  # the records the C pass left to Python

    def counted(*args):
        left.append(args[-1])
        return common_line(*args)
    common_line = parse._common_line
    monkeypatch.setattr(parse, "_common_line", counted)
    records = [raw(line, i + 1) for i, line in enumerate(_mutated_lines(6000, 21))]
    records.insert(5, DeadLetter("f.jsonl", 6, "record_too_large", "over the limit", b"{"))
    decoded = 0
    for text in ("text", TextTemplate("{text}!")):
        for group in (None, "g"):
            left.clear()
            got = parse_batch(records, text, "id", group)
            assert got == [r if isinstance(r, DeadLetter) else parse_any(r, text, "id", group) for r in records]
            assert all(type(d) in (Document, DeadLetter) for d in got)
            decoded += sum(isinstance(d, Document) for d in got)
            if path == "c" and text == "text":
                assert len(records) - len(left) > 1500, len(left)  # Documents the C pass made
    assert decoded > 4000  # both paths are exercised


@pytest.mark.skipif(parse._jsonl is None, reason="the _jsonl extension is not built")
def test_the_c_pass_matches_python_for_any_field_names():
    """The text field as the id too, names that are prefixes of others, non-ASCII names,
    and the Document made being a real Document."""
    from zipfit_beam.io.parse import parse_any, parse_batch
    lines = [b'{"t": "x = 1", "tt": "y", "id": 5}', b'{"tt": "y", "t": "x = 1"}',
             '{"t\u00e9": "caf", "t": "x", "\u00e9": "e"}'.encode(), b'{"t": "a", "t": "b", "id": "i"}']
    records = [raw(line, i + 1) for i, line in enumerate(lines)]
    for text, id_field, group in [("t", "t", None), ("t", "id", "tt"), ("t\u00e9", "id", None),
                                  ("t", "\u00e9", None), ("tt", "t", "t")]:
        got = parse_batch(records, text, id_field, group)
        assert got == [parse_any(r, text, id_field, group) for r in records]
    doc = parse_batch(records[:1], "t", "id")[0]
    assert type(doc) is Document and doc == Document("5", "x = 1", "f.jsonl", 1, b"", None)
    assert doc._replace(id="6").id == "6" and hash(doc) == hash(tuple(doc))


def with_score(line: bytes, score: float) -> bytes:
    return jsonl.with_score(RawRecord("f.jsonl", 1, line), score)


def test_with_score_keeps_the_record_byte_for_byte():
    rec = b'{"b": 1.50, "a": "\\u00e9", "text": "t"}  '
    out = with_score(rec, 0.25)
    assert out.startswith(b'{"b": 1.50, "a": "\\u00e9", "text": "t"')
    assert json.loads(out) == {"b": 1.5, "a": "é", "text": "t", "zipfit_score": 0.25}
    # an existing field is replaced, not duplicated
    assert json.loads(with_score(b'{"text": "t", "zipfit_score": 9}', 0.5)) == {"text": "t", "zipfit_score": 0.5}


def test_score_round_trips_exactly():
    s = 0.1234567890123456789
    assert json.loads(with_score(b'{"text": "t"}', s))["zipfit_score"] == s


def test_ranking_key_orders_score_then_id_and_threshold():
    docs = [ScoredDocument(i, s, "f", n) for n, (i, s) in
            enumerate([("b", 0.5), ("a", 0.5), ("c", 0.9), ("d", 0.1)])]
    keys = sorted(rank_key(d) for d in docs)
    assert [k[1] for k in keys] == ["c", "a", "b", "d"]
    cut = find_cut([SelectionKey(k, 1) for k in keys], SelectionRule(top_k=2))
    assert [d.id for d in docs if keeps(cut, rank_key(d))] == ["a", "c"]
    everything = find_cut([SelectionKey(k, 1) for k in keys], SelectionRule(top_k=10))
    assert everything.selected == 4 and keeps(everything, keys[-1])


def test_group_value_of_any_record_field():
    rec = {"source": "python", "n": 3, "meta": {"k": 1, "a": [1]}, "none": None, "bad": "x\ud800"}
    assert group_value(rec, "source") == "python"
    assert group_value(rec, "n") == "3"
    assert group_value(rec, "meta") == '{"a": [1], "k": 1}'
    assert group_value(rec, "nope") == group_value(rec, "none") == MISSING_GROUP
    assert group_value(rec, "bad") == "x\\ud800"  # a lone surrogate stays visible, as valid UTF-8
    long = group_value({"g": "a" * 1000}, "g")
    assert len(long) == 200 and long.endswith("...")


def test_parse_record_carries_the_group_only_when_asked():
    raw = RawRecord("f.jsonl", 3, b'{"id": "a", "text": "x y", "lang": "py"}')
    assert parse_record(raw, "text", "id").group is None
    assert parse_record(raw, "text", "id", "lang").group == "py"
    assert parse_record(raw, "text", "id", "nope").group == MISSING_GROUP


@pytest.mark.skipif(parse._jsonl is None, reason="the _jsonl extension is not built")
def test_the_c_pass_reads_utf8_as_python_does():
    """Every lead byte with every second byte, and the 3- and 4-byte forms' boundaries, in a
    text: the C pass's Document or Python's dead letter, as parse_any decides."""
    from zipfit_beam.io.parse import parse_any, parse_batch
    tails = [b"", b"\x80", b"\xbf", b"A", b'"']
    seqs = [bytes([a, b]) + t for a in range(0x80, 0x100) for b in range(0x100) for t in tails[:1]]
    seqs += [bytes([a, b, c]) + t for a in range(0xe0, 0xf5) for b in range(0x80, 0xc0, 7)
             for c in (0x7f, 0x80, 0xbf, 0xc0) for t in tails]
    records = [raw(b'{"id": "a", "text": "x' + s + b'"}', i + 1) for i, s in enumerate(seqs)]
    got = parse_batch(records, "text", "id")
    assert got == [parse_any(r, "text", "id") for r in records]
    assert 1000 < sum(isinstance(d, Document) for d in got) < len(records) - 1000
