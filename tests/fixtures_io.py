"""Writers for test inputs in every format, independent of the code under test (they use
gzip/zstandard/pyarrow/fastavro directly), and readers for the outputs."""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import json
import os
from typing import Iterable, List, Optional

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard


def compress_for(path: str, data: bytes) -> bytes:
    if path.endswith(".gz"):
        return gzip.compress(data)
    if path.endswith((".zst", ".zstd")):
        return zstandard.ZstdCompressor().compress(data)
    if path.endswith(".bz2"):
        return bz2.compress(data)
    return data


def write_jsonl_any(path, records: Iterable[dict]) -> str:
    """JSON lines, compressed after the file's extension (.gz, .zst, .bz2)."""
    path = str(path)
    data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
    with open(path, "wb") as f:
        f.write(compress_for(path, data))
    return path


def write_parquet(path, records: List[dict], row_group_size: int = 16, schema=None,
                  compression: str = "snappy") -> str:
    path = str(path)
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size, compression=compression)
    return path


def avro_string_schema(records: List[dict], name: str = "Doc") -> dict:
    """A record schema with every field of the first record as a nullable string."""
    return {"type": "record", "name": name,
            "fields": [{"name": k, "type": ["null", "string"]} for k in records[0]]}


def write_avro(path, records: List[dict], schema: Optional[dict] = None, codec: str = "null",
               sync_interval: int = 16000) -> str:
    path = str(path)
    with open(path, "wb") as f:
        fastavro.writer(f, schema or avro_string_schema(records), records, codec=codec,
                        sync_interval=sync_interval)
    return path


def corrupt_parquet_row_group(path: str, group: int, column: str) -> None:
    """Overwrite one column chunk of one row group with 0xff bytes (its page header then
    cannot be decoded)."""
    meta = pq.ParquetFile(path).metadata
    rg = meta.row_group(group)
    col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == column)
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    data = bytearray(open(path, "rb").read())
    data[start:start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    with open(path, "wb") as f:
        f.write(bytes(data))


def invalid_utf8_strings(values: List[Optional[bytes]]):
    """A pyarrow string array holding the given raw bytes, valid UTF-8 or not."""
    return pa.array(values, pa.binary()).view(pa.string())


# --- reading outputs --------------------------------------------------------------------

def read_rows(path: str) -> List[dict]:
    """Rows of one output file of any format."""
    if path.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    if path.endswith(".avro"):
        with open(path, "rb") as f:
            return list(fastavro.reader(f))
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif path.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    elif path.endswith(".bz2"):
        raw = bz2.decompress(raw)
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def read_output(out_dir: str):
    """(selected rows, rejected rows, manifest) of a finished run, any format."""
    out_dir = str(out_dir)
    selected = [r for p in sorted(glob.glob(os.path.join(out_dir, "selected-*"))) for r in read_rows(p)]
    rejected = [r for p in sorted(glob.glob(os.path.join(out_dir, "rejected-*"))) for r in read_rows(p)]
    with open(os.path.join(out_dir, "manifest.json")) as f:
        manifest = json.load(f)
    return selected, rejected, manifest
