"""Scoring: NCD and ZIP-FIT alignment (``ncd``), the exact C kernels, token counting
(``tokens``), the contamination guard (``contamination``), the scoring settings and the
prepared target set (``spec``), all pure; and their thin Beam transforms (``transforms``)."""
