"""The report's SVG charts (``report.svg``) and the four plots drawn with them: ticks, scales,
escaping, determinism, and that each plot shows what its data says."""

import math
from xml.etree import ElementTree

import pytest

from zipfit_beam.report import html as report
from zipfit_beam.report import svg

NS = "{http://www.w3.org/2000/svg}"


def parse(data: bytes):
    return ElementTree.fromstring(data)


def texts(root):
    return ["".join(t.itertext()) for t in root.iter(NS + "text")]


@pytest.mark.parametrize("lo, hi", [(0, 1), (0, 105), (0.1123, 0.1567), (-3.2, 7.9), (0, 37.5),
                                    (1e-4, 3e-4), (0, 2_000_000)])
def test_nice_ticks_are_round_values_inside_the_range(lo, hi):
    ticks = svg.nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 11
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 2.5, 5))
    labels = [svg.number_label(t, step) for t in ticks]
    assert len(set(labels)) == len(labels)  # enough decimals to tell them apart


def test_labels():
    assert svg.number_label(1000.0) == "1,000" and svg.number_label(0.0) == "0"
    assert svg.number_label(0.15, 0.01) == "0.15" and svg.number_label(0.125, 0.025) == "0.125"


@pytest.mark.parametrize("axis", [svg.Axis(0, 10), svg.Axis(0.5, 5000, "log"), svg.Axis(0, 5000, "symlog")])
def test_axis_maps_its_range_to_0_1_in_order(axis):
    values = [axis.lo + (axis.hi - axis.lo) * i / 20 for i in range(21)]
    fracs = [axis.frac(v) for v in values]
    assert fracs[0] == pytest.approx(0) and fracs[-1] == pytest.approx(1)
    assert fracs == sorted(fracs) and len(set(fracs)) == len(fracs)
    assert all(axis.lo <= v <= axis.hi for v, _ in axis.tick_marks())


def test_log_ticks_are_powers_of_ten_and_symlog_keeps_zero():
    assert [v for v, _ in svg.Axis(0.7, 30_000, "log").tick_marks()] == [1, 10, 100, 1000, 10_000]
    assert [v for v, _ in svg.Axis(0, 5000, "symlog").tick_marks()] == [0, 1, 10, 100, 1000]
    with pytest.raises(ValueError, match="log axis"):
        svg.Axis(0, 10, "log")
    with pytest.raises(ValueError, match="scale"):
        svg.Axis(0, 10, "sqrt")


def test_a_chart_escapes_its_text_and_renders_the_same_bytes_twice():
    def draw():
        chart = svg.Chart('<script>alert("x")</script> & co', svg.Axis(0, 10),
                          svg.Axis(-0.6, 0.6, ticks=((0, "a <b>\nsecond line"),)), "x & y")
        chart.bar(0, 5, -0.4, 0.4, "#123456")
        chart.key("</text><b>", "#123456")
        return chart.svg()

    data = draw()
    assert data == draw()
    root = parse(data)  # well-formed: nothing from the data broke out of its element
    words = texts(root)
    assert '<script>alert("x")</script> & co' in words and "</text><b>" in words
    assert "a <b>second line" in words  # two tspans
    assert not [e for e in root.iter() if e.tag in ("script", NS + "script", "b", NS + "b")]
    (bar,) = [r for r in root.iter(NS + "rect") if r.get("fill") == "#123456" and r.get("height") != "10"]
    assert float(bar.get("width")) > 0 and float(bar.get("height")) > 0


def summary_and_manifest(contaminated=True, threshold=0.1234):
    width = 1e-4
    all_bins = {1000 + i: 5 + i for i in range(300)}
    selected = {b: c for b, c in all_bins.items() if b * width >= threshold}
    manifest = {"threshold": {"score": threshold, "id": "t", "source": "s", "position": 0},
                "contamination": {"enabled": True, "excluded": True}}
    summary = {"histogram": {"bin_width": width, "all": {str(k): v for k, v in all_bins.items()},
                             "selected": {str(k): v for k, v in selected.items()},
                             "contaminated": {"1100": 2, "1250": 1} if contaminated else {}},
               "sample": {"points": [{"bytes": 100 * (i + 1), "score": 0.1 + i / 1000,
                                      "selected": i % 3 == 0, "contaminated": i == 7}
                                     for i in range(40)]},
               "groups": {"field": "source", "distinct": 3, "rows": [
                   {"group": g, "docs": d, "selected_docs": s, "tokens": 10 * d, "selected_tokens": 10 * s}
                   for g, d, s in (("python", 50, 10), ("<c>", 30, 2), ("perl", 20, 0))]},
               "totals": {"corpus": {"docs": 100, "tokens": 1000}, "selected": {"docs": 12, "tokens": 120}},
               "token_measure": "regex-gpt2"}
    return summary, manifest


def test_histogram_shows_bins_threshold_and_contaminated_marks():
    summary, manifest = summary_and_manifest()
    root = parse(report.plot_histogram(summary, manifest))
    fills = [r.get("fill") for r in root.iter(NS + "rect")]
    assert fills.count(report.COLORS["corpus"]) == 60 + 1  # every re-binned bar is occupied; + legend
    assert fills.count(report.COLORS["selected"]) > 1
    marks = [p for p in root.iter(NS + "path") if p.get("fill") == report.COLORS["contaminated"]]
    assert len(marks) == 2 + 1  # two contaminated bins, + the legend's mark
    words = texts(root)
    assert "contaminated: 3 (left out)" in words and "threshold 0.1234" in words
    assert [l for l in root.iter(NS + "line") if l.get("stroke") == report.COLORS["threshold"]]


def test_plots_of_an_empty_run_render():
    summary, manifest = summary_and_manifest(contaminated=False)
    summary["histogram"].update(all={}, selected={})
    summary["sample"]["points"] = []
    summary["groups"]["rows"] = []
    summary["totals"] = {"corpus": {"docs": 0, "tokens": 0}, "selected": {"docs": 0, "tokens": 0}}
    manifest["threshold"] = None
    for image in report.render_plots(manifest, summary).values():
        assert parse(image).tag == NS + "svg"


def test_groups_and_tokens_plots_label_and_escape_every_group():
    summary, manifest = summary_and_manifest()
    for image in (report.plot_groups(summary), report.plot_tokens(summary)):
        words = texts(parse(image))
        assert {"python", "<c>", "perl"} <= set(words)
    root = parse(report.plot_tokens(summary))
    segments = [r for r in root.iter(NS + "rect") if r.get("fill") in svg.PALETTE]
    assert len(segments) == 2 * 3 + 3  # two stacked bars of three groups, + the legend


def test_scatter_draws_every_sampled_point_once():
    summary, manifest = summary_and_manifest()
    root = parse(report.plot_scatter(summary, manifest))
    assert len(list(root.iter(NS + "circle"))) == 40 + 3  # + one legend dot per kind
