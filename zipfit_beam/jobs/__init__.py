"""The jobs: ``select`` (score and select), ``reselect`` (a new selection from saved
scores), ``align`` (dataset-level alignment) and ``example``; each builds its graph from
one frozen config (``config``) and runs it."""
