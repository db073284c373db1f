"""Fuzz: several hundred malformed records of every kind, planted among good ones in
every input format, plus damaged shards. Nothing crashes, nothing vanishes:
read = scored + rejected, every planted record is a dead letter with its file, position
and reason, and the selection equals a run on the good records alone."""

import gzip
import itertools
import json
import random
from collections import Counter

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from zipfit_beam.jobs.example import EXAMPLE_SOURCE
from zipfit_beam.jobs.select import run

from tests.conftest import read_jsonl, write_jsonl
from tests.fixtures_io import corrupt_parquet_row_group, invalid_utf8_strings, read_output

K = 30
INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"\x80abc"]


def bad_jsonl_line(rng: random.Random):
    """(line bytes, reason) for one malformed JSONL record of a random kind."""
    kind = rng.randrange(9)
    rid = f"bad-{rng.randrange(10**9)}"
    if kind == 0:  # truncated JSON
        full = json.dumps({"id": rid, "text": "def f(x):\n    return x" * rng.randint(1, 5)})
        return full[: rng.randint(1, len(full) - 1)].encode(), "invalid_json"
    if kind == 1:
        value = rng.choice(["[1, 2]", '"a string"', "42", "null", "true", "3.5", "[]"])
        return value.encode(), "not_an_object"
    if kind == 2:
        return json.dumps({"id": rid, rng.choice(["body", "Text", "content"]): "x = 1"}).encode(), "missing_text"
    if kind == 3:
        value = rng.choice([42, 1.5, ["def f(): pass"], {"code": "x"}, None, True])
        return json.dumps({"id": rid, "text": value}).encode(), "text_not_string"
    if kind == 4:
        value = rng.choice(["", " ", "\n", "\t \r\n ", "\u3000", "\u00a0 \u2003"])
        return json.dumps({"id": rid, "text": value}).encode(), "empty_text"
    if kind == 5:
        head = json.dumps({"id": rid, "text": "def f(): return 1"}).encode()
        cut = head.index(b"return")
        return head[:cut] + rng.choice(INVALID_UTF8) + head[cut:], "invalid_utf8"
    if kind == 6:
        return json.dumps({"id": rid, "text": "x" + rng.choice(["\ud800", "\udfff"])}).encode(), "invalid_utf8"
    if kind == 7:
        return rng.choice([b"", b"   ", b"\t"]), "blank_line"
    value = rng.choice([{"a": 1}, [1, 2], True, False])
    return json.dumps({"id": value, "text": "def f(): pass"}).encode(), "invalid_id"


def interleave(rng, good_lines, bad):
    """Good and bad items in a random order that keeps each list's own order."""
    slots = [0] * len(good_lines) + [1] * len(bad)
    rng.shuffle(slots)
    gi, bi = iter(good_lines), iter(bad)
    return [next(gi) if s == 0 else next(bi) for s in slots]


