"""Fetching what an event needs from another server before it can be persisted (DESIGN.md §3
step 3): its missing prev events (``get_missing_events``), the state before it (``state_ids``,
then the events we lack), its unknown auth events (``event_auth``), every answer checked
(``dagcore.protocol.received_pdu``) and stored as outliers until the event itself can be.

Used by the Embassy's inbound processing (``embassy.inbound``) and by backfill
(``dagcore.actions.backfill``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dagcore.actions.persist_event import EventRejected, persist_received_event
from dagcore.federation.client import (
    DEFAULT_TIMEOUT_S,
    FederationError,
    FederationHttpError,
    encode_path,
    get_federation_client,
)
from dagcore.federation.keyring import get_keyring, signature_key_requests
from dagcore.protocol.events import Event
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu
from dagcore.protocol.room_versions import RoomVersion
from dagcore.protocol.signing import VerifyKeyLookup
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store.events import StoredEvent

logger = logging.getLogger("embassy.inbound")

#: get_missing_events: events asked for at most (spec default 10).
MISSING_EVENTS_LIMIT = 20
#: Individually fetched state/auth events at most before asking for the whole /state.
MAX_SINGLE_FETCHES = 50


class TransientFailure(Exception):
    """Processing needs another server, which did not answer: try the PDU again later."""


def key_lookup(pdus: Iterable[tuple[Mapping[str, Any], RoomVersion]]) -> VerifyKeyLookup:
    """One lookup for every signature of the transaction: its keys are fetched together."""
    return get_keyring().lookup_for(signature_key_requests(pdu for pdu, _ in pdus))


class GapFiller:
    """Fetching what an event needs from ``origin`` (DESIGN.md §3 step 3), every answer checked.

    ``deadline`` (monotonic): every request must be answered by then (a client's request
    waits on it: backfill), else :class:`TransientFailure`; ``None``: each request gets the
    client's own timeout.
    """

    def __init__(
        self, *, origin: str, room_id: str, version: RoomVersion, deadline: float | None = None
    ) -> None:
        self.origin = origin
        self.room_id = room_id
        self.version = version
        self.deadline = deadline
        self.client = get_federation_client()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        timeout = DEFAULT_TIMEOUT_S
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TransientFailure(f"no time left to ask {self.origin[:255]}")
        try:
            return self.client.request(method, self.origin, path, timeout=timeout, **kwargs)
        except FederationHttpError as exc:
            error = (exc.body or {}).get("error")
            raise TransientFailure(f"{exc} ({str(error)[:200]})" if error else str(exc)) from None
        except FederationError as exc:
            raise TransientFailure(str(exc)) from None

    def checked(self, pdus: Iterable[Any]) -> list[Event]:
        items = [p for p in pdus if isinstance(p, dict)]
        lookup = key_lookup((p, self.version) for p in items)
        events = []
        for pdu in items:
            if pdu.get("room_id", self.room_id) != self.room_id:
                continue
            try:
                events.append(check_received_pdu(pdu, room_version=self.version, get_verify_key=lookup).event)
            except DroppedPdu as exc:
                logger.info("%s sent a PDU we drop: %s", self.origin, exc.reason)
        return events

    def read_known(self, event: Event) -> dict[str, StoredEvent]:
        """The stored ones among the event itself, its prev events and its auth events: one
        query, whose answer :meth:`unknown_prevs`, :meth:`ensure_auth_events` and
        ``persist_received_event`` share (each used to read them again)."""
        return event_store.get_events_by_ids(
            [event.event_id, *event.prev_event_ids, *self._required_auth_ids(event)]
        )

    def unknown_prevs(self, event: Event, known: Mapping[str, StoredEvent] | None = None) -> list[str]:
        """Prev events we lack in the timeline; ``known``: from :meth:`read_known` (no query)."""
        if known is None:
            known = event_store.get_events_by_ids(event.prev_event_ids)
        return [p for p in event.prev_event_ids if p not in known or known[p].outlier]

    def fetch_missing_events(self, event: Event) -> None:
        """``get_missing_events`` between our forward extremities and the event, persisted oldest first."""
        room = room_store.get_room(self.room_id)
        if room is None:
            return
        earliest = [e.event_id for e in event_store.get_forward_extremities(room)]
        answer = self._call(
            "POST",
            encode_path("/_matrix/federation/v1/get_missing_events/{}", self.room_id),
            content={
                "earliest_events": earliest,
                "latest_events": [event.event_id],
                "limit": MISSING_EVENTS_LIMIT,
                "min_depth": 0,
            },
        )
        events = sorted(self.checked(answer.get("events", [])), key=lambda e: (e.depth, e.event_id))
        for missing in events:
            if event_store.get_event_by_id(missing.event_id) is not None or self.unknown_prevs(missing):
                continue
            self.ensure_auth_events(missing)
            try:
                persist_received_event(missing)
            except EventRejected as exc:
                logger.info("missing event %s from %s refused: %s", missing.event_id, self.origin, exc)

    def state_before(self, event: Event) -> dict[tuple[str, str], str]:
        """The state before the event, from its origin (``state_ids``), its unknown events stored as outliers."""
        answer = self._call(
            "GET",
            encode_path("/_matrix/federation/v1/state_ids/{}", self.room_id),
            query={"event_id": event.event_id},
        )
        state_ids = [i for i in answer.get("pdu_ids", []) if isinstance(i, str)]
        chain_ids = [i for i in answer.get("auth_chain_ids", []) if isinstance(i, str)]
        wanted = list(dict.fromkeys(state_ids + chain_ids))
        known = event_store.get_events_by_ids(wanted)
        unknown = [i for i in wanted if i not in known]
        fetched: dict[str, Event] = {}
        if len(unknown) > MAX_SINGLE_FETCHES:
            whole = self._call(
                "GET",
                encode_path("/_matrix/federation/v1/state/{}", self.room_id),
                query={"event_id": event.event_id},
            )
            for ev in self.checked([*whole.get("pdus", []), *whole.get("auth_chain", [])]):
                fetched[ev.event_id] = ev
        else:
            for event_id in unknown:
                fetched.update({e.event_id: e for e in self._fetch_event(event_id)})
        self._persist_outliers(fetched.values())
        stored = event_store.get_events_by_ids(state_ids)
        state: dict[tuple[str, str], str] = {}
        for event_id in state_ids:
            found = stored.get(event_id)
            if found is None or not found.event.is_state():
                raise TransientFailure(f"{self.origin} did not give us state event {event_id}")
            state[found.event.state_tuple] = event_id
        return state

    def _fetch_event(self, event_id: str) -> list[Event]:
        answer = self._call("GET", encode_path("/_matrix/federation/v1/event/{}", event_id))
        pdus = [p for p in answer.get("pdus", []) if isinstance(p, dict)][:1]
        lookup = key_lookup((p, self.version) for p in pdus)
        out = []
        for pdu in pdus:
            try:
                out.append(
                    check_received_pdu(
                        pdu, room_version=self.version, get_verify_key=lookup, expected_event_id=event_id
                    ).event
                )
            except DroppedPdu as exc:
                logger.info("%s answered %s with a PDU we drop: %s", self.origin, event_id, exc.reason)
        return out

    def _required_auth_ids(self, event: Event) -> list[str]:
        ids = list(event.auth_event_ids)
        if self.version.room_id_is_create_event_hash and event.type != "m.room.create":
            ids.append(event.create_event_id_for_v12())
        return ids

    def ensure_auth_events(self, event: Event, known: Mapping[str, StoredEvent] | None = None) -> bool:
        """Unknown auth events of the event: its auth chain from ``event_auth``, stored as
        outliers. ``known``: from :meth:`read_known` (no query). Whether it fetched any."""
        ids = self._required_auth_ids(event)
        if known is None:
            known = event_store.get_events_by_ids(ids)  # once: every inbound PDU passes here
        if all(i in known for i in ids):
            return False
        answer = self._call(
            "GET", encode_path("/_matrix/federation/v1/event_auth/{}/{}", self.room_id, event.event_id)
        )
        self._persist_outliers(self.checked(answer.get("auth_chain", [])))
        return True

    def _persist_outliers(self, events: Iterable[Event]) -> None:
        """Store events whose auth events we hold, as outliers, until nothing more can be stored."""
        waiting = {e.event_id: e for e in events}
        waiting = {i: e for i, e in waiting.items() if i not in event_store.get_events_by_ids(list(waiting))}
        while waiting:
            progress = False
            for event_id, ev in sorted(waiting.items(), key=lambda kv: (kv[1].depth, kv[0])):
                needed = self._required_auth_ids(ev)
                known = event_store.get_events_by_ids(needed)
                if any(a not in known for a in needed):
                    continue
                try:
                    persist_received_event(ev, outlier=True)
                except EventRejected as exc:
                    logger.info("outlier %s from %s refused: %s", event_id, self.origin, exc)
                del waiting[event_id]
                progress = True
            if not progress:
                logger.info("%d events from %s lack auth events; not stored", len(waiting), self.origin)
                return
