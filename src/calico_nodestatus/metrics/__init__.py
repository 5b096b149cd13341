"""Prometheus metrics for the agent.

- ``catalogue``: every metric name, type, labels and help (the single source), Felix names too.
- ``state.MetricsState``: plain data the agent updates (``record_collection``,
  ``record_collection_failure``, ``record_object``/``forget_object``, ``record_write``,
  ``record_liveness``); scrapes read its immutable ``view()``.
- ``exporter``: ``StatusCollector`` (custom collector with ``describe()``), ``build_registry``,
  ``MetricsServer`` (``/metrics``, ``/healthz``, 404 elsewhere), ``ExporterOptions``.
- ``bundle``: generates deploy/monitoring/ (PrometheusRule, Grafana dashboard, scrape jobs).
"""
