"""``python manage.py dag redact FILE`` -- print the redacted form of an event.

Input: ``{"room_version": "11", "event": <PDU as on the wire>}`` (``-`` reads
stdin). Output: the event after the room version's redaction algorithm
(https://spec.matrix.org/v1.19/client-server-api/#redactions and the
``rooms/vN`` pages), as one line of JSON with sorted keys; ``unsigned`` is
never in it. Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse

from dagcore.cli.common import fail, load_json_file, main_wrapper, print_json
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import UnsupportedRoomVersion, get_room_version


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="FILE",
        help='JSON file {"room_version": "11", "event": {...}}; "-" for stdin',
    )


def _redact(args: argparse.Namespace) -> int:
    data = load_json_file(args.file)
    room_version_id = data.get("room_version")
    try:
        # Redaction is defined for every known version, including ones this
        # server does not take part in (v1): an operator may inspect any event.
        room_version = get_room_version(room_version_id, require_supported=False)
    except UnsupportedRoomVersion:
        fail(f'unknown room version {room_version_id!r} (room versions are strings such as "11")')
    event = data.get("event")
    if not isinstance(event, dict):
        fail('"event" must be a JSON object')
    try:
        # json.loads lets NaN and lone surrogates through; neither is an event value.
        encode_canonical_json(event)
    except ValueError as exc:
        fail(f"event is not valid canonical JSON: {exc}")
    print_json(redact_pdu(event, room_version))
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point used by ``manage.py dag``; returns the exit code."""
    return main_wrapper(_redact, args)
