"""Format detection, readers and their dead letters, schema work. No Beam pipeline."""

import io

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from zipfit_beam import formats
from zipfit_beam.formats import avro, jsonl, parquet
from zipfit_beam.formats import schema as schemas
from zipfit_beam.records import DeadLetter, RowRecord

from tests.fixtures_io import (corrupt_parquet_row_group, invalid_utf8_strings, write_avro,
                               write_parquet)


@pytest.mark.parametrize("name,fmt", [
    ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.jsonl.gz", "jsonl"), ("a.JSONL.ZST", "jsonl"),
    ("a.ndjson.bz2", "jsonl"), ("part-00000", "jsonl"), ("gs://b/x/a.parquet", "parquet"),
    ("a.snappy.parquet", "parquet"), ("a.avro", "avro"),
])
def test_detect_format(name, fmt):
    assert formats.detect_format(name) == fmt


def test_csv_is_a_target_format_only():
    assert formats.detect_format("t.csv", targets=True) == "hf"
    with pytest.raises(ValueError, match="not supported"):
        formats.detect_format("s.csv")


def test_output_follows_input_unless_overridden():
    assert formats.resolve_output(None, None, {"parquet"}) == ("parquet", ".parquet", "snappy")
    assert formats.resolve_output(None, ".jsonl.gz", {"parquet"}) == ("jsonl", ".jsonl.gz", "gzip")
    assert formats.resolve_output("avro", ".xz.avro", {"jsonl"}) == ("avro", ".xz.avro", "xz")
    with pytest.raises(ValueError, match="mix formats"):
        formats.resolve_output(None, None, {"jsonl", "avro"})
    with pytest.raises(ValueError, match="does not fit"):
        formats.resolve_output("parquet", ".jsonl", {"jsonl"})


def read_all(fmt, f, path, fields):
    """Every record and dead letter a format module reads, flattened from its batches."""
    return [r for batch in fmt.read(f, str(path), fields, 4) for r in batch]


def take_all(fmt, path, positions):
    with open(path, "rb") as f:
        return {r.position: r.row for r in fmt.take(f, str(path), positions)}


# --- zstd -------------------------------------------------------------------------------

def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def test_zstd_reads_every_frame():
    f = jsonl.open_zstd(io.BytesIO(zst(b"a\nb\n") + zst(b"") + zst(b"c\n")))
    assert f.read() == b"a\nb\nc\n"


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_zstd_raises_instead_of_a_short_read(cut):
    data = zst(b"".join(b'{"id": %d, "text": "x"}\n' % i for i in range(2000)))
    broken = io.BytesIO(data[: int(len(data) * cut)])
    # the library's own reader returns a short read here, without an error
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data[: int(len(data) * cut)]),
                                                        read_across_frames=True).read()
    assert len(plain) < 2000 * 10
    with pytest.raises(EOFError, match="truncated"):
        jsonl.open_zstd(broken).read()


def test_garbage_zstd_raises():
    with pytest.raises(Exception):
        jsonl.open_zstd(io.BytesIO(b"this is not zstd at all")).read()


# --- parquet ----------------------------------------------------------------------------

def rows(n, start=0):
    return [{"id": f"d{i}", "text": f"def f{i}(): return {i}", "n": i} for i in range(start, start + n)]


