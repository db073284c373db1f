import pytest

from zipfit_beam.io.parse import parse_object
from zipfit_beam.records import DeadLetter, Document
from zipfit_beam.io.templates import FieldText, TextTemplate, unescape_cli

HUMANEVAL = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n"}


def test_template_renders_the_papers_humaneval_format():
    t = TextTemplate("Problem: {prompt}\nSolution: {canonical_solution}")
    assert t.fields == ("prompt", "canonical_solution")
    assert t.extract(HUMANEVAL) == ("Problem: def f(x):\n\nSolution:     return x\n", None)


def test_literal_braces_numbers_and_repeated_fields():
    t = TextTemplate("{{{n}}} {a}-{a}")
    assert t.fields == ("n", "a")
    assert t.extract({"n": 3, "a": "x"}) == ("{3} x-x", None)
    assert t.extract({"n": 2.5, "a": "x"})[0] == "{2.5} x-x"


@pytest.mark.parametrize("template,message", [
    ("{prompt.__class__}", "plain field names"),
    ("{prompt[0]}", "plain field names"),
    ("{prompt!r}", "conversions"),
    ("{prompt:>{width}}", "format specs"),
    ("{prompt:10}", "format specs"),
    ("{}", "positional"),
    ("{0}", "positional"),
    ("no fields", "no {field}"),
    ("{unclosed", "text template"),
    ("}", "text template"),
])
def test_unsafe_or_broken_templates_are_refused(template, message):
    with pytest.raises(ValueError, match=message):
        TextTemplate(template)


@pytest.mark.parametrize("obj,reason", [
    ({"prompt": "p"}, "missing_text"),
    ({"prompt": "p", "canonical_solution": None}, "text_not_string"),
    ({"prompt": "p", "canonical_solution": True}, "text_not_string"),
    ({"prompt": "p", "canonical_solution": ["x"]}, "text_not_string"),
    ({"prompt": "p", "canonical_solution": {"a": 1}}, "text_not_string"),
])
def test_template_field_problems_become_dead_letters(obj, reason):
    t = TextTemplate("Problem: {prompt}\nSolution: {canonical_solution}")
    out = parse_object(obj, "t.jsonl", 4, b"raw", t, "task_id")
    assert isinstance(out, DeadLetter) and out.reason == reason and out.position == 4
    assert "canonical_solution" in out.detail and out.record == b"raw"


def test_blank_rendering_is_empty_text():
    out = parse_object({"a": " ", "b": "\n"}, "s", 1, b"", TextTemplate("{a}{b}"), "id")
    assert isinstance(out, DeadLetter) and out.reason == "empty_text"


def test_template_document_gets_id_and_text():
    t = TextTemplate("Problem: {prompt}\nSolution: {canonical_solution}")
    doc = parse_object(HUMANEVAL, "h", 0, b"", t, "task_id")
    assert isinstance(doc, Document) and doc.id == "HumanEval/0" and doc.text.startswith("Problem: def f")


def test_field_text_keeps_the_original_reasons():
    f = FieldText("text")
    assert f.extract({"text": "x"}) == ("x", None)
    assert f.extract({})[1][0] == "missing_text"
    assert f.extract({"text": 1})[1][0] == "text_not_string"
    assert f.extract({"text": " \t"})[1][0] == "empty_text"


def test_cli_escapes():
    assert unescape_cli(r"a\nb\tc\\n\d") == "a\nb\tc\\n\\d"
