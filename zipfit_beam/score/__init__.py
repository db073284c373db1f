"""Scoring: NCD and ZIP-FIT alignment (``ncd``), the exact C kernels, token counting
(``tokens``), the contamination guard (``contamination``), the scoring settings and the
prepared target set (``spec``), one worker's pass over documents (``docwork``: score, guard
and tokens, in the C extension ``_docwork`` when built), all pure; and their thin Beam
transforms (``transforms``)."""
