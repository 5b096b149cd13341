"""The agent's orchestration: keep every CalicoNodeStatus of this node filled from BIRD.

All tasks share one event loop, so state needs no locks. The collection loop applies watch
updates and runs the objects that are due — ONE BIRD collection per tick for the union of their
classes — and hands each object's desired status to the writer. Side tasks: the writer, the watch
(``watch.follow_node_objects``) and the liveness heartbeat (which also refreshes the status file).

Writes happen in the writer task, never on the collection loop, so a datastore that hangs or is
locked does not slow collection. The writer holds at most one desired status per object — the
latest replaces an unwritten older one, so nothing queues up during an outage. It writes only when
the content changed (``content.same_content``), with ``lastUpdated`` set then; through
``update_status`` (compare-and-swap); a conflict re-reads the object, re-applies the status and
retries; a datastore failure keeps the status and retries it with backoff (with jitter), and a
fresh collection is tried at once. The routes-omitted and bgp-sessions annotations are metadata, so
they go through ``update_annotations`` (a patch of those annotations alone) — only when a value
changes, which is rare (a table crossing the budget, a session changing state).

A piece (one family of one class) whose query failed never replaces good data with emptiness: the
writer keeps the stored content of that piece and names it in the collection-errors annotation
(``agent/stale.py``), written the same way and cleared by the next write after it is collected
again. The log gets one line when the set of failed pieces changes, not one per collection.

The first successful datastore operation after a failure wakes the watch out of its backoff, so
spec changes made during an outage arrive right after recovery; likewise the heartbeat or the watch
working again ends the write backoff, so the latest status is written right after recovery, not
when a backoff grown over a long outage runs out.

An object whose expires-at annotation (``apply --ttl``) has passed is deleted by the writer, on the
resourceVersion the agent knows: an edit meanwhile (a renewed expiry) makes the delete conflict, the
object is re-read, and only a version that is still expired is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from calico_nodestatus.agent.backoff import Backoff
from calico_nodestatus.agent.budget import (
    DEFAULT_SIZE_BUDGET_BYTES,
    ROUTES_OMITTED_ANNOTATION,
    annotation_value,
    fit_routes,
    read_annotation,
)
from calico_nodestatus.agent.content import (
    CollectedSections,
    build_status,
    keep_stable_times,
    rfc3339_now,
    same_content,
)
from calico_nodestatus.agent.logs import log_event
from calico_nodestatus.agent.schedule import Scheduler
from calico_nodestatus.agent.stale import (
    COLLECTION_ERRORS_ANNOTATION,
    KeptStatus,
    Piece,
    PieceError,
    collection_errors_value,
    keep_last_good,
    piece_name,
)
from calico_nodestatus.agent.watch import Resync, WatchUpdate, follow_node_objects
from calico_nodestatus.api import (
    BGPDaemonState,
    CalicoNodeBGPRouteStatus,
    CalicoNodeStatus,
    CalicoNodeStatusStatus,
    NodeStatusClass,
)
from calico_nodestatus.api.annotations import BGP_SESSIONS_ANNOTATION, EXPIRES_AT_ANNOTATION, parse_expiry
from calico_nodestatus.datastore.base import (
    Conflict,
    Datastore,
    DatastoreError,
    EventType,
    NotFound,
)
from calico_nodestatus.health.statusfile import StatusFileWriter

log = logging.getLogger(__name__)

# Collects the given classes for both IP families (one BIRD query per piece of data).
Collector = Callable[[frozenset[NodeStatusClass]], Awaitable[CollectedSections]]
# Told about every collection attempt, on the agent's loop: what was collected (None when the
# collection failed as a whole) and when. Metrics use it for per-collection observations.
CollectionObserver = Callable[[CollectedSections | None, datetime], None]

WRITE_ATTEMPTS = 3
# Renewing costs CPU on both ends (10 s: about half the idle CPU of 5 s); readers use the TTL stored
# in the record (3 heartbeats), so any heartbeat stays correct.
DEFAULT_HEARTBEAT_SECONDS = 10.0
STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    holder: str  # who renews the liveness record: "<hostname>/<pid>"
    size_budget_bytes: int = DEFAULT_SIZE_BUDGET_BYTES
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    liveness_ttl_seconds: float = 3 * DEFAULT_HEARTBEAT_SECONDS
    datastore_timeout_seconds: float = 10.0
    collect_timeout_seconds: float = 30.0
    resync_seconds: float = 30.0
    status_file: Path | None = None


@dataclass(slots=True)
class AgentCounters:
    collections: int = 0
    collection_failures: int = 0
    writes: int = 0
    write_conflicts: int = 0
    write_errors: int = 0
    writes_skipped_unchanged: int = 0
    # Collections in which a piece (family, class) failed, per piece name (``BGP/v6``).
    piece_failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectReport:
    """Per tracked object: its period and when its status was last written / confirmed current."""

    update_period_seconds: int
    last_write_at: datetime | None
    last_refresh_at: datetime | None  # written, or found already current


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What metrics and health read: the latest collection and the agent's own counters."""

    node: str
    objects: tuple[str, ...]
    collected: CollectedSections | None
    collected_at: datetime | None
    last_write_at: datetime | None
    datastore_ok: bool
    datastore_reason: str
    routes_omitted: dict[str, dict[str, int]]  # object name -> {"v4": n, "v6": m}
    counters: AgentCounters
    object_reports: dict[str, ObjectReport] = field(default_factory=dict)
    last_heartbeat_at: datetime | None = None  # the liveness heartbeat's last round


