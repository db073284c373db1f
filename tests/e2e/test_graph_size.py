"""The job graph does not grow with the number of source files: the patterns travel in it
and the files are matched on the workers (the launcher lists them only to fail early)."""

import json

import apache_beam as beam

from zipfit_beam.cli.options import parse_select_args
from zipfit_beam.io.files import resolve_sources
from zipfit_beam.io.targets import load_targets
from zipfit_beam.jobs.select import build_pipeline

from tests.conftest import write_jsonl


def graph_bytes(tmp_path, n_files: int, targets) -> int:
    src = tmp_path / f"src-{n_files}"
    src.mkdir()
    line = json.dumps({"id": "d", "text": "def f(x):\n    return x\n"}) + "\n"
    for i in range(n_files):
        (src / f"part-{i:05d}.jsonl").write_text(line)
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    config, options = parse_select_args(["--source", f"{src}/*.jsonl", "--target", tgt,
                                         "--output", str(tmp_path / f"out-{n_files}"), "--top-k", "3"])
    files = resolve_sources(config.sources)
    assert len(files) == n_files
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, files, load_targets(config.targets, config.target_text, "id"))
    return len(p.to_runner_api().SerializeToString())


def test_graph_size_does_not_grow_with_the_number_of_files(tmp_path, targets):
    small, large = graph_bytes(tmp_path, 10, targets), graph_bytes(tmp_path, 10_000, targets)
    print(f"job graph: {small:,} bytes for 10 files, {large:,} bytes for 10,000 files")
    # The only difference is the file count in the manifest and the directory name's digits.
    assert abs(large - small) < 200, (small, large)
