"""Helpers for the hardening suite: every attack is followed by a health check.

After each refused request a test proves three things with :func:`assert_unharmed`:
the server still answers, a valid event sent right after is visible to another
user, and nothing carrying the attack's marker reached the room's state or timeline.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.support.client import MatrixClient, Response, q

SEND = "/rooms/{roomId}/send/{eventType}/{txnId}"
STATE = "/rooms/{roomId}/state/{eventType}/{stateKey}"
MESSAGES = "/rooms/{roomId}/messages"


def marker() -> str:
    """A unique string to look for afterwards."""
    return f"attack-{secrets.token_hex(6)}"


def txn() -> str:
    return secrets.token_hex(8)


def assert_error(r: Response, status: int, *errcodes: str) -> None:
    """A Matrix error: the status, a JSON body, one of the error codes (any if none given)."""
    assert r.status == status, f"expected {status}, got {r.status}: {r.raw.text[:300]}"
    assert isinstance(r.json, dict) and isinstance(r.json.get("errcode"), str), r.raw.text[:300]
    assert isinstance(r.json.get("error", ""), str)
    if errcodes:
        assert r.json["errcode"] in errcodes, r.json


def room_dump(reader: MatrixClient, room_id: str) -> str:
    """The room's timeline (last 200 events) and current state, as one JSON string."""
    chunk = reader.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 200}).json["chunk"]
    state = reader.get(f"/rooms/{q(room_id)}/state").json
    return json.dumps([chunk, state])


def send_text(client: MatrixClient, room_id: str, body: str) -> str:
    r = client.put(
        f"/rooms/{q(room_id)}/send/m.room.message/{txn()}", {"msgtype": "m.text", "body": body}, spec=SEND
    )
    return str(r.json["event_id"])


def assert_unharmed(
    sender: MatrixClient, reader: MatrixClient, room_id: str, *, absent: str | None = None
) -> None:
    """The server answers; a valid event sent now is seen by another member; ``absent`` is nowhere."""
    sender.get("/account/whoami", spec="/account/whoami")
    body = f"still-alive-{secrets.token_hex(4)}"
    event_id = send_text(sender, room_id, body)
    dump = room_dump(reader, room_id)
    assert event_id in dump and body in dump, "a valid event sent after the attack is not visible"
    if absent is not None:
        assert absent not in dump, f"{absent} reached the room"


def shared_room(owner: MatrixClient, *others: MatrixClient, **create: Any) -> str:
    """A public room created by ``owner`` that every client in ``others`` joined."""
    create.setdefault("preset", "public_chat")
    room_id = owner.create_room(**create)
    for c in others:
        c.join(room_id)
    return room_id