def jsonl_shard(path, rng, good, n_bad, compress, planted):
    bad = [bad_jsonl_line(rng) for _ in range(n_bad)]
    items = interleave(rng, [(json.dumps(d).encode(), None) for d in good], bad)
    for position, (_, reason) in enumerate(items, start=1):
        if reason:
            planted.append((str(path), position, reason))
    data = b"\n".join(line for line, _ in items) + b"\n"
    path.write_bytes(compress(data))
    return str(path)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def build_corpus(tmp_path, rng, good_docs):
    planted, files = [], []
    groups = iter([25, 20, 20, 15, 15, 10, 8, 7])
    take = (lambda n, it=iter(good_docs): list(itertools.islice(it, n)))
    g = [take(next(groups)) for _ in range(8)]

    files.append(jsonl_shard(tmp_path / "a.jsonl", rng, g[0], 110, lambda d: d, planted))
    files.append(jsonl_shard(tmp_path / "b.jsonl.gz", rng, g[1], 100, gzip.compress, planted))
    files.append(jsonl_shard(tmp_path / "c.jsonl.zst", rng, g[2], 100, zst, planted))

    # Parquet: bad values among good rows, one row group of filler that gets corrupted,
    # and a file without the text column.
    bad_values = [(None, "text_not_string"), ("", "empty_text"), (" \t\n", "empty_text"),
                  (b"caf\xe9 " * 3, "invalid_utf8"), (b"\xff\xfe", "invalid_utf8")]
    rows = interleave(rng, [(d["id"], d["text"].encode(), None) for d in g[3]],
                      [(f"pq-bad-{i}", *(lambda v, r: (v.encode() if isinstance(v, str) else v, r))(
                          *rng.choice(bad_values))) for i in range(40)])
    rows = rows[:32] + [(f"filler-{i}", b"lost in the damaged row group", "corrupt_row_group")
                        for i in range(16)] + rows[32:]
    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"id": [r[0] for r in rows],
                             "text": invalid_utf8_strings([r[1] for r in rows])}),
                   path, row_group_size=16)
    corrupt_parquet_row_group(path, 2, "text")
    planted.extend((path, i, r[2]) for i, r in enumerate(rows) if r[2] and r[2] != "corrupt_row_group")
    planted.append((path, 32, "corrupt_row_group"))
    files.append(path)
    path = str(tmp_path / "d-no-text.parquet")
    pq.write_table(pa.table({"id": [f"nt-{i}" for i in range(6)], "n": list(range(6))}), path)
    planted.extend((path, i, "missing_text") for i in range(6))
    files.append(path)

    # Avro: null/blank text and invalid UTF-8 among good records; non-record data.
    schema = {"type": "record", "name": "Doc",
              "fields": [{"name": "id", "type": "string"}, {"name": "text", "type": ["null", "string"]}]}
    bad_avro = [rng.choice([(None, "text_not_string"), ("", "empty_text"), ("\n\n", "empty_text"),
                            ("MARKMARK", "invalid_utf8")]) for _ in range(40)]
    recs = interleave(rng, [(d, None) for d in g[4]],
                      [({"id": f"av-bad-{i}", "text": t}, r) for i, (t, r) in enumerate(bad_avro)])
    path = str(tmp_path / "e.avro")
    with open(path, "wb") as f:
        fastavro.writer(f, schema, [r for r, _ in recs], sync_interval=256)
    data = open(path, "rb").read().replace(b"MARKMARK", b"\xff\xfe\xfd\xfcABCD")
    with open(path, "wb") as f:
        f.write(data)
    planted.extend((path, i, reason) for i, (_, reason) in enumerate(recs) if reason)
    files.append(path)
    path = str(tmp_path / "f-strings.avro")
    with open(path, "wb") as f:
        fastavro.writer(f, "string", [f"datum {i}" for i in range(5)])
    planted.extend((path, i, "not_an_object") for i in range(5))
    files.append(path)

    # Damaged shards: readable records first, then the damage (one dead letter each).
    lines = lambda docs: b"".join(json.dumps(d).encode() + b"\n" for d in docs)  # noqa: E731
    path = tmp_path / "g.jsonl.gz"  # a good gzip member, then bytes that are not gzip
    path.write_bytes(gzip.compress(lines(g[5])) + b"this is not a gzip member" * 4)
    planted.append((str(path), len(g[5]) + 1, "corrupt_file"))
    path = tmp_path / "h.jsonl.zst"  # a good frame, then a frame cut short
    noise = "".join(rng.choice("abcdefghij ") for _ in range(20000)).encode()
    cut_frame = zst(b'{"id": "cut", "text": "' + noise + b'"}\n')
    path.write_bytes(zst(lines(g[6])) + cut_frame[: len(cut_frame) // 2])
    planted.append((str(path), len(g[6]) + 1, "corrupt_file"))
    path = tmp_path / "i.jsonl.gz"  # not gzip at all
    path.write_bytes(b"\x1f\x8b but then nothing sensible" * 3)
    planted.append((str(path), 1, "corrupt_file"))
    path = tmp_path / "j.parquet"  # not Parquet at all
    path.write_bytes(b"PAR1" + bytes(rng.randrange(256) for _ in range(200)) + b"PAR1")
    planted.append((str(path), 0, "corrupt_file"))
    path = str(tmp_path / "k.avro")  # good records, then garbage after the last block
    with open(path, "wb") as f:
        fastavro.writer(f, schema, g[7])
    with open(path, "ab") as f:
        f.write(b"\x07garbage after the last block" * 3)
    planted.append((path, len(g[7]), "corrupt_file"))
    files += [str(tmp_path / n) for n in ("g.jsonl.gz", "h.jsonl.zst", "i.jsonl.gz", "j.parquet")] + [path]
    return files, planted


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzzed_inputs_never_crash_and_never_vanish(tmp_path, targets, seed):
    rng = random.Random(seed)
    pool = read_jsonl(EXAMPLE_SOURCE)
    rng.shuffle(pool)
    good = [{"id": d["id"], "text": d["text"]} for d in pool[:120]]
    files, planted = build_corpus(tmp_path, rng, good)
    assert len(planted) >= 400 and set(r for _, _, r in planted) >= {
        "invalid_json", "not_an_object", "missing_text", "text_not_string", "empty_text",
        "invalid_utf8", "blank_line", "invalid_id", "corrupt_file", "corrupt_row_group"}
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)

    out = str(tmp_path / "out")
    run([a for f in files for a in ("--source", f)] + [
        "--target", tgt, "--output", out, "--top-k", str(K), "--output-format=jsonl",
        "--num-shards=3", f"--batch-size={7 + seed}"])
    selected, rejected, manifest = read_output(out)

    only_good = write_jsonl(tmp_path / "good.jsonl", good)
    clean = str(tmp_path / "clean")
    run(["--source", only_good, "--target", tgt, "--output", clean, "--top-k", str(K)])
    want, _, want_manifest = read_output(clean)

    c = manifest["counts"]
    assert c["read"] == c["scored"] + c["rejected"]
    assert c["rejected"] == len(planted) and c["scored"] == len(good)
    assert manifest["rejected_by_reason"] == dict(sorted(Counter(r for _, _, r in planted).items()))
    assert sorted((r["source"], r["position"], r["reason"]) for r in rejected) == sorted(planted)
    assert all(r["detail"] for r in rejected)
    # the same selection, records and scores, as on the good records alone
    assert {r["id"]: r for r in selected} == {r["id"]: r for r in want}
    assert len(selected) == K and manifest["threshold"]["score"] == want_manifest["threshold"]["score"]
