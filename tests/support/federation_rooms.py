"""Sharing a room between two live servers WITHOUT the join handshake (a stand-in for it).

``bootstrap_shared_room(home, guest, room_id=..., user_id=...)`` does what a remote
join would leave behind, straight in each server's database, through the same
pipeline every received event goes through (``persist_received_event``):

* on ``home`` (the room's server): a join of ``user_id`` (a user of ``guest``),
  built on the room's forward extremities and signed with ``guest``'s own key;
* on ``guest``: the room row and every event of the room, in order, ending with
  that join — what ``send_join`` answers with.

It exists so the outbox/sender and /send tests can run before ``make_join`` /
``send_join`` (built separately) are merged; once they are, a test replaces this
call with a real ``POST /join`` on the guest. Each side runs as ``manage.py shell``
with that server's configuration (its own database and signing key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dagcore.actions.persist_event import persist_received_event
from dagcore.clock import now_ms
from dagcore.protocol import signing
from dagcore.protocol.auth_rules import auth_types_for_event
from dagcore.protocol.events import Event
from dagcore.protocol.hashing import add_content_hash, compute_event_id
from dagcore.protocol.room_versions import get_room_version
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline as timeline_store
from dagcore.store import transaction
from tests.support.live import LiveServer


def _run(server: LiveServer, code: str) -> None:
    done = server.manage("shell", "-c", code)
    if done.returncode != 0:
        raise RuntimeError(f"bootstrap on {server.server_name} failed:\n{done.stderr.decode()[-4000:]}")


def _signing_key_path(server: LiveServer) -> Path:
    config = yaml.safe_load(server.config_path.read_text())
    path = Path(config.get("signing_key_path") or f"{server.server_name}.signing.key")
    return path if path.is_absolute() else server.config_path.parent / path


def join_remote_user_on_home(
    home: LiveServer, *, room_id: str, user_id: str, server_name: str, signing_key_path: Path, out: Path
) -> None:
    """The home side only: ``user_id``'s join, signed with ``signing_key_path`` (its server's
    key, e.g. a Synapse's), persisted on ``home``; the room's history written to ``out``."""
    _run(
        home,
        "from tests.support.federation_rooms import home_side; "
        f"home_side({room_id!r}, {user_id!r}, {server_name!r}, {str(signing_key_path)!r}, {str(out)!r})",
    )


def bootstrap_shared_room(
    home: LiveServer, guest: LiveServer, *, room_id: str, user_id: str, workdir: Path
) -> None:
    """Make ``user_id`` (of ``guest``) a joined member of ``home``'s room, on both servers."""
    out = workdir / "shared-room.json"
    join_remote_user_on_home(
        home,
        room_id=room_id,
        user_id=user_id,
        server_name=guest.server_name,
        signing_key_path=_signing_key_path(guest),
        out=out,
    )
    _run(guest, f"from tests.support.federation_rooms import guest_side; guest_side({str(out)!r})")


# --------------------------------------------------------------------------- run inside the servers


def home_side(room_id: str, user_id: str, guest_name: str, guest_key_path: str, out: str) -> None:
    room = room_store.get_room(room_id)
    assert room is not None
    version = get_room_version(room.room_version)
    nids = state_store.get_current_state_ids(room)
    ids = event_store.get_event_ids_for_nids(nids.values())
    state = {k: ids[n] for k, n in nids.items()}
    content = {"membership": "join"}
    keys = auth_types_for_event(
        version, event_type="m.room.member", state_key=user_id, sender=user_id, content=content
    )
    extremities = event_store.get_forward_extremities(room)
    pdu: dict[str, Any] = {
        "room_id": room_id,
        "sender": user_id,
        "type": "m.room.member",
        "state_key": user_id,
        "content": content,
        "prev_events": [e.event_id for e in extremities],
        "auth_events": [state[k] for k in keys if k in state],
        "depth": max(e.depth for e in extremities) + 1,
        "origin_server_ts": now_ms(),
    }
    key = signing.read_signing_keys(Path(guest_key_path).read_text())[0]
    pdu = signing.sign_event(
        add_content_hash(pdu), room_version=version, server_name=guest_name, signing_key=key
    )
    join = Event(pdu, version, compute_event_id(pdu, version))
    persisted = persist_received_event(join)
    assert persisted.rejected_reason is None and not persisted.soft_failed, persisted
    # The room's whole history, oldest first (what send_join's state and auth chain would carry).
    history = timeline_store.paginate_room_events(room, from_key=None, direction="f", limit=1000)
    Path(out).write_text(
        json.dumps(
            {
                "room_id": room_id,
                "room_version": room.room_version,
                "creator": room.creator,
                "pdus": [e.event.pdu for e in history],
            }
        )
    )


def guest_side(path: str) -> None:
    data = json.loads(Path(path).read_text())
    version = get_room_version(data["room_version"])
    with transaction.atomic():
        room_store.insert_room(
            room_id=data["room_id"],
            room_version=data["room_version"],
            creator=data["creator"],
            created_ts=now_ms(),
        )
    for pdu in data["pdus"]:
        event = Event(pdu, version, compute_event_id(pdu, version))
        persisted = persist_received_event(event)
        assert persisted.rejected_reason is None, (event.event_id, persisted.rejected_reason)
