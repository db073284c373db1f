"""What a curator sees: the contamination guard, the report, metrics, progress and the
summary table, end to end through ``run(argv)`` and the CLI."""

import base64
import glob
import html
import html.parser
import json
import logging
import os
import re
from xml.etree import ElementTree

import pytest
from apache_beam.metrics.metric import MetricsFilter

from zipfit_beam.score import contamination
from zipfit_beam.report import html as report
from zipfit_beam.cli import main as cli_main
from zipfit_beam.jobs.select import run

from tests.conftest import BAD_LINES, oracle_scores, oracle_top_k, read_jsonl, write_jsonl, write_lines

K = 8


@pytest.fixture
def planted(tmp_path, sources, targets):
    """The fixture corpus plus verbatim and disguised copies of targets, a near miss, and
    markup in ids and text that the report must escape."""
    t = targets
    plants = [
        {"id": "planted-exact", "text": t[0]["text"], "source": "benchmark"},
        {"id": "planted-embedded", "source": "benchmark",
         "text": "# helpers\nimport os\n\n" + t[1]["text"].upper().replace("    ", "\t") + "\n# end\n"},
        {"id": "planted-<script>alert(1)</script>", "source": "benchmark",
         "text": "<script>alert('pwned')</script>\n" + t[3]["text"]},
    ]
    near = contamination.normalize(t[2]["text"])[:12]  # one token short of a 13-gram
    near_miss = {"id": "near-miss", "text": " ".join(near) + " and then something else", "source": "python"}
    corpus = sources + plants + [near_miss]
    src = write_lines(tmp_path / "src.jsonl.gz", [json.dumps(r).encode() for r in corpus]
                      + [line for line, _ in BAD_LINES])
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    return src, tgt, corpus, [p["id"] for p in plants]


def select(tmp_path, src, tgt, *extra, name="out"):
    out = str(tmp_path / name)
    result = run(["--source", src, "--target", tgt, "--output", out, "--top-k", str(K),
                  "--group-field", "source", *extra])
    selected = [r for p in sorted(glob.glob(f"{out}/selected-*")) for r in read_jsonl(p)]
    return result, out, selected, json.load(open(os.path.join(out, "manifest.json")))


def test_planted_target_copies_are_excluded_counted_and_named(tmp_path, planted, targets):
    src, tgt, corpus, plant_ids = planted
    _, out, selected, manifest = select(tmp_path, src, tgt)
    # Excluded before the top-K: K clean documents are still selected, the clean oracle's top K.
    clean = [r for r in corpus if r["id"] not in plant_ids]
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle_scores(clean, targets), K))
    # Counted and named, with the target each copy came from.
    assert manifest["counts"]["contaminated"] == 3
    assert manifest["counts"]["read"] == manifest["counts"]["scored"] + manifest["counts"]["rejected"]
    listed = {d["id"]: d for d in manifest["contamination"]["documents"]}
    assert set(listed) == set(plant_ids)
    assert listed["planted-exact"]["target"] == targets[0]["id"]
    assert listed["planted-embedded"]["target"] == targets[1]["id"]
    assert manifest["contamination"]["excluded"] is True
    # ... and in the report, escaped.
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "planted-exact" in page and "planted-embedded" in page
    assert "planted-&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page


def test_allow_contaminated_keeps_them_and_they_rank_first(tmp_path, planted, sources, targets):
    src, tgt, corpus, plant_ids = planted
    _, out, selected, manifest = select(tmp_path, src, tgt, "--allow-contaminated")
    ids = [r["id"] for r in sorted(selected, key=lambda r: -r["zipfit_score"])]
    assert sorted(ids) == sorted(oracle_top_k(oracle_scores(corpus, targets), K))
    # Why the guard exists: the two verbatim copies score highest of all. (The upper-cased
    # copy compresses like any other text, yet the normalized n-grams still catch it.)
    assert set(ids[:2]) == {"planted-exact", "planted-<script>alert(1)</script>"}
    assert manifest["counts"]["contaminated"] == 3 and manifest["contamination"]["excluded"] is False
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page  # the text, escaped
    assert "<script>" not in page
    # kept, but marked (with the target they copy) where they appear among the examples
    assert f'planted-exact <span class="warn">(contaminated: {targets[0]["id"]})</span>' in page


def test_guard_off_checks_nothing(tmp_path, planted):
    src, tgt, _, plant_ids = planted
    _, _, selected, manifest = select(tmp_path, src, tgt, "--contamination-ngram", "0")
    assert manifest["counts"]["contaminated"] is None
    assert manifest["contamination"] == {"enabled": False}
    assert {"planted-exact", "planted-<script>alert(1)</script>"} <= {r["id"] for r in selected}


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.headings, self._h = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self.tables.append(attrs.get("class", ""))
        elif tag in ("h2", "h3"):
            self._h = tag

    def handle_data(self, data):
        if self._h:
            self.headings.append(data)
            self._h = None


