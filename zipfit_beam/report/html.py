"""What a curator sees after a run: a summary table on the terminal, and ``report.html`` with
SVG plots next to the output. Rendered from ``manifest.json`` and ``summary.json`` only (the
job reduced the corpus to those), so it costs the same for 400 documents or 400 million.

    report.html                    self-contained: plots embedded, every document text escaped
    report-score-histogram.svg     scores of the corpus and the selection, threshold marked
    report-score-vs-length.svg     a deterministic sample: score against document length
    report-groups.svg              each group's share of the selection against its share of the corpus
    report-tokens.svg              token totals of corpus and selection, by group

Re-render an existing output with ``zipfit-beam report DIR``. The plots are drawn by
``report.svg`` (no plotting library: the same data gives the same bytes).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import posixpath
from typing import Dict, List, Optional, Sequence, Tuple

from zipfit_beam.io.publish import MANIFEST_NAME, SUMMARY_NAME
from zipfit_beam.report import stats, svg

__all__ = ["selection_rule", "format_summary", "plot_histogram", "plot_scatter",
           "plot_groups", "plot_tokens", "render_plots", "render_html", "write_report",
           "run_report"]

REPORT_NAME = "report.html"
PLOTS = {
    "histogram": "report-score-histogram.svg",
    "scatter": "report-score-vs-length.svg",
    "groups": "report-groups.svg",
    "tokens": "report-tokens.svg",
}
GROUPS_PLOTTED = 12
COLORS = {"corpus": "#9aa5b1", "selected": "#1f6feb", "contaminated": "#d1242f",
          "threshold": "#bf8700"}
OTHER_GROUPS = "#d0d7de"


# ---------------------------------------------------------------- terminal summary

def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def selection_rule(manifest: dict) -> str:
    """The selection mode in words, e.g. ``top-K, K = 1,000`` or ``token budget 2,000,000``."""
    rule = manifest.get("selection") or {}
    mode = rule.get("mode")
    if mode == "top_k":
        text = f"top-K, K = {rule['top_k']:,}"
    elif mode == "token_budget":
        text = f"token budget {rule['token_budget']:,}"
    elif mode == "fraction":
        text = f"the best fraction {rule['fraction']:g}"
    else:
        return "selection"
    if rule.get("min_score") is not None:
        text += f", score >= {rule['min_score']:g}"
    return text


def format_summary(manifest: dict, wall_s: Optional[float] = None,
                   report_path: Optional[str] = None) -> str:
    """The end-of-run table printed by the launcher."""
    counts = manifest.get("counts", {})
    guard = manifest.get("contamination", {"enabled": False})
    threshold = manifest.get("threshold")
    rows: List[Tuple[str, str, str]] = [
        ("read", _n(counts.get("read")), "records"),
        ("scored", _n(counts.get("scored")),
         f"{counts['scored'] / wall_s:,.0f} docs/s over the whole job"
         if wall_s and counts.get("scored") else ""),
        ("rejected", _n(counts.get("rejected")),
         ", ".join(f"{r} {c:,}" for r, c in manifest.get("rejected_by_reason", {}).items())),
    ]
    if guard.get("enabled"):
        what = "left out of the selection" if guard.get("excluded") else \
            "kept (--allow-contaminated)"
        rows.append(("contaminated", _n(counts.get("contaminated")),
                     f"share a {guard['ngram']}-gram with a target; {what}"))
    else:
        rows.append(("contaminated", "-", "not checked (--contamination-ngram 0)"))
    rows.append(("selected", _n(counts.get("selected")),
                 f"{selection_rule(manifest)}; threshold score {threshold['score']:.6f} "
                 f"(id {threshold['id']})" if threshold else
                 f"{selection_rule(manifest)}; every candidate"))
    if counts.get("selected_tokens") is not None:
        rows.append(("tokens", _n(counts["selected_tokens"]), "in the selection"))
    width = max(len(r[1]) for r in rows)
    title = "zipfit-beam: done" + (f" in {wall_s:.1f}s" if wall_s is not None else "")
    lines = [title] + [f"  {name:<13} {num:>{width}}  {note}".rstrip() for name, num, note in rows]
    output = manifest.get("config", {}).get("output")
    if output:
        lines.append(f"  {'output':<13} {output}")
    if report_path:
        lines.append(f"  {'report':<13} {report_path}")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots

def plot_histogram(summary: dict, manifest: dict) -> bytes:
    hist = summary["histogram"]
    parts = [{int(k): v for k, v in hist[name].items()} for name in ("all", "selected", "contaminated")]
    edges, (all_c, sel_c, con_c) = stats.rebin(parts, hist["bin_width"])
    top = max(all_c, default=0)
    symlog = top > 50 * max(max(sel_c, default=1), 1)
    threshold = manifest.get("threshold")
    x_lo, x_hi = svg.span(edges + ([threshold["score"]] if threshold else []), pad=0.02)
    chart = svg.Chart("Score distribution", svg.Axis(x_lo, x_hi),
                      svg.Axis(0, max(top, 1) * 1.1, "symlog" if symlog else "linear"),
                      "ZIP-FIT alignment (higher = closer to the targets)",
                      "documents (log scale)" if symlog else "documents")
    for counts, color in ((all_c, "corpus"), (sel_c, "selected"), (con_c, "contaminated")):
        for a, b, n in zip(edges, edges[1:], counts):
            if n:
                chart.bar(a, b, 0, n, COLORS[color])
    chart.key("corpus", COLORS["corpus"])
    chart.key("selected", COLORS["selected"])
    if any(con_c):
        # A handful of documents is invisible as bars: mark their bins above the bars.
        chart.markers([(a + b) / 2 for a, b, c in zip(edges, edges[1:], con_c) if c], top * 1.04,
                      COLORS["contaminated"])
        chart.key(f"contaminated: {sum(con_c):,}"
                  + (" (left out)" if manifest["contamination"].get("excluded") else ""),
                  COLORS["contaminated"], "marker")
    if threshold:
        chart.vline(threshold["score"], COLORS["threshold"])
        chart.key(f"threshold {threshold['score']:.4f}", COLORS["threshold"], "line")
    return chart.svg()


def plot_scatter(summary: dict, manifest: dict) -> bytes:
    points = summary["sample"]["points"]
    threshold = manifest.get("threshold")
    sizes = [max(p["bytes"], 1) for p in points]
    scores = [p["score"] for p in points] + ([threshold["score"]] if threshold else [])
    chart = svg.Chart(f"Score against length: a sample of {len(points):,} scored documents",
                      svg.Axis(min(sizes, default=1) / 1.5, max(sizes, default=10) * 1.5, "log"),
                      svg.Axis(*svg.span(scores)),
                      "document length (UTF-8 bytes, log scale)", "ZIP-FIT alignment")
    kinds = [("not selected", COLORS["corpus"], lambda p: not p["selected"] and not p["contaminated"]),
             ("selected", COLORS["selected"], lambda p: p["selected"] and not p["contaminated"]),
             ("contaminated", COLORS["contaminated"], lambda p: p["contaminated"])]
    for label, color, keep in kinds:
        chosen = [p for p in points if keep(p)]
        if chosen:
            chart.dots([max(p["bytes"], 1) for p in chosen], [p["score"] for p in chosen], color)
            chart.key(f"{label} ({len(chosen)})", color, "dot")
    if threshold:
        chart.hline(threshold["score"], COLORS["threshold"], width=1.2)
        chart.key("threshold", COLORS["threshold"], "line")
    return chart.svg()


def _group_label(group: str, field: Optional[str]) -> str:
    if not field:
        return "all documents"
    return group if len(group) <= 28 else group[:25] + "..."


def plot_groups(summary: dict) -> bytes:
    groups = summary["groups"]
    rows = _top_groups(summary)
    totals = summary["totals"]
    corpus_docs, selected_docs = totals["corpus"]["docs"] or 1, totals["selected"]["docs"] or 1
    shares = [(r["docs"] / corpus_docs * 100, r["selected_docs"] / selected_docs * 100) for r in rows]
    labels = tuple((len(rows) - 1 - i, _group_label(r["group"], groups["field"]))
                   for i, r in enumerate(rows))
    field = groups["field"] or "(no --group-field)"
    chart = svg.Chart(f"Groups by {field}: selection against corpus",
                      svg.Axis(0, max([s for pair in shares for s in pair], default=0) * 1.08 or 1),
                      svg.Axis(-0.6, max(len(rows), 1) - 0.4, ticks=labels), "% of documents",
                      height=round(90 + 32 * max(len(rows), 1)))
    for (y, _), (corpus, selected) in zip(labels, shares):
        chart.bar(0, corpus, y, y + 0.4, COLORS["corpus"])
        chart.bar(0, selected, y - 0.4, y, COLORS["selected"])
    if rows:
        chart.key("share of corpus", COLORS["corpus"])
        chart.key("share of selection", COLORS["selected"])
    return chart.svg()


def plot_tokens(summary: dict) -> bytes:
    """Token totals of corpus and selection as two 100% bars split by group (the totals are
    in the labels): how the selection's tokens, not only its documents, are made up."""
    rows = _top_groups(summary)
    field = summary["groups"]["field"]
    totals = summary["totals"]
    chart = svg.Chart("Token totals and where they come from", svg.Axis(0, 100),
                      svg.Axis(-0.6, 1.6, ticks=((0, f"selection\n{totals['selected']['tokens']:,} tokens"),
                                                  (1, f"corpus\n{totals['corpus']['tokens']:,} tokens"))),
                      f"% of tokens ({summary.get('token_measure', 'tokens')})", height=240)
    other = False
    for y, (key, total_key) in enumerate((("selected_tokens", "selected"), ("tokens", "corpus"))):
        total = totals[total_key]["tokens"]
        left = 0.0
        for j, r in enumerate(rows):
            share = 100.0 * r[key] / total if total else 0.0
            chart.bar(left, left + share, y - 0.4, y + 0.4, svg.PALETTE[j % len(svg.PALETTE)])
            left += share
        if total and left < 99.95:
            chart.bar(left, 100.0, y - 0.4, y + 0.4, OTHER_GROUPS)
            other = True
    if rows and totals["corpus"]["tokens"]:
        for j, r in enumerate(rows):
            chart.key(_group_label(r["group"], field), svg.PALETTE[j % len(svg.PALETTE)])
        if other:
            chart.key("other groups", OTHER_GROUPS)
    return chart.svg()


