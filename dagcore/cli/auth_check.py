"""``python manage.py dag auth-check FILE`` — check an event against the auth rules.

FILE holds::

    {"room_version": "10",
     "event": {... PDU with "event_id" ...},
     "auth_events": [{... PDU with "event_id" ...}, ...],
     "state": [[type, state_key, event_id], ...],     # optional: the state before the event
     "events": [{...}, ...],                          # optional: more PDUs the state refers to
     "rejected": [event_id, ...]}                     # optional: events known to be rejected

and the command prints ``{"allowed": true|false, "reason": "..."}`` (exit 0 either way).
``allowed`` means the event passes the room version's auth rules against its own
``auth_events`` (including the rules about that list) and, when ``state`` is given,
against that state (spec server-server-api "Checks performed on receipt of a PDU",
steps 4 and 5). Signatures and hashes are not checked. In v12 the create event is found
among ``auth_events``/``events`` by the ID its room ID implies.

An auth event that is not given — in v12 also the create event the room ID implies — is
a verdict, not bad input: without it the event cannot pass the auth rules, so it is
``{"allowed": false}`` with a reason naming the missing event (as a server rejects an
event whose auth events it cannot obtain). Bad input — not JSON, an unknown room
version, an invalid PDU, ``state`` naming an event the file does not give — exits with 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from dagcore.cli.common import fail, load_json_file, main_wrapper, print_json
from dagcore.protocol.auth_rules import AuthError, check_auth_events_list, check_event_auth
from dagcore.protocol.events import Event, InvalidEvent
from dagcore.protocol.room_versions import EventFormat, RoomVersion, UnsupportedRoomVersion, get_room_version

CREATE_KEY = ("m.room.create", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="JSON file with room_version, event, auth_events[, state]"
    )


def _build_event(pdu: object, version: RoomVersion, where: str, rejected: set[str]) -> Event:
    if not isinstance(pdu, dict):
        fail(f"{where} must be a JSON object")
    event_id = pdu.get("event_id")
    if not isinstance(event_id, str):
        fail(f"{where} has no event_id")
    body = dict(pdu)
    if version.event_format is not EventFormat.V1:
        # v3+: the event ID is the reference hash and not part of the PDU.
        body.pop("event_id", None)
    try:
        return Event(
            body, version, event_id=event_id, rejected_reason="rejected" if event_id in rejected else None
        )
    except InvalidEvent as exc:
        fail(f"{where} ({event_id}) is not a valid PDU: {exc}")


def _pool(data: dict[str, Any], version: RoomVersion, rejected: set[str]) -> dict[str, Event]:
    pool: dict[str, Event] = {}
    for field in ("auth_events", "events"):
        items = data.get(field, [])
        if not isinstance(items, list):
            fail(f"{field} must be a list")
        for index, pdu in enumerate(items):
            event = _build_event(pdu, version, f"{field}[{index}]", rejected)
            pool[event.event_id] = event
    return pool


def _state_before(data: dict[str, Any], pool: dict[str, Event]) -> dict[tuple[str, str], Event] | None:
    """The optional ``state``: ``(type, state_key) -> event``, each event given in the file."""
    if "state" not in data:
        return None
    entries = data["state"]
    if not isinstance(entries, list):
        fail("state must be a list of [type, state_key, event_id]")
    state: dict[tuple[str, str], Event] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry)):
            fail("state entries must be [type, state_key, event_id]")
        etype, state_key, event_id = entry
        if event_id not in pool:
            fail(f"state event {event_id} is not given")
        state[(etype, state_key)] = pool[event_id]
    return state


def _verdict(data: dict[str, Any]) -> tuple[bool, str]:
    try:
        version = get_room_version(data.get("room_version"), require_supported=False)
    except UnsupportedRoomVersion:
        fail(f"unknown room version: {data.get('room_version')!r}")
    rejected_ids = data.get("rejected", [])
    if not isinstance(rejected_ids, list) or not all(isinstance(i, str) for i in rejected_ids):
        fail("rejected must be a list of event IDs")
    rejected = set(rejected_ids)
    if "event" not in data:
        fail("missing 'event'")
    event = _build_event(data["event"], version, "event", rejected)
    pool = _pool(data, version, rejected)

    state_before = _state_before(data, pool)

    create: Event | None = None
    if version.room_id_is_create_event_hash and event.type != "m.room.create":
        create_id = event.create_event_id_for_v12()
        create = pool.get(create_id)
        if create is None:
            return False, f"auth events: the create event {create_id} implied by the room ID is not given"
    missing = [i for i in event.auth_event_ids if i not in pool]
    if missing:
        return False, f"auth events: auth event {missing[0]} is not given"
    auth_events = [pool[i] for i in event.auth_event_ids]
    if state_before is not None and create is not None:
        state_before.setdefault(CREATE_KEY, create)

    try:
        check_auth_events_list(event, auth_events, create_event=create)
        auth_state: dict[tuple[str, str], Event] = {}
        for auth_event in auth_events:
            assert auth_event.state_key is not None  # checked by check_auth_events_list
            auth_state[(auth_event.type, auth_event.state_key)] = auth_event
        if create is not None:
            auth_state[CREATE_KEY] = create
        check_event_auth(event, auth_state)
    except AuthError as exc:
        return False, f"auth events: {exc.reason}"
    if state_before is not None:
        try:
            check_event_auth(event, state_before)
        except AuthError as exc:
            return False, f"state: {exc.reason}"
        return True, "passes the auth rules against its auth events and the given state"
    return True, "passes the auth rules against its auth events"


def _run(args: argparse.Namespace) -> int:
    data = load_json_file(args.file)
    allowed, reason = _verdict(data)
    print_json({"allowed": allowed, "reason": reason})
    return 0


def run(args: argparse.Namespace) -> int:
    return main_wrapper(_run, args)
