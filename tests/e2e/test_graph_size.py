"""The job graph: it does not grow with the number of source files (the patterns travel in
it and the files are matched on the workers; the launcher lists them only to fail early),
and no step buffers every scored document (the spine of ``io.keys``)."""

import json

import apache_beam as beam
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from zipfit_beam.cli.options import parse_select_args
from zipfit_beam.io.files import resolve_sources
from zipfit_beam.io.targets import load_targets
from zipfit_beam.jobs.select import build_pipeline

from tests.conftest import write_jsonl


def build(tmp_path, n_files: int, targets) -> beam.Pipeline:
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
    return p


def graph_bytes(tmp_path, n_files: int, targets) -> int:
    return len(build(tmp_path, n_files, targets).to_runner_api().SerializeToString())


def test_graph_size_does_not_grow_with_the_number_of_files(tmp_path, targets):
    small, large = graph_bytes(tmp_path, 10, targets), graph_bytes(tmp_path, 10_000, targets)
    print(f"job graph: {small:,} bytes for 10 files, {large:,} bytes for 10,000 files")
    # The only difference is the file count in the manifest and the directory name's digits.
    assert abs(large - small) < 200, (small, large)


COMBINES = {common_urns.composites.COMBINE_PER_KEY.urn, common_urns.composites.COMBINE_GLOBALLY.urn}
BUFFERING = {common_urns.primitives.FLATTEN.urn: "Flatten", common_urns.primitives.GROUP_BY_KEY.urn: "GroupByKey"}


def buffers_of_every_document(proto, start_suffix: str) -> list:
    """The steps that would hold every document a step emits at once on the local runner:
    a Flatten or GroupByKey, or a side input, fed from the output of the step named
    ``*start_suffix`` through element-wise steps only; a combine stops the walk (its
    precombine runs where the documents stream)."""
    transforms = proto.components.transforms
    inside_combine = {sub for t in transforms.values() if t.spec.urn in COMBINES
                      for sub in _descendants(transforms, t)}
    per_document = {pc for t in transforms.values() if t.unique_name.endswith(start_suffix)
                    for pc in t.outputs.values()}
    assert per_document, f"no step named *{start_suffix}"
    found, changed = [], True
    while changed:
        changed = False
        for tid, t in transforms.items():
            if t.subtransforms or tid in inside_combine:
                continue  # composites are seen through their parts; combines do not pass documents on
            fed = [tag for tag, pc in t.inputs.items() if pc in per_document]
            if not fed:
                continue
            if t.spec.urn in BUFFERING:
                found.append(f"{BUFFERING[t.spec.urn]} {t.unique_name}")
                continue
            if t.spec.urn == common_urns.primitives.PAR_DO.urn:
                payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
                found += [f"side input of {t.unique_name}" for tag in fed if tag in payload.side_inputs]
                if not all(tag in payload.side_inputs for tag in fed):
                    new = set(t.outputs.values()) - per_document
                    per_document |= new
                    changed |= bool(new)
    return sorted(set(found))


def _descendants(transforms, t):
    for sub in t.subtransforms:
        yield sub
        yield from _descendants(transforms, transforms[sub])


# Every step that reads the key tables, and what it emits per table: never one element
# per scored document (the cut's candidates and the selection are few; the contaminated and
# rejected are what their writers need).
TABLE_READERS = {
    "ZipFitSelect/SelectDocuments/FindCut/Digits1": "a histogram per batch of rows",
    "ZipFitSelect/SelectDocuments/FindCut/Candidates2": "the keys of round 1's boundary bin",
    "ZipFitSelect/SelectDocuments/KeepSelected": "the selection",
    "SummarizeSelection/ScoredBatches": "a BatchSummary per batch of rows",
    "ZipFitSelect/ReadContaminated": "the documents the guard flagged",
    "ZipFitSelect/ReadRejected": "the dead letters",
    "ZipFitSelect/SumTables/KeyWithVoid": "the table's counts",
}


def test_no_step_buffers_every_scored_document(tmp_path, targets):
    proto = build(tmp_path, 2, targets).to_runner_api()
    transforms = proto.components.transforms
    tables = {pc for t in transforms.values() if t.unique_name.endswith("ScoreFiles/ScoreFile")
              for pc in t.outputs.values()}
    readers = {t.unique_name for t in transforms.values()
               if not t.subtransforms and tables & set(t.inputs.values())}
    assert readers == set(TABLE_READERS)
    assert buffers_of_every_document(proto, "ReadContaminated") == []


def test_the_buffer_check_can_fail():
    p = beam.Pipeline()
    scored = p | "ReadScored" >> beam.Create([1, 2])
    rows = scored | "Rows" >> beam.Map(lambda x: ("", x))
    (rows, p | "Other" >> beam.Create([("", 3)])) | "Both" >> beam.Flatten()
    rows | "Summed" >> beam.CombinePerKey(sum)  # fine: a combine
    p | "Once" >> beam.Create([0]) | "Look" >> beam.Map(lambda _, xs: xs, beam.pvalue.AsList(scored))
    assert buffers_of_every_document(p.to_runner_api(), "ReadScored") == ["Flatten Both", "side input of Look"]