@dataclass(frozen=True, slots=True)
class _Desired:
    """A built status waiting for the writer, for the spec it was collected for."""

    status: CalicoNodeStatusStatus
    truncated: Mapping[int, int]  # routes per family the collection already left out (or never read)
    spec: tuple[str, frozenset[NodeStatusClass], int]
    failed: Mapping[Piece, PieceError]  # pieces of the object's classes that were not collected
    bgp_sessions: str | None = None  # the bgp-sessions annotation (None: the object has no BGP class)


@dataclass(slots=True)
class _Tracked:
    obj: CalicoNodeStatus  # the latest stored version this agent knows
    desired: _Desired | None = None  # not yet written; a newer collection replaces it
    retry_at: float | None = None  # after a datastore failure: when the writer tries again
    backoff: Backoff = field(default_factory=Backoff)
    omitted: dict[str, int] = field(default_factory=dict)
    written_at: datetime | None = None
    refreshed_at: datetime | None = None
    delete_retry_at: float | None = None  # after a failed delete at expiry: when to try again

    @property
    def expires_at(self) -> datetime | None:
        return parse_expiry(self.obj.metadata.annotations.get(EXPIRES_AT_ANNOTATION))


def _spec_key(obj: CalicoNodeStatus) -> tuple[str, frozenset[NodeStatusClass], int]:
    # Spec changes are detected by content, not generation (Calico does not maintain generation).
    spec = obj.spec
    return spec.node, frozenset(spec.classes), spec.update_period_seconds


def _is_older(candidate: CalicoNodeStatus, known: CalicoNodeStatus) -> bool:
    try:
        return int(candidate.metadata.resource_version or 0) < int(known.metadata.resource_version or 0)
    except ValueError:
        return False


def _without_routes_beyond(
    status: CalicoNodeStatusStatus, keep_v4: list[int], keep_v6: list[int]
) -> CalicoNodeStatusStatus:
    routes = status.routes
    kept = CalicoNodeBGPRouteStatus(
        routes_v4=[routes.routes_v4[i] for i in keep_v4],
        routes_v6=[routes.routes_v6[i] for i in keep_v6],
    )
    return status.model_copy(update={"routes": kept})


