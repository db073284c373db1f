"""Publishing a job's output atomically: every file is written under a staging directory
in the output, and one last step moves the files to their final names and writes
``manifest.json`` after them. Until then nothing appears under final names, so a reader
that waits for the manifest never sees half an output.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Callable, Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsList

__all__ = ["MANIFEST_NAME", "SUMMARY_NAME", "SCORES_DIR", "OUTPUT_PREFIXES", "staging_dir",
           "existing_outputs", "check_output", "WriteJsonDoFn", "PublishOutputDoFn", "publish"]

MANIFEST_NAME = "manifest.json"
OUTPUT_PREFIXES = ("selected-", "rejected-", "report")  # report.html, report-*.png
SUMMARY_NAME = "summary.json"  # the report's data, computed by the job
SCORES_DIR = "scores"  # DIR/scores/scores-*.parquet (select --write-scores)
STAGING_PREFIX = "_staging-"


def staging_dir(output: str) -> str:
    """A new staging directory inside ``output`` for one run."""
    return posixpath.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def check_output(output: str, overwrite: bool) -> None:
    """In the launcher: refuse an output directory that holds a previous run's output."""
    old = existing_outputs(output)
    if old and not overwrite:
        raise FileExistsError(
            f"{output} already holds the output of a previous run ({len(old)} files, e.g. "
            f"{old[0]}); choose another --output or pass --overwrite")


def existing_outputs(output_dir: str) -> List[str]:
    """Files of a previous run in ``output_dir`` (shards or manifest)."""
    patterns = [posixpath.join(output_dir, "*"), posixpath.join(output_dir, SCORES_DIR, "*")]
    names = []
    for pattern in patterns:
        try:
            names += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:
            pass
    return sorted(p for p in names if posixpath.basename(p) in (MANIFEST_NAME, SUMMARY_NAME)
                  or posixpath.basename(p).startswith(OUTPUT_PREFIXES)
                  or posixpath.basename(posixpath.dirname(p)) == SCORES_DIR)


class WriteJsonDoFn(beam.DoFn):
    """dict -> the JSON file at ``path`` (any Beam filesystem), with ``extra`` entries
    added; emits the path."""

    def __init__(self, path: str, extra: Optional[dict] = None, indent: Optional[int] = 2):
        self._path, self._extra, self._indent = path, dict(extra or {}), indent

    def process(self, value: dict):
        text = json.dumps(dict(value, **self._extra), indent=self._indent, sort_keys=True)
        with FileSystems.create(self._path) as f:
            f.write(text.encode("utf-8"))
        yield self._path


def staged_to_final(path: str, staging_dir: str, output_dir: str) -> str:
    """A staged file's final path: the same path relative to the output directory."""
    prefix = staging_dir.rstrip("/") + "/"
    relative = path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path)
    return posixpath.join(output_dir, relative)


class PublishOutputDoFn(beam.DoFn):
    """Runs once, after every shard is written to the staging directory: removes a previous
    run's output (only when overwriting was allowed), moves the staged shards to their final
    names and writes ``manifest.json`` last. ``assemble(**side inputs) -> dict`` turns the
    job's facts (counts, the cut, ...) into manifest entries."""

    def __init__(self, output_dir: str, staging_dir: str, manifest: dict,
                 assemble: Callable[..., dict] = dict):
        self._output_dir, self._staging_dir, self._manifest = output_dir, staging_dir, manifest
        self._assemble = assemble

    def process(self, _unused, staged_files: Iterable[str], **side):
        facts = self._assemble(**side)
        staged = sorted(set(staged_files))
        finals = [staged_to_final(p, self._staging_dir, self._output_dir) for p in staged]
        old = [p for p in existing_outputs(self._output_dir) if p not in finals]
        if old:
            FileSystems.delete(old)
        for directory in sorted({posixpath.dirname(p) for p in finals} - {self._output_dir}):
            try:
                FileSystems.mkdirs(directory)  # local filesystems; object stores need none
            except Exception:  # already there
                pass
        for src, dst in zip(staged, finals):
            if FileSystems.exists(src):  # a retried bundle may have moved it already
                if FileSystems.exists(dst):
                    FileSystems.delete([dst])
                FileSystems.rename([src], [dst])
        manifest = dict(self._manifest, **facts)
        manifest["outputs"] = sorted(p[len(self._output_dir) + 1:] for p in finals)
        with FileSystems.create(posixpath.join(self._output_dir, MANIFEST_NAME)) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        try:
            FileSystems.delete([self._staging_dir])
        except Exception:  # already gone, or an object store without directories
            pass
        yield posixpath.join(self._output_dir, MANIFEST_NAME)


def publish(p, output: str, staging: str, manifest: dict, staged: Sequence, assemble, facts: dict):
    """Add the publishing step: once every PCollection of staged paths in ``staged`` is
    complete, move the files into ``output`` and write the manifest. ``facts``: side
    inputs for ``assemble(**facts) -> dict`` (manifest entries)."""
    all_staged = tuple(staged) | "AllStaged" >> beam.Flatten()
    return (p
            | "PublishTrigger" >> beam.Create([None])
            | "PublishOutput" >> beam.ParDo(PublishOutputDoFn(output, staging, manifest, assemble),
                                            AsList(all_staged), **facts))