def test_parquet_reads_only_needed_columns_and_numbers_rows_from_zero(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", rows(40), row_group_size=16)
    with open(path, "rb") as f:
        out = list(read_all(parquet, f, path, ["text", "id", "absent"]))
    assert [r.position for r in out] == list(range(40))
    assert all(isinstance(r, RowRecord) and set(r.row) == {"id", "text"} for r in out)
    assert out[17].row == {"id": "d17", "text": "def f17(): return 17"}


def test_parquet_corrupt_row_group_is_one_dead_letter_and_reading_goes_on(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", rows(48), row_group_size=16)
    corrupt_parquet_row_group(path, 1, "text")
    with open(path, "rb") as f:
        out = list(read_all(parquet, f, path, ["id", "text"]))
    dead = [r for r in out if isinstance(r, DeadLetter)]
    assert [(d.reason, d.position) for d in dead] == [("corrupt_row_group", 16)]
    assert "row group 1 (rows 16-31)" in dead[0].detail
    assert [r.position for r in out if isinstance(r, RowRecord)] == list(range(16)) + list(range(32, 48))
    # the same group read without the damaged column is fine: only needed columns matter
    with open(path, "rb") as f:
        assert not any(isinstance(r, DeadLetter) for r in read_all(parquet, f, path, ["id", "n"]))


def test_not_a_parquet_file_is_one_corrupt_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 but not really")
    out = list(read_all(parquet, open(path, "rb"), str(path), ["text"]))
    assert [(d.reason, d.position) for d in out] == [("corrupt_file", 0)]


def test_parquet_invalid_utf8_reaches_the_parser(tmp_path):
    table = pa.table({"id": ["a", "b"], "text": invalid_utf8_strings([b"caf\xe9", b"fine"])})
    path = str(tmp_path / "u.parquet")
    pq.write_table(table, path)
    out = list(read_all(parquet, open(path, "rb"), path, ["id", "text"]))
    assert out[1].row["text"] == "fine" and "\udce9" in out[0].row["text"]
    from zipfit_beam.io.parse import parse_any
    assert parse_any(out[0], "text", "id").reason == "invalid_utf8"
    assert parse_any(out[1], "text", "id").text == "fine"


def test_take_parquet_rows_returns_whole_rows_at_positions(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", rows(50), row_group_size=7)
    got = take_all(parquet, path, [49, 3, 20, 21])
    assert got == {i: rows(50)[i] for i in (3, 20, 21, 49)}
    # a row beyond the end is not there (the fetch counts what came back and refuses)
    assert take_all(parquet, path, [49, 50]) == {49: rows(50)[49]}


# --- avro -------------------------------------------------------------------------------

def test_avro_rows_and_dead_letters(tmp_path):
    recs = [{"id": "a", "text": "x = 1"}, {"id": "b", "text": "MARK"}, {"id": "c", "text": None}]
    path = write_avro(tmp_path / "a.avro", recs)
    data = open(path, "rb").read().replace(b"MARK", b"\xff\xfeAB")  # invalid UTF-8, same length
    out = list(read_all(avro, io.BytesIO(data + b"trailing garbage"), path, ["id", "text"]))
    assert isinstance(out[0], RowRecord) and out[0].row == {"id": "a", "text": "x = 1"}
    assert (out[1].reason, out[1].position) == ("invalid_utf8", 1)
    assert out[2].row == {"id": "c", "text": None}  # the parser rejects it: text_not_string
    assert (out[3].reason, out[3].position) == ("corrupt_file", 3)
    assert len(out) == 4


def test_avro_non_record_datum_is_not_an_object(tmp_path):
    path = str(tmp_path / "s.avro")
    with open(path, "wb") as f:
        fastavro.writer(f, "string", ["just a string"])
    out = list(read_all(avro, open(path, "rb"), path, ["text"]))
    assert [(d.reason, d.position) for d in out] == [("not_an_object", 0)]


def test_take_avro_rows(tmp_path):
    recs = [{"id": str(i), "text": "t" * (i + 1)} for i in range(30)]
    path = write_avro(tmp_path / "a.avro", recs, sync_interval=64)
    assert take_all(avro, path, [0, 7, 29]) == {0: recs[0], 7: recs[7], 29: recs[29]}


# --- schemas ----------------------------------------------------------------------------

def test_inferred_schema_unifies_and_falls_back_to_json_text():
    a = schemas.infer_row({"id": "a", "n": 1, "meta": {"x": 1}, "tags": ["a"]}, ("f", 2))
    b = schemas.infer_row({"id": "b", "n": 2.5, "meta": "plain", "extra": None}, ("f", 1))
    c = schemas.infer_row({"id": "c", "mixed": [1, "a"]}, ("g", 0))
    merged = schemas.merge_inferred(schemas.merge_inferred(a, b), c)
    again = schemas.merge_inferred(c, schemas.merge_inferred(b, a))  # order does not matter
    schema, json_fields = schemas.inferred_arrow_schema(merged)
    assert (schema, json_fields) == schemas.inferred_arrow_schema(again)
    # field order: the row with the smallest (source, position) first, then by name
    assert schema.names == ["id", "n", "meta", "extra", "mixed", "tags", "zipfit_score"]
    assert schema.field("n").type == pa.float64() and schema.field("tags").type == pa.list_(pa.string())
    assert set(json_fields) == {"meta", "mixed"}
    row = schemas.conform_row({"id": "a", "meta": {"x": 1}, "mixed": [1, "a"]}, schema.names, json_fields)
    assert row["meta"] == '{"x": 1}' and row["mixed"] == '[1, "a"]' and row["n"] is None


def test_arrow_to_avro_round_trips_through_fastavro():
    import datetime
    import decimal
    schema = pa.schema([("s", pa.string()), ("i", pa.int32()), ("l", pa.int64()), ("b", pa.binary()),
                        ("t", pa.timestamp("us", tz="UTC")), ("d", pa.decimal128(10, 2)),
                        ("lst", pa.list_(pa.string())), ("m", pa.map_(pa.string(), pa.int64())),
                        ("st", pa.struct([("x", pa.float64())])),
                        pa.field("zipfit_score", pa.float64(), nullable=False)])
    avro = schemas.arrow_to_avro(schema)
    row = {"s": "x", "i": 1, "l": 2, "b": b"\x00", "t": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
           "d": decimal.Decimal("1.25"), "lst": ["a"], "m": [("k", 3)], "st": {"x": 0.5}, "zipfit_score": 0.7}
    shaped = {f["name"]: schemas.avro_value(row[f["name"]], f["type"]) for f in avro["fields"]}
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(avro), [shaped])
    back = next(fastavro.reader(io.BytesIO(buf.getvalue())))
    assert back["m"] == {"k": 3} and back["d"] == decimal.Decimal("1.25") and back["zipfit_score"] == 0.7
    assert back["t"] == row["t"] and back["st"] == {"x": 0.5}


def test_score_column_is_appended_or_replaced():
    s = schemas.with_score_column(pa.schema([("zipfit_score", pa.string()), ("id", pa.string())]))
    assert s.names == ["id", "zipfit_score"] and s.field("zipfit_score").type == pa.float64()
    a = avro.with_score_field({"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]})
    assert a["fields"][-1] == {"name": "zipfit_score", "type": "double"}


def test_row_json_restores_invalid_bytes_and_encodes_binary():
    line = formats.row_json({"t": "caf\udce9", "b": b"\x00\x01"})
    assert line == b'{"t": "caf\xe9", "b": "AAE="}'


def test_pass_through_column_with_invalid_utf8_is_replaced_not_fatal(tmp_path):
    table = pa.table({"id": ["a", "b"], "text": ["x", "y"], "note": invalid_utf8_strings([b"ok", b"caf\xe9"])})
    path = str(tmp_path / "n.parquet")
    pq.write_table(table, path)
    got = take_all(parquet, path, [0, 1])
    assert got[0]["note"] == "ok" and got[1]["note"] == "caf\ufffd"
