"""ZIP-FIT data selection as an Apache Beam pipeline.

The scoring maths lives in :mod:`zipfit_beam.ncd` (no Beam import); the Beam
transforms users embed live in :mod:`zipfit_beam.transforms`.
"""

__version__ = "0.1.0"
