"""Where a record's text comes from: one field, or a template over several. Pure: no Beam.

``--text-template "Problem: {prompt}\\nSolution: {canonical_solution}"`` builds the text
from several fields, the way the ZIP-FIT paper formats HumanEval. Templates are *not*
``str.format``: only plain ``{field}`` placeholders are allowed (no ``{a.b}``, ``{a[0]}``,
``{a!r}``, ``{a:>10}``, no positional ``{}``), and rendering is plain concatenation, so a
template can never reach an attribute, an index or a ``__format__`` method. ``{{`` and
``}}`` are literal braces.

Both kinds expose ``fields`` (what a columnar reader must read) and
``extract(obj) -> (text, None) | (None, (reason, detail))`` with the dead-letter reasons
of ``parsing``: ``missing_text``, ``text_not_string``, ``empty_text``.
"""

from __future__ import annotations

import string
from typing import Mapping, Optional, Tuple, Union

__all__ = ["FieldText", "TextTemplate", "text_spec", "as_text_spec", "unescape_cli"]

Problem = Tuple[str, str]  # (reason, detail)
Extracted = Tuple[Optional[str], Optional[Problem]]

_FORBIDDEN = set(".[]!:{}")


class FieldText:
    """The text is the value of one field, which must be a non-blank string."""

    def __init__(self, field: str):
        if not field:
            raise ValueError("the text field name must not be empty")
        self.field = field
        self.fields = (field,)

    def extract(self, obj: Mapping) -> Extracted:
        f = self.field
        if f not in obj:
            return None, ("missing_text", f"no field {f!r}")
        text = obj[f]
        if not isinstance(text, str):
            return None, ("text_not_string", f"field {f!r} is {_kind(text)}")
        if not text.strip():
            return None, ("empty_text", f"field {f!r} is empty or whitespace only")
        return text, None

    def describe(self) -> str:
        return f"field {self.field!r}"

    def __eq__(self, other):
        return isinstance(other, FieldText) and other.field == self.field

    def __hash__(self):
        return hash(("field", self.field))

    def __repr__(self):
        return f"FieldText({self.field!r})"


class TextTemplate:
    """Literal text with ``{field}`` placeholders filled from a record.

    A placeholder's value must be a string, or a number (rendered with ``str``); a
    missing field, a null, a bool, a list or an object rejects the record. The rendered
    text must not be blank."""

    def __init__(self, template: str):
        self.template = template
        self._parts = _compile(template)  # [(literal, field or None)]
        self.fields = tuple(dict.fromkeys(f for _, f in self._parts if f is not None))
        if not self.fields:
            raise ValueError(f"text template {template!r} has no {{field}} placeholder")

    def extract(self, obj: Mapping) -> Extracted:
        out = []
        for literal, field in self._parts:
            out.append(literal)
            if field is None:
                continue
            if field not in obj:
                return None, ("missing_text", f"no field {field!r} (text template)")
            value = obj[field]
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(str(value))
            else:
                return None, ("text_not_string", f"template field {field!r} is {_kind(value)}")
        text = "".join(out)
        if not text.strip():
            return None, ("empty_text", "the text template renders to blank text")
        return text, None

    def describe(self) -> str:
        return f"template {self.template!r}"

    def __eq__(self, other):
        return isinstance(other, TextTemplate) and other.template == self.template

    def __hash__(self):
        return hash(("template", self.template))

    def __repr__(self):
        return f"TextTemplate({self.template!r})"


TextSpec = Union[FieldText, TextTemplate]


def _kind(value) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _compile(template: str):
    parts = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:  # unbalanced braces
        raise ValueError(f"text template {template!r}: {e}") from None
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None))
            continue
        where = f"text template {template!r}, placeholder {{{field}"
        if conversion is not None:
            raise ValueError(f"{where}!{conversion}...}}: conversions (!r, !s, !a) are not allowed")
        if spec:
            raise ValueError(f"{where}:{spec}}}: format specs are not allowed")
        if not field or field.isdigit():
            raise ValueError(f"{where}}}: positional placeholders are not allowed; "
                             "name a field, e.g. {prompt}")
        if _FORBIDDEN & set(field):
            raise ValueError(f"{where}}}: only plain field names are allowed "
                             "(no attribute or index access)")
        parts.append((literal, field))
    return parts


def text_spec(field: Optional[str] = None, template: Optional[str] = None) -> TextSpec:
    """The TextSpec for a field name or a template (a template wins when both are given)."""
    if template is not None:
        return TextTemplate(template)
    return FieldText(field or "text")


def as_text_spec(spec: Union[str, TextSpec]) -> TextSpec:
    """Accept a plain field name where a TextSpec is expected (backward compatible)."""
    return FieldText(spec) if isinstance(spec, str) else spec


def unescape_cli(template: str) -> str:
    r"""``\n``, ``\t`` and ``\\`` typed on a command line become newline, tab, backslash
    (a shell passes ``"a\nb"`` as backslash + n); any other backslash stays as it is."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template) and template[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[template[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
