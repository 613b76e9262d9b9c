"""Comparisons and reports: what a comparison holds (layout), its summary (one typed
``Comparison``), and the renderers that lay it out (tables, terminal, HTML report).
Metrics are in :mod:`polytask.metrics`, affinity/conflict/grouping in
:mod:`polytask.analysis`; running a comparison is :mod:`polytask.compare`."""
