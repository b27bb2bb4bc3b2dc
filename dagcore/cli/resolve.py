"""``manage.py dag resolve FILE [--explain]``: resolve state sets given as JSON.

FILE (``-`` for stdin) holds::

    {"room_version": "10",
     "events": [<PDU with an explicit "event_id">, ...],
     "state_sets": [[[type, state_key, event_id], ...], ...]}

``events`` holds every event the state sets name and their auth chains. Prints
``{"state": [[type, state_key, event_id], ...]}`` (sorted) on stdout; with
``--explain`` the account of the resolution goes to stderr. Bad input exits 2 with one
line on stderr.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution (v2) and
https://spec.matrix.org/v1.19/rooms/v12/#state-resolution (v2.1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from dagcore.cli.common import fail, load_json_file, main_wrapper, print_json
from dagcore.protocol.events import Event, InvalidEvent, StateKey
from dagcore.protocol.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from dagcore.protocol.state_res import InMemoryStateResStore, StateResolutionError, resolve_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help='JSON file with "room_version", "events", "state_sets" (- for stdin)'
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also print, on stderr, why each conflicted key resolved as it did",
    )


def run(args: argparse.Namespace) -> int:
    return main_wrapper(_resolve, args)


def _resolve(args: argparse.Namespace) -> int:
    data = load_json_file(args.file)
    room_version = _room_version(data.get("room_version"))
    events = _events(data.get("events"), room_version)
    state_sets = _state_sets(data.get("state_sets"), events)
    _check_auth_chains_present(events, state_sets, room_version)

    explain: Callable[[str], None] | None = _print_to_stderr if args.explain else None

    try:
        state = resolve_state(room_version, state_sets, InMemoryStateResStore(events), explain=explain)
    except StateResolutionError as exc:
        fail(str(exc))
    print_json(
        {"state": sorted([event_type, state_key, eid] for (event_type, state_key), eid in state.items())}
    )
    return 0


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _room_version(value: object) -> RoomVersion:
    if value is None:
        fail('missing "room_version"')
    try:
        return get_room_version(value)
    except UnsupportedRoomVersion:
        fail(f"unknown or unsupported room version: {value!r}")


def _events(value: object, room_version: RoomVersion) -> dict[str, Event]:
    if not isinstance(value, list):
        fail('"events" must be a list of PDUs')
    events: dict[str, Event] = {}
    for i, pdu in enumerate(value):
        if not isinstance(pdu, dict):
            fail(f"events[{i}] is not a JSON object")
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            fail(f'events[{i}] has no "event_id" string')
        try:
            event = Event(pdu, room_version, event_id=event_id)
        except InvalidEvent as exc:
            fail(f"events[{i}] ({event_id}) is not a valid PDU: {exc}")
        if event_id in events and events[event_id].pdu != pdu:
            fail(f"events[{i}]: two different PDUs have event_id {event_id}")
        events[event_id] = event
    return events


def _state_sets(value: object, events: dict[str, Event]) -> list[dict[StateKey, str]]:
    if not isinstance(value, list) or not value:
        fail('"state_sets" must be a non-empty list of state sets')
    state_sets: list[dict[StateKey, str]] = []
    for i, raw in enumerate(value):
        if not isinstance(raw, list):
            fail(f"state_sets[{i}] must be a list of [type, state_key, event_id] triples")
        state: dict[StateKey, str] = {}
        for j, entry in enumerate(raw):
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry)):
                fail(f"state_sets[{i}][{j}] must be a [type, state_key, event_id] triple of strings")
            event_type, state_key, event_id = entry
            key: StateKey = (event_type, state_key)
            if state.get(key, event_id) != event_id:
                fail(f"state_sets[{i}] maps ({event_type}, {state_key!r}) to two events")
            event = events.get(event_id)
            if event is None:
                fail(f'state_sets[{i}] names {event_id}, which is not in "events"')
            if event.type != event_type or event.state_key != state_key:
                fail(
                    f"state_sets[{i}] maps ({event_type}, {state_key!r}) to {event_id}, "
                    f"which is ({event.type}, {event.state_key!r})"
                )
            state[key] = event_id
        state_sets.append(state)
    return state_sets


def _check_auth_chains_present(
    events: dict[str, Event], state_sets: list[dict[StateKey, str]], room_version: RoomVersion
) -> None:
    """Every auth event of the state sets' auth chains must be given (and, in v12, the
    create event the room ID names)."""
    seen: set[str] = set()
    stack: list[str] = [eid for state in state_sets for eid in state.values()]
    missing: set[str] = set()
    while stack:
        eid = stack.pop()
        if eid in seen:
            continue
        seen.add(eid)
        event = events.get(eid)
        if event is None:
            missing.add(eid)
            continue
        stack.extend(event.auth_event_ids)
        if room_version.room_id_is_create_event_hash:
            stack.append(event.create_event_id_for_v12())
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (", ..." if len(missing) > 5 else "")
        fail(f'{len(missing)} auth event(s) are referenced but not in "events": {shown}')
