"""--max-record-bytes in each format's reader, and records that would have crashed a run:
deep nesting, recursion, values that raise while a document is prepared. Pure: the format
modules and the parser, no pipeline."""

import gzip
import io
import json
import random
import tracemalloc

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zipfit_beam.formats import avro, jsonl, parquet
from zipfit_beam.formats.base import HEAD_BYTES, MAX_NESTING
from zipfit_beam.io.parse import REASONS, nesting_depth, parse_any
from zipfit_beam.records import DeadLetter, Document, RawRecord, RowRecord
from zipfit_beam.score import contamination


def records(fmt, data: bytes, path: str, limit, fields=("text", "id")):
    return [r for batch in fmt.read(io.BytesIO(data), path, list(fields), 1024, limit) for r in batch]


# --- JSON Lines ---------------------------------------------------------------------------

@pytest.mark.parametrize("read_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_scan_lines_cuts_lines_the_way_readline_did_at_any_read_size(read_bytes):
    data = b'{"a": 1}\r\n\n  \nno terminator'
    got = [(p, line) for p, line, _, _ in jsonl.scan_lines(io.BytesIO(data), read_bytes=read_bytes)]
    assert got == [(1, b'{"a": 1}\r'), (2, b""), (3, b"  "), (4, b"no terminator")]
    assert list(jsonl.scan_lines(io.BytesIO(b""), read_bytes=read_bytes)) == []


def test_scan_lines_equals_a_split_of_the_whole_stream_for_any_reads_and_limits():
    """The whole-line fast path (one split per read) and the path for lines across reads
    give what splitting the whole stream at once gives."""
    def expected(data, max_bytes):
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        held = [max_bytes is None or len(line) <= max_bytes for line in lines]
        return [(p, line if h else None, len(line), b"" if h else line[:HEAD_BYTES])
                for (p, line), h in zip(enumerate(lines, 1), held)]

    rnd = random.Random(7)
    for _ in range(1500):
        lines = [bytes(rnd.choice(b"ab\r") for _ in range(rnd.choice([0, 1, 2, 5, 30, 300])))
                 for _ in range(rnd.randint(0, 12))]
        data = b"\n".join(lines) + (b"\n" if rnd.random() < 0.5 else b"")
        max_bytes = rnd.choice([None, 0, 3, 40, 250])
        read_bytes = rnd.choice([1, 2, 3, 7, 64, 1 << 20])
        got = list(jsonl.scan_lines(io.BytesIO(data), max_bytes, read_bytes=read_bytes))
        assert got == expected(data, max_bytes), (data, max_bytes, read_bytes)


@pytest.mark.parametrize("read_bytes", [1, 5, 1 << 20])
def test_a_line_over_the_limit_is_a_dead_letter_with_size_position_and_head(read_bytes):
    big = b'{"id": "big", "text": "' + b"x" * 5000 + b'"}'
    data = b'{"id": "a", "text": "one"}\n' + big + b'\n{"id": "b", "text": "two"}\n'
    out = [r for r in jsonl.iter_lines(
        jsonl.io.BufferedReader(io.BytesIO(data), read_bytes), "f.jsonl", 4096)]
    assert [type(r).__name__ for r in out] == ["RawRecord", "DeadLetter", "RawRecord"]
    dead = out[1]
    assert (dead.source, dead.position, dead.reason) == ("f.jsonl", 2, "record_too_large")
    assert dead.record == big[:HEAD_BYTES] and f"{len(big):,} bytes" in dead.detail
    assert "4,096" in dead.detail
    assert out[2] == RawRecord("f.jsonl", 3, b'{"id": "b", "text": "two"}')
    # exactly at the limit is fine
    assert isinstance(list(jsonl.iter_lines(io.BytesIO(big), "f", len(big)))[0], RawRecord)
    assert isinstance(list(jsonl.iter_lines(io.BytesIO(big), "f", len(big) - 1))[0], DeadLetter)


def test_the_reader_never_holds_a_line_over_the_limit():
    """A 24 MiB line in a .jsonl.gz (24 KB compressed) with a 1 MiB limit: the reader's
    Python allocations stay near one read (1 MiB) plus the limit, far below the line."""
    line = b'{"text": "' + b"a" * (24 << 20) + b'"}'
    data = gzip.compress(b'{"text": "ok"}\n' + line + b'\n{"text": "after"}\n', 1)
    tracemalloc.start()
    try:
        out = records(jsonl, data, "big.jsonl.gz", 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.reason if isinstance(r, DeadLetter) else r.data for r in out] == [
        b'{"text": "ok"}', "record_too_large", b'{"text": "after"}']
    assert f"{len(line):,} bytes" in out[1].detail and out[1].record == line[:HEAD_BYTES]
    assert peak < 6 << 20, f"the reader held {peak / 2**20:.1f} MiB for a 24 MiB line"


@pytest.mark.parametrize("codec", ["gz", "zst"])
def test_lines_before_damage_are_kept(codec):
    """A good gzip member (zstd frame), then garbage: its lines come out before the
    corrupt_file dead letter, though one read would have reached the damage."""
    import zstandard
    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(50))
    packed = gzip.compress(data) if codec == "gz" else zstandard.ZstdCompressor().compress(data)
    out = records(jsonl, packed + b"this is not compressed data" * 3, f"f.jsonl.{codec}", None)
    assert [getattr(r, "reason", None) for r in out] == [None] * 50 + ["corrupt_file"]
    assert out[-1].position == 51


