"""Federation destinations for operators (issue 13): Synapse's admin API
``/_synapse/admin/v1/federation/destinations`` and the console's Federation page.

Reads shape each destination as Synapse does (``retry_last_ts``, ``retry_interval``,
``failure_ts``, ``last_successful_stream_ordering``) plus what our outbox knows (queued
PDUs/EDUs, the oldest queued row, the last success, the next attempt, the last error).
``do_reset_destination`` ends a destination's back-off and wakes its sender, by task name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.federation.outbox import sends_in_this_process
from dagcore.federation.sender import SEND_TASK
from dagcore.store import health as store
from dagcore.store import outbox as outbox_store
from dagcore.store import transaction
from dagcore.taskqueue.dispatch import enqueue

ORDER_BY = tuple(store.DESTINATION_ORDER)


class UnknownDestination(LookupError):
    """No such destination (Synapse: 404 ``M_NOT_FOUND`` "Unknown destination")."""


class NothingToReset(ValueError):
    """The destination is not backing off (Synapse: 400 "The retry timing does not need to be
    reset for this destination.")."""


def destination_json(row: store.DestinationRow, *, now: int) -> dict[str, Any]:
    """Synapse's fields first, then ours (clients of Synapse's API ignore the extra ones)."""
    failing = row.failures > 0
    return {
        "destination": row.server_name,
        # Synapse: the last failed attempt; 0 when the last attempt worked.
        "retry_last_ts": (row.last_failure_ts or 0) if failing else 0,
        # Synapse: the wait after that failure before the next try; 0 when not retrying.
        "retry_interval": max(0, row.next_attempt_ts - (row.last_failure_ts or 0)) if failing else 0,
        "failure_ts": row.failing_since_ts,
        # Not tracked per destination (the outbox rows are deleted once delivered).
        "last_successful_stream_ordering": None,
        "last_success_ts": row.last_success_ts,
        "next_attempt_ts": row.next_attempt_ts if row.next_attempt_ts > now else 0,
        "failures": row.failures,
        "last_error": row.last_error,
        "dead_lettered": row.dead_lettered,
        "queued_pdus": row.queued_pdus,
        "queued_edus": row.queued_edus,
        "oldest_queued_ts": row.oldest_queued_ts,
    }


@dataclass(frozen=True)
class DestinationPage:
    destinations: list[dict[str, Any]]
    total: int
    next_token: int | None


def get_destinations(
    *, name_contains: str | None = None, order_by: str = "destination", backwards: bool = False,
    offset: int = 0, limit: int = 100,
) -> DestinationPage:  # fmt: skip
    """A page of destinations (``order_by`` one of :data:`ORDER_BY`, validated by the caller)."""
    rows, total = store.list_destinations(
        name_contains=name_contains, order_by=order_by, backwards=backwards, offset=offset, limit=limit
    )
    now = now_ms()
    next_token = offset + len(rows) if offset + len(rows) < total else None
    return DestinationPage([destination_json(r, now=now) for r in rows], total, next_token)


def get_destination(destination: str) -> dict[str, Any]:
    row = store.get_destination_row(destination)
    if row is None:
        raise UnknownDestination(destination)
    return destination_json(row, now=now_ms())


@dataclass(frozen=True)
class RoomPage:
    rooms: list[dict[str, Any]]
    total: int
    next_token: int | None


def get_destination_rooms(
    *, destination: str, backwards: bool = False, offset: int = 0, limit: int = 100
) -> RoomPage:
    if not store.destination_exists(destination):
        raise UnknownDestination(destination)
    rooms, total = store.list_destination_rooms(destination, backwards=backwards, offset=offset, limit=limit)
    next_token = offset + len(rooms) if offset + len(rooms) < total else None
    return RoomPage(
        [{"room_id": r.room_id, "stream_ordering": r.stream_ordering} for r in rooms], total, next_token
    )


def do_reset_destination(*, destination: str, actor: Actor) -> None:
    """End the destination's back-off and wake its sender ("retry now").

    The sender is woken by task name (a Celery worker, or the Embassy's in-process runner);
    where this process does not send federation (Politburo without a broker) the Embassy's
    beat re-scan, every few seconds, finds the destination due.
    """
    row = store.get_destination_row(destination)
    if row is None:
        raise UnknownDestination(destination)
    if row.failures == 0 and row.next_attempt_ts <= now_ms():
        raise NothingToReset(destination)
    with transaction.atomic():
        outbox_store.reset_backoff(destination)
        record_audit(
            actor=actor, action="federation.reset_connection", target=destination,
            counts={"failures": row.failures, "queued_pdus": row.queued_pdus, "queued_edus": row.queued_edus},
        )  # fmt: skip
        if sends_in_this_process():
            enqueue(SEND_TASK, destination)