class NodeStatusAgent:
    def __init__(
        self,
        datastore: Datastore,
        settings: AgentSettings,
        collector: Collector,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_collection: CollectionObserver | None = None,
    ) -> None:
        self._datastore = datastore
        self._settings = settings
        self._collector = collector
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._on_collection = on_collection
        self._last_heartbeat_at: datetime | None = None
        self._scheduler = Scheduler()
        self._tracked: dict[str, _Tracked] = {}
        self._inbox: asyncio.Queue[WatchUpdate] = asyncio.Queue()
        self._stop_requested = asyncio.Event()
        self._counters = AgentCounters()
        self._collected: CollectedSections | None = None
        self._collected_at: datetime | None = None
        self._last_write_at: datetime | None = None
        # What failed last, per kind of datastore work ("watch", "liveness", "write"): the datastore
        # counts as ready only when none did, so a renewed Lease does not hide refused writes.
        self._datastore_faults: dict[str, str] = {}
        self._collect_backoff = Backoff()
        self._failed_pieces: frozenset[Piece] = frozenset()  # of the last collection, for its log line
        # Routes per family in the last table read in full: what a table cut short is missing.
        self._complete_route_totals: dict[int, int] = {}
        self._writes_wanted = asyncio.Event()  # the writer has something to look at
        self._datastore_back = asyncio.Event()  # set on the first success after a failure
        self._status_file = StatusFileWriter(settings.status_file) if settings.status_file else None
        self.ready = asyncio.Event()  # set once the first list has been applied

    # ---- public -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks ``run`` to return promptly, even mid-collection (call from the loop's thread)."""
        self._stop_requested.set()

    def snapshot(self) -> AgentSnapshot:
        """Safe to call from another thread (the metrics scrape): containers are copied in one step."""
        tracked = tuple(self._tracked.items())
        return AgentSnapshot(
            node=self._settings.node,
            objects=tuple(sorted(name for name, _ in tracked)),
            collected=self._collected,
            collected_at=self._collected_at,
            last_write_at=self._last_write_at,
            datastore_ok=not self._datastore_faults,
            datastore_reason=self._datastore_reason(),
            routes_omitted={name: dict(t.omitted) for name, t in tracked if t.omitted},
            counters=replace(self._counters, piece_failures=dict(self._counters.piece_failures)),
            object_reports={
                name: ObjectReport(t.obj.spec.update_period_seconds, t.written_at, t.refreshed_at)
                for name, t in tracked
            },
            last_heartbeat_at=self._last_heartbeat_at,
        )

    async def run(self) -> None:
        node = self._settings.node
        log_event(log, logging.INFO, "agent_started", node=node, holder=self._settings.holder)
        tasks = [
            asyncio.create_task(self._main_loop(), name=f"agent-{node}"),
            asyncio.create_task(self._writer(), name=f"writer-{node}"),
            asyncio.create_task(
                follow_node_objects(
                    self._datastore,
                    node,
                    self._inbox.put_nowait,
                    timeout_seconds=self._settings.datastore_timeout_seconds,
                    resync_seconds=self._settings.resync_seconds,
                    on_datastore_state=functools.partial(self._set_datastore_state, "watch"),
                    wake=self._datastore_back,
                ),
                name=f"watch-{node}",
            ),
            asyncio.create_task(self._heartbeat(), name=f"heartbeat-{node}"),
        ]
        stop_waiter = asyncio.create_task(self._stop_requested.wait())
        try:
            # The tasks only end by a bug; then run() re-raises it below.
            await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Cancelling mid-write is safe: a compare-and-swap write either happened or not.
            for task in (stop_waiter, *tasks):
                task.cancel()
            # Stopping is bounded: a task still unwinding after its share of the grace (e.g. a
            # datastore call finishing in a worker thread) is left behind, cancelled.
            deadline = self._monotonic() + STOP_GRACE_SECONDS
            done, unfinished = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS / 2)
            if unfinished:
                log_event(
                    log,
                    logging.WARNING,
                    "stop_left_tasks",
                    tasks=",".join(sorted(task.get_name() for task in unfinished)),
                )
            await self._release_liveness(max(0.0, deadline - self._monotonic()))
            log_event(log, logging.INFO, "agent_stopped", node=node)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    # ---- main loop ----------------------------------------------------------------------------

    async def _main_loop(self) -> None:
        while True:
            timeout = self._seconds_until_next()
            with contextlib.suppress(TimeoutError):
                self._apply(await asyncio.wait_for(self._inbox.get(), timeout))
            while not self._inbox.empty():
                self._apply(self._inbox.get_nowait())
            await self._run_due()

    def _seconds_until_next(self) -> float | None:
        scheduled = self._scheduler.next_deadline()
        return None if scheduled is None else max(0.0, scheduled - self._monotonic())

    # ---- watch updates ------------------------------------------------------------------------

    def _apply(self, update: WatchUpdate) -> None:
        node = self._settings.node
        if isinstance(update, Resync):
            present = {obj.name for obj in update.objects if obj.spec.node == node}
            for name in list(self._tracked):
                if name not in present:
                    self._drop(name, "gone after re-list")
            for obj in update.objects:
                if obj.spec.node == node:
                    self._adopt(obj)
            self.ready.set()
            return
        if update.type is EventType.DELETED:
            self._drop(update.object.name, "deleted")
        elif update.object.spec.node != node:
            self._drop(update.object.name, f"spec.node moved to {update.object.spec.node}")
        else:
            self._adopt(update.object)

    def _adopt(self, obj: CalicoNodeStatus) -> None:
        now = self._monotonic()
        tracked = self._tracked.get(obj.name)
        if tracked is None:
            self._tracked[obj.name] = added = _Tracked(obj=obj)
            self._scheduler.track(obj.name, obj.spec.update_period_seconds, now)
            _log_spec(log, "object_added", obj)
            if added.expires_at is not None:
                self._writes_wanted.set()
            return
        if _is_older(obj, tracked.obj):
            return  # an event for a write this agent already holds the result of
        spec_changed = _spec_key(obj) != _spec_key(tracked.obj)
        tracked.obj = obj
        if tracked.expires_at is not None:
            tracked.delete_retry_at = None
            self._writes_wanted.set()  # the writer deletes it at its (maybe renewed) expiry
        if spec_changed:
            tracked.desired = None  # collected for the old spec
            tracked.retry_at = None
            self._scheduler.track(obj.name, obj.spec.update_period_seconds, now)
            _log_spec(log, "spec_changed", obj)

    def _drop(self, name: str, reason: str) -> None:
        if self._tracked.pop(name, None) is not None:
            self._scheduler.forget(name)
            log_event(log, logging.INFO, "object_dropped", name=name, reason=reason)

    # ---- reports ------------------------------------------------------------------------------

    async def _run_due(self) -> None:
        now = self._monotonic()
        due = [name for name in self._scheduler.due(now) if name in self._tracked]
        if due:
            await self._report(due, now)

    async def _report(self, names: list[str], now: float) -> None:
        # The specs collected for: the writer's conflict catch-up may adopt a new spec meanwhile.
        specs = {name: _spec_key(self._tracked[name].obj) for name in names}
        wanted = frozenset(cls for _, classes, _ in specs.values() for cls in classes)
        collected = await self._collect(wanted)
        if collected is None:
            retry = now + self._collect_backoff.next_delay()
            for name in names:
                self._scheduler.retry_at(name, retry)
            return
        self._collect_backoff.reset()
        left_out = self._routes_left_out(collected)
        for name, spec in specs.items():
            tracked = self._tracked.get(name)
            if tracked is None or _spec_key(tracked.obj) != spec:
                continue  # gone, or its new spec is due at once (scheduled when it was adopted)
            self._scheduler.reported(name, now)
            classes = tracked.obj.spec.classes
            truncated = left_out if NodeStatusClass.ROUTES in classes else {}
            status = build_status(collected, classes)
            failed = {piece: error for piece, error in collected.piece_errors.items() if piece[1] in classes}
            sessions = collected.bgp_sessions if NodeStatusClass.BGP in classes else None
            # Latest wins; a fresh status is tried at once, even while an older one backs off.
            tracked.desired = _Desired(status, truncated, spec, failed, sessions)
            tracked.retry_at = None
            self._writes_wanted.set()

    def _routes_left_out(self, collected: CollectedSections) -> dict[int, int]:
        """Per family, the routes BIRD listed that the collection left out, and for a table cut
        short, also those never read: as many as the last table read in full held beyond it."""
        left_out = dict(collected.routes_truncated)
        result = collected.result
        if result is None:
            return left_out
        for family in (4, 6):
            if (family, NodeStatusClass.ROUTES) not in collected.piece_errors:
                self._complete_route_totals[family] = result.routes_total.get(family, 0)
                continue
            unread = self._complete_route_totals.get(family, 0) - result.routes_total.get(family, 0)
            left_out[family] = left_out.get(family, 0) + max(0, unread)
        return left_out

    def _note_failed_pieces(self, collected: CollectedSections) -> None:
        """Counts failed pieces; one log line when the set of failed pieces changes."""
        failed = frozenset(collected.piece_errors)
        for piece in failed:
            name = piece_name(piece)
            self._counters.piece_failures[name] = self._counters.piece_failures.get(name, 0) + 1
        if failed == self._failed_pieces:
            return
        self._failed_pieces = failed
        if not failed:
            log_event(log, logging.INFO, "collection_complete", node=self._settings.node)
            return
        log_event(
            log,
            logging.WARNING,
            "collection_incomplete",
            node=self._settings.node,
            pieces=",".join(piece_name(piece) for piece in sorted(failed)),
            errors="; ".join(
                f"{piece_name(piece)}: {error.reason}"
                for piece, error in sorted(collected.piece_errors.items())
            ),
        )

    async def _collect(self, classes: frozenset[NodeStatusClass]) -> CollectedSections | None:
        if not classes:
            return CollectedSections()
        started = self._monotonic()
        try:
            async with asyncio.timeout(self._settings.collect_timeout_seconds):
                collected = await self._collector(classes)
        except Exception as exc:  # the agent never exits on a collection fault
            self._counters.collection_failures += 1
            log_event(
                log, logging.ERROR, "collect_failed", classes=",".join(sorted(classes)), error=repr(exc)
            )
            if self._on_collection is not None:
                self._on_collection(None, self._wall_clock())
            return None
        self._counters.collections += 1
        self._collected = collected
        self._collected_at = collected_at = self._wall_clock()
        log_event(
            log,
            logging.DEBUG,
            "collected",
            classes=",".join(sorted(classes)),
            duration_ms=round((self._monotonic() - started) * 1000, 1),
            errors=";".join(f"v{fam}:{err}" for fam, err in sorted(collected.family_errors.items())) or None,
        )
        self._update_bird_health(collected, classes)
        self._note_failed_pieces(collected)
        if self._on_collection is not None:
            self._on_collection(collected, collected_at)
        return collected

    # ---- writes (the writer task) -------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            self._writes_wanted.clear()
            await self._delete_expired()
            now = self._monotonic()
            ready = [
                name
                for name, tracked in self._tracked.items()
                if tracked.desired is not None and (tracked.retry_at is None or tracked.retry_at <= now)
            ]
            for name in ready:
                await self._write_latest(name)
            if ready:
                continue  # statuses collected meanwhile are looked at before waiting
            retries = [t.retry_at for t in self._tracked.values() if t.desired is not None and t.retry_at]
            if not retries:
                self._set_datastore_state("write", True, "")  # a failed write's object is gone
            timeout = max(0.0, min(retries) - now) if retries else None  # seconds from now
            expiry = self._seconds_until_expiry()
            if expiry is not None:
                timeout = expiry if timeout is None else min(timeout, expiry)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._writes_wanted.wait()

    async def _write_latest(self, name: str) -> None:
        tracked = self._tracked.get(name)
        if tracked is None or tracked.desired is None:
            return
        desired, tracked.desired = tracked.desired, None
        try:
            await self._write(name, desired)
        except (DatastoreError, OSError, TimeoutError) as exc:
            self._write_failed(name, desired, exc)

    # ---- expiry (the writer task) ---------------------------------------------------------------

    def _seconds_until_expiry(self) -> float | None:
        now, wall = self._monotonic(), self._wall_clock()
        waits = [
            t.delete_retry_at - now if t.delete_retry_at is not None else (expiry - wall).total_seconds()
            for t in self._tracked.values()
            if (expiry := t.expires_at) is not None
        ]
        return max(0.0, min(waits)) if waits else None

    async def _delete_expired(self) -> None:
        wall, now = self._wall_clock(), self._monotonic()
        for name, tracked in list(self._tracked.items()):
            expiry = tracked.expires_at
            if expiry is None or expiry > wall or (tracked.delete_retry_at or now) > now:
                continue
            try:
                async with asyncio.timeout(self._settings.datastore_timeout_seconds):
                    await self._datastore.delete(name, tracked.obj.metadata.resource_version)
            except NotFound:
                self._drop(name, "deleted (gone at expiry)")
            except Conflict:  # edited since this agent read it: the next round sees the new version
                log_event(log, logging.INFO, "expiry_conflict", name=name)
                try:
                    await self._catch_up(name)
                except (DatastoreError, OSError, TimeoutError) as exc:
                    self._delete_failed(tracked, name, exc)
            except (DatastoreError, OSError, TimeoutError) as exc:
                self._delete_failed(tracked, name, exc)
            else:
                self._drop(name, f"expired at {expiry.isoformat()}")

    def _delete_failed(self, tracked: _Tracked, name: str, exc: BaseException) -> None:
        tracked.delete_retry_at = self._monotonic() + tracked.backoff.next_delay()
        log_event(
            log, logging.WARNING, "expiry_delete_failed", name=name, error=str(exc) or type(exc).__name__
        )

    def _fit(
        self,
        current: CalicoNodeStatus,
        desired: CalicoNodeStatusStatus,
        annotations: Mapping[str, str | None],
    ) -> tuple[CalicoNodeStatusStatus, dict[str, int]]:
        merged = {**current.metadata.annotations, **{k: v for k, v in annotations.items() if v is not None}}
        candidate = current.model_copy(
            update={
                "status": desired.model_copy(update={"last_updated": self._wall_clock()}),
                "metadata": current.metadata.model_copy(update={"annotations": merged}),
            }
        )
        selection = fit_routes(candidate.to_wire(), self._settings.size_budget_bytes)
        if selection is None:
            return desired, {}
        return _without_routes_beyond(desired, selection.keep_v4, selection.keep_v6), selection.omitted

    async def _write(self, name: str, desired: _Desired) -> None:
        """Writes ``desired`` if it differs from what is stored; datastore failures propagate.
        Routes the collection already left out count as omitted along with the budget's cuts."""
        for _attempt in range(WRITE_ATTEMPTS):
            # Looked up after every await: the collection loop may have dropped or replaced it.
            tracked = self._tracked.get(name)
            if tracked is None or _spec_key(tracked.obj) != desired.spec:
                return  # gone, or collected for a spec that is no longer current
            current = tracked.obj
            kept = keep_last_good(desired.status, current.status, desired.failed)
            sessions = {BGP_SESSIONS_ANNOTATION: desired.bgp_sessions}
            fitted, cut = self._fit(current, keep_stable_times(kept.status, current.status), sessions)
            omitted, annotation = self._routes_omitted(current, kept, desired, cut)
            stored_annotations = current.metadata.annotations
            errors = collection_errors_value(
                kept, stored_annotations.get(COLLECTION_ERRORS_ANNOTATION), self._wall_clock()
            )
            wanted = {ROUTES_OMITTED_ANNOTATION: annotation, COLLECTION_ERRORS_ANNOTATION: errors, **sessions}
            changes = {k: v for k, v in wanted.items() if stored_annotations.get(k) != v}
            status_same = same_content(current.status.to_wire(), fitted.to_wire())
            if status_same and not changes:
                self._written(tracked, omitted if annotation else {})
                self._counters.writes_skipped_unchanged += 1
                return
            try:
                written = await self._store(current, fitted, changes, status_same)
            except Conflict:
                self._counters.write_conflicts += 1
                log_event(log, logging.INFO, "write_conflict", name=name)
                await self._catch_up(name)
                continue
            except NotFound:
                self._drop(name, "deleted (write found no object)")
                return
            self._set_datastore_state("write", True, "")
            tracked = self._tracked.get(name)
            if tracked is None:
                return
            if not _is_older(written, tracked.obj):  # a watch event may already hold a newer one
                tracked.obj = written
            self._written(tracked, omitted if annotation else {})
            self._counters.writes += 1
            self._last_write_at = tracked.written_at = tracked.refreshed_at
            log_event(
                log,
                logging.INFO,
                "status_written",
                name=name,
                rv=written.metadata.resource_version,
                omitted=annotation,
            )
            return
        log_event(log, logging.WARNING, "write_gave_up", name=name, reason="conflicts")

    @staticmethod
    def _routes_omitted(
        current: CalicoNodeStatus, kept: KeptStatus, desired: _Desired, cut: Mapping[str, int]
    ) -> tuple[dict[str, int], str | None]:
        """Per family, the routes the stored list lacks, and the annotation value: a family whose
        last good routes are kept keeps its stored count; one whose list was cut short (no earlier
        content) is marked so, its count taking in what was never read."""
        stored, stored_cut_short = read_annotation(
            current.metadata.annotations.get(ROUTES_OMITTED_ANNOTATION)
        )
        omitted: dict[str, int] = {}
        cut_short = set()
        for family, number in (("v4", 4), ("v6", 6)):
            piece = (number, NodeStatusClass.ROUTES)
            if piece in kept.stale:
                omitted[family] = stored.get(family, 0) + cut.get(family, 0)
                if family in stored_cut_short:
                    cut_short.add(family)
                continue
            omitted[family] = cut.get(family, 0) + desired.truncated.get(number, 0)
            if piece in kept.partial:
                cut_short.add(family)
        return omitted, annotation_value(omitted, cut_short)

    def _written(self, tracked: _Tracked, omitted: dict[str, int]) -> None:
        """The stored status is current (written, or found already so)."""
        tracked.retry_at = None
        tracked.omitted = omitted
        tracked.backoff.reset()
        tracked.refreshed_at = self._wall_clock()

    async def _store(
        self,
        current: CalicoNodeStatus,
        status: CalicoNodeStatusStatus,
        annotations: Mapping[str, str | None],
        status_same: bool,
    ) -> CalicoNodeStatus:
        written = current
        async with asyncio.timeout(self._settings.datastore_timeout_seconds):
            if not status_same:
                stamped = status.model_copy(update={"last_updated": rfc3339_now(self._wall_clock())})
                written = await self._datastore.update_status(written.model_copy(update={"status": stamped}))
            if annotations:
                written = await self._datastore.update_annotations(written, annotations)
        return written

    async def _catch_up(self, name: str) -> None:
        """After a conflict: re-read the object. A spec change makes the next attempt of ``_write``
        stop (the status is re-collected for the new spec); datastore failures propagate."""
        try:
            async with asyncio.timeout(self._settings.datastore_timeout_seconds):
                fresh = await self._datastore.get(name)
        except NotFound:
            self._drop(name, "deleted (found on conflict)")
            return
        tracked = self._tracked.get(name)
        if tracked is None:
            return
        if fresh.spec.node != self._settings.node:
            self._drop(name, f"spec.node moved to {fresh.spec.node}")
            return
        if _is_older(fresh, tracked.obj):
            return
        spec_changed = _spec_key(fresh) != _spec_key(tracked.obj)
        tracked.obj = fresh
        if spec_changed:
            self._scheduler.track(name, fresh.spec.update_period_seconds, self._monotonic())

    def _write_failed(self, name: str, desired: _Desired, exc: BaseException) -> None:
        self._counters.write_errors += 1
        reason = str(exc) or type(exc).__name__
        self._set_datastore_state("write", False, reason)
        tracked = self._tracked.get(name)
        if tracked is None:
            return
        if tracked.desired is None:  # no newer collection arrived meanwhile: keep this one
            tracked.desired = desired
        delay = tracked.backoff.next_delay()
        tracked.retry_at = self._monotonic() + delay
        log_event(log, logging.WARNING, "write_failed", name=name, error=reason, retry_in=f"{delay:.2f}s")

    # ---- liveness, health ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        settings = self._settings
        while True:
            try:
                async with asyncio.timeout(settings.datastore_timeout_seconds):
                    await self._datastore.renew_liveness(
                        settings.node, settings.holder, settings.liveness_ttl_seconds
                    )
            except (DatastoreError, OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                self._set_datastore_state("liveness", False, reason)
                log_event(log, logging.WARNING, "liveness_renew_failed", node=settings.node, error=reason)
            else:
                self._set_datastore_state("liveness", True, "")
                log_event(log, logging.DEBUG, "liveness_renewed", node=settings.node)
            self._write_component("agent", ready=True, reason="")
            self._last_heartbeat_at = self._wall_clock()
            await asyncio.sleep(settings.heartbeat_seconds)

    async def _release_liveness(self, within_seconds: float) -> None:
        settings = self._settings
        try:
            async with asyncio.timeout(within_seconds):
                await self._datastore.release_liveness(settings.node, settings.holder)
        except (DatastoreError, OSError, TimeoutError) as exc:
            log_event(
                log,
                logging.WARNING,
                "liveness_release_failed",
                node=settings.node,
                error=str(exc) or repr(exc),
            )

    def _datastore_reason(self) -> str:
        return "; ".join(f"{work}: {reason}" for work, reason in sorted(self._datastore_faults.items()))

    def _set_datastore_state(self, work: str, ok: bool, reason: str) -> None:
        before = dict(self._datastore_faults)
        if ok:
            self._datastore_faults.pop(work, None)
        else:
            self._datastore_faults[work] = reason
        if ok and work != "watch" and "watch" in before:
            self._datastore_back.set()  # the datastore answers again; the watch may be backing off
        if ok and work != "write" and work in before and "write" in before:
            # Another kind of work recovered: the datastore is back, so a status waiting out its
            # write backoff (which grows to tens of seconds over a long outage) is tried now.
            for tracked in self._tracked.values():
                if tracked.desired is not None:
                    tracked.retry_at = None
            self._writes_wanted.set()
        if self._datastore_faults != before:
            ready = not self._datastore_faults
            self._write_component("datastore", ready=ready, reason=self._datastore_reason())

    def _update_bird_health(self, collected: CollectedSections, classes: Collection[NodeStatusClass]) -> None:
        for family, component in ((4, "bird"), (6, "bird6")):
            reason = collected.family_errors.get(family, "")
            if not reason and NodeStatusClass.AGENT in classes and collected.agent is not None:
                daemon = collected.agent.bird_v4 if family == 4 else collected.agent.bird_v6
                if daemon.state is not BGPDaemonState.READY:
                    reason = "BIRD is not ready"
            self._write_component(component, ready=not reason, reason=reason)

    def _write_component(self, component: str, *, ready: bool, reason: str) -> None:
        if self._status_file is None:
            return
        with contextlib.suppress(OSError):  # a full disk must not stop the agent; the probe notices
            self._status_file.update(component, ready=ready, live=True, reason=reason, now=self._wall_clock())


def _log_spec(logger: logging.Logger, event: str, obj: CalicoNodeStatus) -> None:
    """One log line naming an object and the spec the agent now follows."""
    log_event(
        logger,
        logging.INFO,
        event,
        name=obj.name,
        classes=",".join(obj.spec.classes),
        period=obj.spec.update_period_seconds,
    )
