"""List + watch of the CalicoNodeStatus objects addressed to one node.

Delivers a ``Resync`` with the full set after every (re-)list, then each ``WatchEvent`` in order.
A dropped stream is resumed from the last event's revision, so no event is missed; when that
revision is gone (``WatchExpired``) the objects are listed again. Datastore errors back off with
jitter; setting ``wake`` (the caller saw the datastore work again) ends the backoff at once, so
changes made during an outage arrive right after it. The loop only ends when cancelled.

After a failure the watch reports itself working again (``on_datastore_state``) when it lists,
delivers an event, or — woken because the datastore answers again — its resumed stream has not
failed for ``RESUMED_STREAM_CONFIRM_SECONDS``: a refused watch (e.g. no permission) fails at once,
so it does not flap, and a quiet node is not reported as cut off until the next re-list.

Every ``resync_seconds`` the objects are listed again anyway (the informer pattern): a backend whose
node-filtered watch does not report an object moving to another node, or that lost an event, is
corrected within that time. Correctness does not hang on it: writes are compare-and-swap, and a
conflict re-reads the object and drops it if it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from calico_nodestatus.agent.backoff import Backoff
from calico_nodestatus.agent.logs import log_event
from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import Datastore, DatastoreError, WatchEvent, WatchExpired

log = logging.getLogger(__name__)

# A stream that ends without delivering anything is re-opened after this pause, not in a hot loop.
EMPTY_STREAM_PAUSE_SECONDS = 0.2
RESUMED_STREAM_CONFIRM_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Resync:
    """Every object addressed to the node at ``resource_version``; anything else is gone."""

    objects: list[CalicoNodeStatus]
    resource_version: str


WatchUpdate = Resync | WatchEvent


async def follow_node_objects(
    datastore: Datastore,
    node: str,
    deliver: Callable[[WatchUpdate], None],
    *,
    timeout_seconds: float = 10.0,
    resync_seconds: float = 30.0,
    backoff: Backoff | None = None,
    on_datastore_state: Callable[[bool, str], None] = lambda ok, reason: None,
    wake: asyncio.Event | None = None,
) -> None:
    backoff = backoff or Backoff()
    revision: str | None = None
    woken = False  # the last failure's backoff was ended by the datastore answering again
    loop = asyncio.get_running_loop()
    while True:
        try:
            if revision is None:
                async with asyncio.timeout(timeout_seconds):
                    objects, revision = await datastore.list(node=node)
                deliver(Resync(objects=objects, resource_version=revision))
                on_datastore_state(True, "")
                log_event(log, logging.INFO, "listed", node=node, objects=len(objects), rv=revision)
            delivered = 0
            resync = asyncio.timeout(resync_seconds)
            confirm = None
            if woken:  # the datastore answers again: a stream that does not fail now is working
                confirm = loop.call_later(RESUMED_STREAM_CONFIRM_SECONDS, on_datastore_state, True, "")
            woken = False
            try:
                async with resync, contextlib.aclosing(datastore.watch(revision, node=node)) as events:
                    async for event in events:
                        deliver(event)
                        revision = event.resource_version
                        delivered += 1
                        backoff.reset()
                        on_datastore_state(True, "")
            except TimeoutError:
                if not resync.expired():
                    raise
                revision = None
                continue
            finally:
                if confirm is not None:
                    confirm.cancel()
            if not delivered:
                await asyncio.sleep(EMPTY_STREAM_PAUSE_SECONDS)
        except WatchExpired:
            log_event(log, logging.INFO, "watch_expired", node=node, rv=revision)
            revision = None
        except (DatastoreError, OSError, TimeoutError) as exc:
            delay = backoff.next_delay()
            reason = str(exc) or type(exc).__name__
            on_datastore_state(False, reason)
            log_event(log, logging.WARNING, "watch_failed", node=node, error=reason, retry_in=f"{delay:.2f}s")
            woken = await _backed_off(delay, wake)
            if woken:
                backoff.reset()
                log_event(log, logging.INFO, "watch_woken", node=node, reason="datastore back")


async def _backed_off(delay: float, wake: asyncio.Event | None) -> bool:
    """Sleeps ``delay`` seconds or until ``wake`` is set; True when woken."""
    if wake is None:
        await asyncio.sleep(delay)
        return False
    wake.clear()  # only a success after this failure counts
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
    return wake.is_set()
