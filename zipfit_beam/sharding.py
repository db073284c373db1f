"""Writing the selected documents as deterministic shards: same selection, same bytes.

Beam's ``WriteToText`` deals records to shards at random and writes them in arrival order,
so two runs of the same selection give different files. Here a record's shard is a hash
of its ranking key, every shard is written sorted by rank (best first), and gzip output
carries no timestamp or file name. ``select`` and ``reselect`` therefore write identical
``selected-*`` files for the same selection, on any runner and worker count.

Each shard is sorted in memory by the worker that writes it: with ``num_shards=0`` the
count is chosen from the data, one shard per ~128 MiB of selected records.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import posixpath
from typing import Iterable, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from zipfit_beam.records import RankKey

SHARD_BYTES = 128 * 1024 * 1024


def shard_of(key: RankKey, num_shards: int) -> int:
    """A stable shard number for a ranking key (the same in every process and run)."""
    digest = hashlib.blake2b(repr(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_count(num_shards: int, total_bytes: int) -> int:
    return num_shards or max(1, math.ceil(total_bytes / SHARD_BYTES))


def shard_name(prefix: str, index: int, count: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def shard_bytes(lines: Iterable[bytes], suffix: str) -> bytes:
    """The file content for lines already in order: each line ends with a newline, then
    compressed as the suffix says (gzip with mtime 0 and no file name, zstd, bzip2; all
    deterministic), so equal lines give equal bytes."""
    data = b"".join(line + b"\n" for line in lines)
    if suffix.endswith(".gz"):
        return gzip.compress(data, mtime=0)
    if suffix.endswith(".zst"):
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    if suffix.endswith(".bz2"):
        import bz2
        return bz2.compress(data)
    return data


class WriteShardDoFn(beam.DoFn):
    """(shard index, [(rank key, line) or None, ...]) + shard count -> the written path.
    None entries only make sure every shard index, even an empty one, gets a file."""

    def __init__(self, directory: str, prefix: str, suffix: str):
        self._directory, self._prefix, self._suffix = directory, prefix, suffix

    def process(self, element: Tuple[int, Iterable[Optional[Tuple[RankKey, bytes]]]], count: int):
        index, items = element
        ordered = sorted(item for item in items if item is not None)
        path = posixpath.join(self._directory, shard_name(self._prefix, index, count, self._suffix))
        content = shard_bytes((line for _, line in ordered), self._suffix)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(content)
        yield path


class WriteSelectedShards(beam.PTransform):
    """PCollection[(RankKey, line bytes)] -> PCollection[str]: the paths of
    ``prefix-SSSSS-of-NNNNN`` shards written in ``directory``, each line in a shard chosen
    by a hash of its key, sorted by rank. ``num_shards`` 0: one shard per ~128 MiB."""

    def __init__(self, directory: str, prefix: str = "selected", suffix: str = ".jsonl",
                 num_shards: int = 0):
        super().__init__()
        self._directory, self._prefix, self._suffix = directory, prefix, suffix
        self._num_shards = num_shards

    def expand(self, lines):
        num_shards = self._num_shards
        count = (lines
                 | "LineBytes" >> beam.Map(lambda kl: len(kl[1]) + 1)
                 | "TotalBytes" >> beam.CombineGlobally(sum)
                 | "ShardCount" >> beam.Map(lambda total: shard_count(num_shards, total)))
        keyed = lines | "AssignShards" >> beam.Map(
            lambda kl, n: (shard_of(kl[0], n), kl), AsSingleton(count))
        every_shard = count | "EveryShard" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])
        return ((keyed, every_shard)
                | "AllShardEntries" >> beam.Flatten()
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(
                    WriteShardDoFn(self._directory, self._prefix, self._suffix), AsSingleton(count)))