def test_take_skips_other_lines_without_holding_them():
    big = b'{"text": "' + b"a" * (8 << 20) + b'"}'
    data = b'{"id": 1, "text": "x"}\n' + big + b'\n{"id": 3, "text": "y"}\n'
    tracemalloc.start()
    try:
        got = list(jsonl.take(io.BytesIO(data), "f.jsonl", [1, 3]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.position, r.data) for r in got] == [(1, b'{"id": 1, "text": "x"}'), (3, b'{"id": 3, "text": "y"}')]
    assert peak < 4 << 20


def test_take_gives_the_lines_the_reader_numbers(tmp_path):
    """take() against the reader's own numbering (scan_lines), over random files (empty
    lines, CRLF, long lines, a final line with or without a terminator), random positions
    (repeated, past the end, 0) and reads of 1 byte up to the whole file."""
    import random
    rng = random.Random(4)
    checked = 0
    for trial in range(150):
        lines = [rng.choice([b"", b"\r", b'{"x": 1}\r', b"a" * rng.randint(1, 300), b'{"t": "%d"}' % trial])
                 for _ in range(rng.randint(0, 40))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        numbered = {p: line.rstrip(b"\r\n") for p, line, _, _ in jsonl.scan_lines(io.BytesIO(data))}
        positions = [rng.randint(0, len(lines) + 2) for _ in range(rng.randint(0, 12))]
        expected = [(p, numbered[p]) for p in sorted(set(positions)) if p in numbered]
        for read_bytes in (1, 2, 7, 64, 1 << 20):
            got = [(r.position, r.data) for r in jsonl.take(io.BytesIO(data), "f.jsonl", positions, read_bytes)]
            assert got == expected, (data, positions, read_bytes)
            checked += len(got)
    assert checked > 1000


def test_readers_hand_over_batches_of_at_most_batch_bytes():
    lines = b"".join(b'{"text": "' + b"z" * (1 << 20) + b'"}\n' for _ in range(20))
    batches = list(jsonl.read(io.BytesIO(lines), "f.jsonl", (), 1024, None))
    assert sum(len(b) for b in batches) == 20 and max(len(b) for b in batches) <= 8


# --- Parquet and Avro ---------------------------------------------------------------------

def parquet_bytes(table, **kw) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kw)
    return sink.getvalue()


def test_a_parquet_row_over_the_limit_is_a_dead_letter_and_its_neighbours_are_read():
    texts = ["small one", "y" * 10_000, "small two", None, "z" * 300]
    data = parquet_bytes(pa.table({"id": [f"r{i}" for i in range(5)], "text": texts,
                                   "other": ["w" * 50_000] * 5}), row_group_size=2)
    out = records(parquet, data, "f.parquet", 1000)
    assert [(r.position, r.reason if isinstance(r, DeadLetter) else r.row["text"]) for r in out] == [
        (0, "small one"), (1, "record_too_large"), (2, "small two"), (3, None), (4, "z" * 300)]
    dead = out[1]
    head = json.loads(dead.record)
    assert head == {"text": "y" * HEAD_BYTES, "id": "r1"}  # only the columns read
    assert "10,002 bytes" in dead.detail  # text + id: the big "other" column is not read
    assert all("other" not in r.row for r in out if isinstance(r, RowRecord))


