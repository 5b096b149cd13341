"""Structured log lines and backoff delays."""

from calico_nodestatus.agent.backoff import Backoff
from calico_nodestatus.agent.logs import format_event


def test_event_line_is_key_value_with_quoting() -> None:
    line = format_event("write_failed", {"name": "n1", "error": 'etcd "down" now', "skipped": None, "n": 3})
    assert line == 'event=write_failed name=n1 error="etcd \\"down\\" now" n=3'


def test_backoff_grows_with_jitter_and_caps() -> None:
    low = Backoff(base_seconds=1.0, cap_seconds=8.0, rand=lambda: 0.0)
    high = Backoff(base_seconds=1.0, cap_seconds=8.0, rand=lambda: 1.0)
    assert [low.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [high.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    high.reset()
    assert high.next_delay() == 1.0
