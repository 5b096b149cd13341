"""The scheduler's due times: period semantics, spec changes, missed ticks, coincidence."""

from calico_nodestatus.agent.schedule import COINCIDENCE_SECONDS, Scheduler


def test_new_object_is_due_at_once_then_every_period() -> None:
    s = Scheduler()
    s.track("a", 10, now=100.0)
    assert s.due(100.0) == ["a"]
    s.reported("a", now=100.0)
    assert s.due(105.0) == []
    assert s.next_deadline() == 110.0
    s.reported("a", now=110.02)  # phase kept: next is 120, not 120.02
    assert s.next_due("a") == 120.0


def test_period_zero_reports_once_until_spec_change() -> None:
    s = Scheduler()
    s.track("a", 0, now=0.0)
    assert s.due(0.0) == ["a"]
    s.reported("a", now=0.0)
    assert s.due(1e9) == []
    assert s.next_deadline() is None
    s.track("a", 0, now=50.0)  # spec change
    assert s.due(50.0) == ["a"]


def test_spec_change_makes_object_due_now_with_new_period() -> None:
    s = Scheduler()
    s.track("a", 60, now=0.0)
    s.reported("a", now=0.0)
    s.track("a", 5, now=7.0)
    assert s.due(7.0) == ["a"]
    s.reported("a", now=7.0)
    assert s.next_due("a") == 12.0


def test_slow_report_collapses_missed_ticks() -> None:
    s = Scheduler()
    s.track("a", 2, now=0.0)
    s.reported("a", now=9.0)  # the report took longer than several periods
    assert s.next_due("a") == 11.0


def test_objects_due_within_the_coincidence_window_share_a_tick() -> None:
    s = Scheduler()
    s.track("a", 10, now=0.0)
    s.track("b", 10, now=COINCIDENCE_SECONDS / 2)
    s.track("c", 10, now=5.0)
    assert s.due(0.0) == ["a", "b"]


def test_retry_overrides_period_zero_and_forget_stops() -> None:
    s = Scheduler()
    s.track("a", 0, now=0.0)
    s.retry_at("a", 3.0)  # the single report failed: retry anyway
    assert s.due(2.0) == []
    assert s.due(3.0) == ["a"]
    s.forget("a")
    assert s.due(10.0) == [] and "a" not in s