def _top_groups(summary: dict) -> List[dict]:
    rows = summary["groups"]["rows"]
    return sorted(rows, key=lambda r: (-(r["docs"] + r["selected_docs"]), r["group"]))[:GROUPS_PLOTTED]


def render_plots(manifest: dict, summary: dict) -> Dict[str, bytes]:
    """SVG bytes of every plot, by ``PLOTS`` key."""
    return {"histogram": plot_histogram(summary, manifest), "scatter": plot_scatter(summary, manifest),
            "groups": plot_groups(summary), "tokens": plot_tokens(summary)}


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#1f2328;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #d0d7de;margin:.4em 0}
pre{white-space:pre-wrap;max-height:14em;overflow:auto;background:#f6f8fa;margin:0;padding:.4em;
font-size:.8em}
table.examples td:last-child{min-width:30em}
.warn{color:#d1242f;font-weight:600}.ok{color:#1a7f37;font-weight:600}.muted{color:#656d76}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[int] = (),
           cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, _Raw):
                cells.append(f"<td>{cell.html}</td>")
            elif i in numeric:
                cells.append(f'<td class="num">{_e(_fmt(cell))}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Cell content that is already HTML (built from escaped parts)."""

    def __init__(self, markup: str):
        self.html = markup


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _img(key: str, image: bytes, alt: str) -> str:
    data = base64.b64encode(image).decode("ascii")
    return (f'<img id="plot-{key}" alt="{_e(alt)}" data-file="{_e(PLOTS[key])}" '
            f'src="data:image/svg+xml;base64,{data}">')


def _examples_table(examples: List[dict], field: Optional[str]) -> str:
    if not examples:
        return '<p class="muted">none</p>'

    def name(e):
        mark = (f' <span class="warn">(contaminated: {_e(e["target"])})</span>'
                if e.get("contaminated") else "")
        return _Raw(_e(e["id"]) + mark)

    rows = [[e["score"], name(e), f"{e['source']}:{e['position']}",
             *([e["group"]] if field else []), e["bytes"], e["tokens"],
             _Raw(f"<pre>{_e(e['snippet'])}</pre>")] for e in examples]
    headers = ["score", "id", "source:position", *([field] if field else []), "bytes", "tokens",
               "text (start)"]
    first_size = 4 if field else 3
    return _table(headers, rows, numeric=(0, first_size, first_size + 1), cls="examples")


def render_html(manifest: dict, summary: dict, plots: Dict[str, bytes]) -> str:
    """The report page. Every value from the data (ids, paths, group names, document text)
    goes through ``html.escape``."""
    counts, config = manifest["counts"], manifest["config"]
    guard = manifest.get("contamination", {"enabled": False})
    totals, groups = summary["totals"], summary["groups"]
    field = groups["field"]
    threshold = manifest.get("threshold")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>zipfit-beam report: {_e(config['output'])}</title><style>{_CSS}</style>"
             f"</head><body>",
             f"<h1>ZIP-FIT selection report</h1>",
             f"<p class=\"muted\">output <code>{_e(config['output'])}</code> &middot; "
             f"{_e(', '.join(config['sources']))} scored against {manifest['targets']['count']:,} "
             f"targets ({_e(', '.join(manifest['targets']['files']))}) &middot; "
             f"rendered {_e(datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}</p>"]

    # Counts
    contaminated = counts.get("contaminated")
    count_rows = [["read", counts["read"], "records in the input"],
                  ["scored", counts["scored"], "parsed documents"],
                  ["rejected", counts["rejected"], ", ".join(
                      f"{r}: {c:,}" for r, c in manifest.get("rejected_by_reason", {}).items())
                   or "none"],
                  ["contaminated", contaminated,
                   (f"share a {guard['ngram']}-gram with a target; "
                    + ("left out of the selection" if guard.get("excluded") else
                       "kept (--allow-contaminated)")) if guard.get("enabled") else "not checked"],
                  ["selected", counts["selected"], selection_rule(manifest)]]
    if counts.get("selected_tokens") is not None:
        count_rows.append(["selected tokens", counts["selected_tokens"],
                           "counted by " + manifest.get("selection", {}).get("token_counter", "?")])
    parts.append("<h2 id=\"counts\">Counts</h2>")
    parts.append(_table(["", "documents", "note"], count_rows, numeric=(1,), cls="counts"))
    if threshold:
        parts.append(f"<p>Selection threshold: score <b>{threshold['score']:.6f}</b> (the last "
                     f"selected document: <code>{_e(threshold['id'])}</code>, "
                     f"{_e(threshold['source'])}:{threshold['position']}).</p>")
    else:
        parts.append("<p>The rule cut nothing off: every candidate was selected.</p>")

    # Plots
    parts.append("<h2 id=\"scores\">Scores</h2>")
    parts.append(_img("histogram", plots["histogram"], "score histogram with the threshold"))
    parts.append(_img("scatter", plots["scatter"], "score against document length"))

    # Groups and tokens
    parts.append(f"<h2 id=\"groups\">Where the selection comes from</h2>")
    parts.append(_img("groups", plots["groups"], "group shares"))
    if field:
        shown = len(groups["rows"])
        note = (f"{groups['distinct']:,} distinct values of <code>{_e(field)}</code>"
                + (f"; the {shown} largest (by corpus and by selection) are listed" if
                   shown < groups["distinct"] else ""))
        parts.append(f"<p>{note}.</p>")
    else:
        parts.append("<p class=\"muted\">Pass <code>--group-field FIELD</code> (e.g. "
                     "<code>source</code>) to break the corpus down by a record field.</p>")
    cd, sd = totals["corpus"]["docs"], totals["selected"]["docs"]
    group_rows = [[_group_label(r["group"], field) if not field else r["group"], r["docs"],
                   _pct(r["docs"], cd), r["selected_docs"], _pct(r["selected_docs"], sd),
                   r["tokens"], r["selected_tokens"]] for r in groups["rows"]]
    parts.append(_table([field or "group", "corpus docs", "corpus share", "selected docs",
                         "selection share", "corpus tokens", "selected tokens"],
                        group_rows, numeric=(1, 3, 5, 6), cls="groups"))
    parts.append("<h2 id=\"tokens\">Token totals</h2>")
    parts.append(_img("tokens", plots["tokens"], "token totals"))
    token_rows = [[name, totals[key]["docs"], totals[key]["bytes"], totals[key]["tokens"]]
                  for name, key in (("corpus (scored)", "corpus"), ("selection", "selected"),
                                    ("contaminated", "contaminated"))]
    parts.append(_table(["", "documents", "UTF-8 bytes", "tokens"], token_rows,
                        numeric=(1, 2, 3), cls="tokens"))
    parts.append(f"<p class=\"muted\">Tokens: {_e(summary.get('token_measure', 'tokens'))}.</p>")

    # Contamination
    parts.append("<h2 id=\"contamination\">Contamination guard</h2>")
    if not guard.get("enabled"):
        parts.append("<p class=\"warn\">Not checked: the run was made with "
                     "<code>--contamination-ngram 0</code>.</p>")
    else:
        n_cont = contaminated or 0
        verdict = ("<span class=\"ok\">no source document shares a "
                   f"{guard['ngram']}-gram with a target</span>") if not n_cont else (
            f"<span class=\"warn\">{n_cont:,} source document(s) share a {guard['ngram']}-gram "
            "with a target</span> and were "
            + ("left out of the selection" if guard["excluded"] else
               "<b>kept</b> in the candidates (--allow-contaminated)"))
        parts.append(f"<p>{verdict}. Normalization: {_e(guard['normalization'])}; "
                     f"{guard['targets_guarded']:,} targets looked for.</p>")
        if guard.get("targets_unguarded"):
            parts.append(f"<p class=\"warn\">{len(guard['targets_unguarded'])} target(s) have fewer "
                         f"than {guard['min_target_tokens']} tokens and are not looked for: "
                         f"{_e(', '.join(guard['targets_unguarded']))}</p>")
        docs = guard.get("documents", [])
        if docs:
            if len(docs) < n_cont:
                parts.append(f"<p>The first {len(docs):,} by id are listed (all in manifest.json "
                             f"up to that bound).</p>")
            parts.append(_table(["id", "source:position", "score", "matching target"],
                                [[d["id"], f"{d['source']}:{d['position']}", d["score"], d["target"]]
                                 for d in docs], numeric=(2,), cls="contaminated"))

    # Examples
    ex = summary["examples"]
    parts.append("<h2 id=\"examples\">Examples</h2>")
    parts.append("<h3>Best selected</h3>" + _examples_table(ex["top"], field))
    parts.append("<h3>Last selected (just above the threshold)</h3>"
                 + _examples_table(ex["boundary"], field))
    parts.append("<h3>Lowest scored in the corpus</h3>" + _examples_table(ex["bottom"], field))

    # Configuration
    parts.append("<h2 id=\"config\">Configuration</h2>")
    cfg_rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in sorted(config.items())]
    cfg_rows += [[f"version: {k}", v] for k, v in sorted(manifest.get("versions", {}).items())]
    cfg_rows.append(["kernel", manifest.get("kernel", "")])
    parts.append(_table(["setting", "value"], cfg_rows, cls="config"))
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- files