def test_parquet_batches_shrink_where_the_footer_says_rows_are_large():
    data = parquet_bytes(pa.table({"id": ["a", "b", "c"], "text": ["x" * 4000] * 3}))
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    assert parquet._batch_rows(group, ["text", "id"], 1024, 10_000) == 2
    assert parquet._batch_rows(group, ["text", "id"], 1024, None) == 1024
    assert parquet._batch_rows(group, ["id"], 64, 10_000) == 64  # small columns: batch_size


SCHEMA = {"type": "record", "name": "Doc", "fields": [
    {"name": "id", "type": "string"}, {"name": "text", "type": ["null", "string"]},
    {"name": "blob", "type": ["null", "bytes"], "default": None}]}


def avro_bytes(rows, schema=SCHEMA, **kw) -> bytes:
    sink = io.BytesIO()
    fastavro.writer(sink, schema, rows, **kw)
    return sink.getvalue()


def test_an_avro_record_over_the_limit_counts_every_field():
    rows = [{"id": "a", "text": "fine", "blob": None},
            {"id": "b", "text": "fine too", "blob": b"\0" * 5000},  # a field not read still counts
            {"id": "c", "text": "é" * 600, "blob": None},  # 1,200 bytes of UTF-8
            {"id": "d", "text": "last", "blob": None}]
    out = records(avro, avro_bytes(rows, sync_interval=100), "f.avro", 1000)
    assert [(r.position, getattr(r, "reason", None)) for r in out] == [
        (0, None), (1, "record_too_large"), (2, "record_too_large"), (3, None)]
    assert "1,201 bytes" in out[2].detail
    assert json.loads(out[2].record)["text"] == "é" * HEAD_BYTES


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "text", "type": "string"}, {"name": "id", "type": "string"},
    {"name": "next", "type": ["null", "Node"], "default": None}]}


def deep_avro(depth: int) -> bytes:
    """A null-codec Avro file of schema NODE, built byte by byte (fastavro's writer itself
    crashes on such depths): block 1 holds a plain record, one nested ``depth`` deep, and
    another plain one; block 2 one plain record."""
    header = io.BytesIO()
    fastavro.writer(header, NODE, [])
    header = header.getvalue()
    sync = header[-16:]

    def datum(levels, rid):  # text "n", id, then union branch 1 (a Node) or 0 (null)
        return b"\x02n\x02x\x02" * levels + b"\x02n\x02" + rid + b"\x00"

    def block(datums):
        data = b"".join(datums)
        return zigzag(len(datums)) + zigzag(len(data)) + data + sync
    return header + block([datum(0, b"a"), datum(depth, b"d"), datum(0, b"b")]) + block([datum(0, b"c")])


