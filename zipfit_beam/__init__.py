"""ZIP-FIT data selection as an Apache Beam pipeline.

What users embed, importable from here (loaded on first use, so that importing a pure
module such as ``zipfit_beam.score.ncd`` does not import Beam):

    ZipFitSelect    the transform over a PCollection of records (``jobs.records``)
    SelectFiles     the same over source files, with key tables (``jobs.select``, the CLI's)
    SelectionRule   top-K, token budget or fraction, with an optional score floor
    ScoringSpec     how documents are scored (compressor, level, long documents, guard, ...)
    run             the ``select`` job from command-line arguments

Layout by role: ``score/`` (NCD, kernels, tokens, guard), ``select/`` (the cut),
``formats/`` (one module per format), ``io/`` (files, reading, fetch, writing,
publishing), ``report/`` (summary, stats, report, progress), ``jobs/`` (select,
reselect, align), ``cli/`` (flags). See the README's "Architecture".
"""

__version__ = "0.1.0"

__all__ = ["ZipFitSelect", "SelectFiles", "SelectionRule", "ScoringSpec", "run", "__version__"]

_EXPORTS = {
    "ZipFitSelect": "zipfit_beam.jobs.records",
    "SelectFiles": "zipfit_beam.jobs.select",
    "run": "zipfit_beam.jobs.select",
    "SelectionRule": "zipfit_beam.select.cut",
    "ScoringSpec": "zipfit_beam.score.spec",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zipfit_beam' has no attribute {name!r}")