def _read_json(path: str) -> dict:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path) as f:
        return json.loads(f.read())


def _write(path: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.create(path) as f:
        f.write(data)


def write_report(output_dir: str) -> str:
    """Render ``report.html`` and the SVG plots into ``output_dir`` (any Beam filesystem) from its
    manifest and summary; returns the report's path."""
    manifest = _read_json(posixpath.join(output_dir, MANIFEST_NAME))
    summary = _read_json(posixpath.join(output_dir, SUMMARY_NAME))
    plots = render_plots(manifest, summary)
    for key, image in plots.items():
        _write(posixpath.join(output_dir, PLOTS[key]), image)
    path = posixpath.join(output_dir, REPORT_NAME)
    _write(path, render_html(manifest, summary, plots).encode("utf-8"))
    return path


def run_report(argv: Optional[List[str]] = None) -> str:
    """``zipfit-beam report DIR``: (re)write the report of a finished selection."""
    from apache_beam.io.filesystems import FileSystems

    from zipfit_beam.cli.options import parse_report_args
    output = parse_report_args(argv)
    for name in (MANIFEST_NAME, SUMMARY_NAME):
        if not FileSystems.exists(posixpath.join(output, name)):
            raise FileNotFoundError(f"{output} has no {name}: not the output of a finished "
                                    f"selection (or one made before reports existed)")
    path = write_report(output)
    print(path)
    return path