def test_report_has_the_plots_and_tables(tmp_path, planted):
    src, tgt, corpus, _ = planted
    _, out, _, manifest = select(tmp_path, src, tgt)
    page = Page()
    page.feed(open(os.path.join(out, "report.html"), encoding="utf-8").read())
    # Four plots, embedded (self-contained) and also written next to the page.
    assert [img["id"] for img in page.images] == [f"plot-{k}" for k in
                                                  ("histogram", "scatter", "groups", "tokens")]
    for img in page.images:
        assert img["src"].startswith("data:image/svg+xml;base64,")
        image = base64.b64decode(img["src"].split(",", 1)[1])
        root = ElementTree.fromstring(image)  # well-formed XML, with escaped data in it
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert int(root.get("width")) >= 600 and int(root.get("height")) >= 150
        assert root.findall(".//{http://www.w3.org/2000/svg}rect")
        assert open(os.path.join(out, img["data-file"]), "rb").read() == image
    assert {"counts", "groups", "tokens", "contaminated", "examples", "config"} <= set(page.tables)
    assert page.tables.count("examples") == 3
    summary = json.load(open(os.path.join(out, "summary.json")))
    # The tables agree with the counts: groups add up to the corpus and to the selection.
    rows = summary["groups"]["rows"]
    assert summary["groups"]["field"] == "source"
    assert {r["group"] for r in rows} == {"python", "man", "c", "perl", "benchmark"}
    assert sum(r["docs"] for r in rows) == manifest["counts"]["scored"]
    assert sum(r["selected_docs"] for r in rows) == manifest["counts"]["selected"] == K
    assert summary["totals"]["contaminated"]["docs"] == 3
    assert sum(summary["histogram"]["all"].values()) == manifest["counts"]["scored"]
    assert sum(summary["histogram"]["selected"].values()) == K
    assert sum(p["selected"] for p in summary["sample"]["points"]) == K  # sample = whole corpus here
    top = summary["examples"]["top"]
    assert top[0]["score"] == max(r["score"] for r in summary["examples"]["boundary"] + top)
    # the examples' text is read back from the source file, and shown escaped
    by_id = {r["id"]: r for r in corpus}
    for e in top + summary["examples"]["bottom"]:
        assert e["snippet"] == by_id[e["id"]]["text"][:600] and e["tokens"] >= 1
    assert html.escape(top[0]["snippet"], quote=True) in open(os.path.join(out, "report.html")).read()
    assert summary["examples"]["boundary"][0]["score"] == pytest.approx(manifest["threshold"]["score"])
    # Re-rendering from the published files gives the same page (apart from its timestamp).
    before = open(os.path.join(out, "report.html")).read()
    assert cli_main(["report", out]) == 0
    strip = lambda s: re.sub(r"rendered [^<]*", "", s)  # noqa: E731
    assert strip(open(os.path.join(out, "report.html")).read()) == strip(before)


def test_every_manifest_count_is_a_beam_metric(tmp_path, planted):
    src, tgt, _, _ = planted
    result, _, _, manifest = select(tmp_path, src, tgt, "--no-report")
    counters = {r.key.metric.name: r.committed for r in
                result.metrics().query(MetricsFilter().with_namespace("zipfit"))["counters"]}
    for name, value in manifest["counts"].items():
        assert counters.get(name) == value, name
    for reason, value in manifest["rejected_by_reason"].items():
        assert counters.get(f"rejected_{reason}") == value, reason


def test_progress_lines_and_summary_table(tmp_path, planted, caplog, capsys):
    src, tgt, corpus, _ = planted
    caplog.set_level(logging.INFO, logger="zipfit_beam.report.progress")
    _, out, _, manifest = select(tmp_path, src, tgt, "--progress-interval", "1e-9", "--batch-size", "4",
                                 "--no-report")
    lines = [r.getMessage() for r in caplog.records if r.name == "zipfit_beam.report.progress"]
    total = len(corpus) + len(BAD_LINES)
    assert lines and all(re.match(r"scored [\d,]+ (of ~[\d,]+ records|documents)", m) for m in lines)
    assert any(f"of ~{total} records" in m and "docs/s" in m and "ETA" in m for m in lines)
    table = capsys.readouterr().out
    assert re.search(rf"contaminated\s+3\s+share a 13-gram", table)
    assert re.search(rf"selected\s+{K}\s+top-K, K = {K}; threshold score", table)
    assert re.search(rf"tokens\s+{manifest['counts']['selected_tokens']:,}\s+in the selection", table)
    assert re.search(rf"read\s+{manifest['counts']['read']}\s+records", table)
    assert not os.path.exists(os.path.join(out, "report.html"))  # --no-report


def test_format_summary_without_a_run():
    text = report.format_summary({"counts": {"read": 5, "scored": 4, "rejected": 1, "selected": 4,
                                             "contaminated": None},
                                  "contamination": {"enabled": False}, "threshold": None,
                                  "rejected_by_reason": {"invalid_json": 1}}, 2.0)
    assert "not checked" in text and "invalid_json 1" in text and "every candidate" in text


