"""Prometheus metrics for the agent.

- ``catalogue``: every metric name, type, labels and help (the single source), Felix names too.
- ``state.MetricsState``: the collection history the agent's collection hook feeds
  (``record_result``, ``record_collection``, ``record_collection_failure``); scrapes read its
  immutable ``view()``. ``state.AgentView``: the agent's own counters, objects and liveness, read
  from the agent at scrape time.
- ``exporter``: ``StatusCollector`` (custom collector with ``describe()``),
  ``build_registry(state, options, agent=...)``, ``MetricsServer`` (``/metrics``, ``/healthz``,
  404 elsewhere), ``ExporterOptions``.
- ``bundle``: generates deploy/monitoring/ (PrometheusRule, Grafana dashboard, scrape jobs).
"""