def test_an_avro_record_too_deep_to_decode_loses_only_the_rest_of_its_block(tmp_path):
    """A recursive schema with a record nested 100,000 deep (1 MB): fastavro's compiled
    decoder would crash the process (SIGSEGV); read in a child process so that such a
    crash fails this test instead of the test run. That record's block is one
    too_deeply_nested dead letter, the next block is read, and take() skips it too."""
    import subprocess
    import sys
    path = tmp_path / "deep.avro"
    path.write_bytes(deep_avro(100_000))
    code = ("import json, sys\n"
            "from zipfit_beam.formats import avro\n"
            "p = sys.argv[1]\n"
            "out = [r for b in avro.read(open(p, 'rb'), p, ['text', 'id'], 1024, None) for r in b]\n"
            "taken = [r.position for r in avro.take(open(p, 'rb'), p, [0, 3])]\n"
            "print(json.dumps([[r.position, getattr(r, 'reason', None), getattr(r, 'detail', '')] "
            "for r in out] + [taken]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    *out, taken = json.loads(done.stdout)
    assert [(p, r) for p, r, _ in out] == [(0, None), (1, "too_deeply_nested"), (3, None)]
    assert "rows 1-2 unreadable" in out[1][2]
    assert taken == [0, 3]
    assert avro.is_recursive(NODE) and not avro.is_recursive(SCHEMA)


# --- parsing: nothing a record holds can raise ---------------------------------------------

def raw(line: bytes) -> RawRecord:
    return RawRecord("f.jsonl", 9, line)


def test_deep_nesting_is_a_dead_letter_even_in_an_unrelated_field():
    deep = b"[" * 100_000 + b"]" * 100_000
    for line in (deep, b'{"text": "fine", "other": ' + deep + b"}", b"{" * 100_000):
        out = parse_any(raw(line), "text", "id")
        assert (out.reason, out.position) == ("too_deeply_nested", 9), out.detail
        assert out.record == line


def test_the_nesting_limit_is_exact_and_brackets_in_strings_do_not_count():
    def nested(depth):
        return b'{"text": "x", "d": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    assert nesting_depth(nested(MAX_NESTING)) <= MAX_NESTING
    assert nesting_depth(nested(MAX_NESTING + 1)) == MAX_NESTING + 1
    assert nesting_depth(nested(40), stop=10) == 11  # stops once past the limit
    assert isinstance(parse_any(raw(nested(MAX_NESTING)), "text", "id"), Document)
    assert parse_any(raw(nested(MAX_NESTING + 1)), "text", "id").reason == "too_deeply_nested"
    in_string = b'{"text": "' + b"[{" * 5000 + b'\\"[[", "id": "s"}'
    assert nesting_depth(in_string) == 1
    assert parse_any(raw(in_string), "text", "id").id == "s"


class Raising(dict):
    def __init__(self, exc, **kw):
        super().__init__(**kw)
        self._exc = exc

    def get(self, *args):
        raise self._exc


@pytest.mark.parametrize("exc, reason", [(RecursionError("deep"), "too_deeply_nested"),
                                         (OverflowError("big"), "unparseable"),
                                         (MemoryError(), "unparseable"),
                                         (KeyError("odd"), "unparseable")])
def test_an_exception_while_preparing_a_record_is_its_dead_letter(exc, reason):
    out = parse_any(RowRecord("f.avro", 4, Raising(exc, text="some text")), "text", "id")
    assert (out.source, out.position, out.reason) == ("f.avro", 4, reason)
    assert type(exc).__name__ in out.detail and out.record == b'{"text": "some text"}'


def test_a_template_value_that_cannot_be_printed_is_a_dead_letter():
    from zipfit_beam.io.templates import TextTemplate
    row = {"a": "x", "n": 10 ** 5000}  # str() refuses ints over 4,300 digits
    out = parse_any(RowRecord("f", 0, row), TextTemplate("{a} {n}"), "id")
    assert out.reason == "unparseable" and "ValueError" in out.detail
    deep = []
    for _ in range(5000):
        deep = [deep]
    out = parse_any(RowRecord("f", 1, {"text": "x", "g": deep}), "text", "id", group_field="g")
    assert out.reason == "too_deeply_nested" and out.record  # the row, as far as it shows


def test_every_reason_is_listed():
    assert {"record_too_large", "too_deeply_nested", "unparseable", "corrupt_block"} <= set(REASONS)


# --- scoring holds one copy of a long text --------------------------------------------------

def test_the_guard_walks_long_documents_in_blocks_with_the_same_answer():
    rng = random.Random(3)
    words = ["alpha", "Beta", "ΣΟΦΙΑ", "straße", "x_y", "42", "İstanbul", "日本", "end."]
    target = " ".join(rng.choice(words) for _ in range(40))
    short = "one two three four five six seven eight nine"
    index = contamination.ContaminationIndex(
        list(contamination.target_ngrams("t", target)) + list(contamination.target_ngrams("s", short)))
    text = " ".join(rng.choice(words) for _ in range(3000)) + "\n" + target + " " + short + \
        "\n".join(rng.choice(words) for _ in range(500)) + target
    want = index.match(text)
    assert want is not None and want.target_id == "t"
    for segment in (13, 14, 50, 997):
        for chars in (5, 64, 1000):
            contamination.SEGMENT_TOKENS, contamination.LOWER_CHARS = segment, chars
            try:
                assert index.match(text) == want, (segment, chars)
            finally:
                contamination.SEGMENT_TOKENS, contamination.LOWER_CHARS = 1 << 16, 1 << 20


@pytest.mark.parametrize("seed", range(3))
def test_lowering_in_pieces_is_lowering_whole(seed):
    rng = random.Random(seed)
    alphabet = "aAΣσς \n\t\rİi\u0307ß_-.ÉéǅΩ日"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for size in (1, 2, 5):
            assert "".join(contamination.lowered_pieces(text, size)) == text.lower()


def test_a_long_text_is_counted_without_a_list_of_its_tokens():
    from zipfit_beam.score import tokens
    text = "def f(x):\n    return x + 1  # ok\n" * 40_000
    assert tokens.count_regex(text) == len(tokens._PRETOKEN.findall(text))
    tracemalloc.start()
    try:
        tokens.count_regex(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