def test_report_of_a_run_with_nothing_scored(tmp_path, targets, recwarn):
    src = write_lines(tmp_path / "bad.jsonl", [line for line, _ in BAD_LINES])
    tgt = write_jsonl(tmp_path / "t.jsonl", targets)
    out = str(tmp_path / "out")
    run(["--source", src, "--target", tgt, "--output", out, "--top-k", "3", "--group-field", "source"])
    page = Page()
    page.feed(open(os.path.join(out, "report.html"), encoding="utf-8").read())
    assert len(page.images) == 4 and "counts" in page.tables
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["totals"]["corpus"]["docs"] == 0 and summary["examples"]["top"] == []
    assert not [w for w in recwarn if "legend" in str(w.message)]


def test_guard_and_report_with_a_parquet_source_and_a_text_template(tmp_path, sources, targets):
    """The new input paths: rows of a Parquet file, text built by --text-template from two
    columns, the group from a third. Copies of targets split over the two columns are
    still caught, and the report's examples show the templated text, escaped."""
    from tests.fixtures_io import read_output, write_parquet

    def row(doc_id, text, kind):
        title, _, body = text.partition("\n")
        return {"id": doc_id, "title": title, "body": body, "kind": kind, "n": len(text)}

    rows = [row(s["id"], s["text"], s["source"]) for s in sources]
    rows += [row("copy-0", "# copied\n" + targets[0]["text"], "benchmark"),
             row("copy-<b>4</b>", "<b>bold</b> & more\n" + targets[4]["text"], "benchmark")]
    texts = {r["id"]: f"{r['title']}\n{r['body']}" for r in rows}
    src = write_parquet(tmp_path / "rows.parquet", rows, row_group_size=9)
    tgt = write_jsonl(tmp_path / "targets.jsonl", targets)
    out = str(tmp_path / "out")
    run(["--source", src, "--target", tgt, "--target-text-field", "text", "--output", out,
         "--top-k", str(K), "--text-template", r"{title}\n{body}", "--group-field", "kind"])
    selected, _, manifest = read_output(out)

    clean = [{"id": i, "text": t} for i, t in texts.items() if not i.startswith("copy-")]
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle_scores(clean, targets), K))
    assert all(set(r) == {"id", "title", "body", "kind", "n", "zipfit_score"} for r in selected)
    assert manifest["counts"]["contaminated"] == 2
    listed = {d["id"]: (d["target"], d["position"]) for d in manifest["contamination"]["documents"]}
    assert listed == {"copy-0": (targets[0]["id"], len(sources)),
                      "copy-<b>4</b>": (targets[4]["id"], len(sources) + 1)}

    summary = json.load(open(os.path.join(out, "summary.json")))
    rows_by_group = {r["group"]: r for r in summary["groups"]["rows"]}
    assert rows_by_group["benchmark"]["docs"] == 2 and rows_by_group["benchmark"]["selected_docs"] == 0
    assert sum(r["docs"] for r in rows_by_group.values()) == len(rows)
    for e in summary["examples"]["top"] + summary["examples"]["bottom"]:
        assert e["snippet"] == texts[e["id"]][:600]  # the templated text, fetched from the row
    assert summary["totals"]["contaminated"]["docs"] == 2
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "copy-&lt;b&gt;4&lt;/b&gt;" in page and "<b>4</b>" not in page
    assert html.escape(summary["examples"]["top"][0]["snippet"], quote=True) in page


def test_reselect_leaves_out_what_the_scoring_run_left_out(tmp_path, planted):
    from zipfit_beam.jobs.reselect import run_reselect
    import pyarrow.parquet as pq

    src, tgt, _, plant_ids = planted
    _, scored_dir, _, _ = select(tmp_path, src, tgt, "--write-scores", "--no-report", name="scored")
    table = pq.read_table(glob.glob(f"{scored_dir}/scores/keys-*.parquet")).to_pylist()
    flagged = {r["id"]: r["contaminated_by"] for r in table if r["contaminated_by"]}
    assert set(flagged) == set(plant_ids) and {r["group"] for r in table} >= {"benchmark", "python"}
    _, _, fresh_rows, fresh_m = select(tmp_path, src, tgt, "--no-report", name="fresh")
    again = str(tmp_path / "again")
    run_reselect(["--scores", scored_dir, "--source", src, "--output", again, "--top-k", str(K)])
    again_rows = [r for p in sorted(glob.glob(f"{again}/selected-*")) for r in read_jsonl(p)]
    assert sorted(r["id"] for r in again_rows) == sorted(r["id"] for r in fresh_rows)
    assert not set(plant_ids) & {r["id"] for r in again_rows}
    again_m = json.load(open(os.path.join(again, "manifest.json")))
    assert again_m["counts"] == fresh_m["counts"] and again_m["threshold"] == fresh_m["threshold"]
