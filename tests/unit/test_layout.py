"""The layout's rules, checked on the source: the pure modules import no Beam, and no code
outside ``zipfit_beam/formats/`` branches on a format's name."""

import ast
import pathlib
import subprocess
import sys

import pytest

from zipfit_beam import formats

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "zipfit_beam"

PURE = ["zipfit_beam", "zipfit_beam.records", "zipfit_beam.score.ncd", "zipfit_beam.score.tokens",
        "zipfit_beam.score.contamination", "zipfit_beam.score.spec", "zipfit_beam.score.docwork", "zipfit_beam.select.cut",
        "zipfit_beam.select.columns",
        "zipfit_beam.formats", "zipfit_beam.formats.base", "zipfit_beam.formats.schema",
        "zipfit_beam.formats.jsonl", "zipfit_beam.formats.parquet", "zipfit_beam.formats.avro",
        "zipfit_beam.formats.hf", "zipfit_beam.io.parse", "zipfit_beam.io.templates",
        "zipfit_beam.io.hf", "zipfit_beam.report.stats", "zipfit_beam.jobs.config"]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_beam(module):
    code = (f"import sys, {module}; "
            "sys.exit('apache_beam imported' if 'apache_beam' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or proc.stdout


def test_the_check_above_can_fail():
    proc = subprocess.run([sys.executable, "-c", "import sys, zipfit_beam.io.read; "
                           "sys.exit('apache_beam imported' if 'apache_beam' in sys.modules else 0)"],
                          capture_output=True, text=True)
    assert proc.returncode != 0


def format_branches(source: str):
    """Line numbers of comparisons (==, !=, in, not in) with a format's name as a literal."""
    names = set(formats.FORMATS)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                    found.append(node.lineno)
    return found


def test_no_format_name_branches_outside_the_format_modules():
    outside = [p for p in PACKAGE.rglob("*.py") if "formats" not in p.relative_to(PACKAGE).parts]
    assert len(outside) > 20
    hits = [f"{p.relative_to(PACKAGE)}:{line}" for p in outside for line in format_branches(p.read_text())]
    assert hits == []
    # ... and the check finds one when there is one.
    assert format_branches("def f(fmt):\n    return fmt in ('jsonl', 'x') or fmt == 'avro'\n") == [2, 2]
