"""The node status agent: keeps every CalicoNodeStatus addressed to this node filled from BIRD.

Split by concern:
- ``schedule``: per-object due times from ``updatePeriodSeconds`` (pure).
- ``content``: status building and change detection (pure).
- ``budget``: keeps the serialised object under a size budget (pure).
- ``backoff``: exponential backoff with jitter (pure; randomness injected).
- ``logs``: one ``key=value`` line per event.
- ``watch``: list + watch of this node's objects, resumed and re-listed on expiry.
- ``runner``: the orchestration (``NodeStatusAgent``): one BIRD collection per tick shared by
  every due object, conflict-safe status writes, liveness heartbeat, state for metrics/health.
"""
