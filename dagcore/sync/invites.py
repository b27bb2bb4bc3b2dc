"""The ``invite`` and ``knock`` sections: rooms the user is invited to or knocked on,
each with stripped state (spec "Stripped state": type, state_key, sender, content of a
few recommended state events, and the user's own membership event)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagcore.events_format import STRIPPED_STATE_KEYS, strip_state
from dagcore.store import events as event_store
from dagcore.store import sync as sync_store
from dagcore.store.sync import MembershipInfo


def build_stripped_rooms(
    *, invites: Sequence[MembershipInfo], knocks: Sequence[MembershipInfo]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(invite section, knock section)``, by room ID."""
    rooms = [*invites, *knocks]
    if not rooms:
        return {}, {}
    nids = [m.room_nid for m in rooms]
    state = sync_store.get_current_state_for_rooms(
        nids, STRIPPED_STATE_KEYS, state_groups={m.room_nid: m.current_state_group for m in rooms}
    )
    own = event_store.get_events_by_nids([m.event_nid for m in rooms])
    invite_out: dict[str, Any] = {}
    knock_out: dict[str, Any] = {}
    for m in rooms:
        member = own.get(m.event_nid)
        events: list[dict[str, Any]] = []
        unsigned = member.event.pdu.get("unsigned", {}) if member else {}
        # What the other server sent: with its invite, or in answer to our knock (send_knock).
        carried = unsigned.get("invite_room_state") or unsigned.get("knock_room_state")
        if isinstance(carried, list) and not state.get(m.room_nid):
            # A room we only know from a remote invite or knock: the state the other server sent.
            events = [e for e in carried if isinstance(e, dict)]
        else:
            events = strip_state(state.get(m.room_nid, {}).values())
        if member is not None:
            events.extend(strip_state([member.event]))
        if m.membership == "invite":
            invite_out[m.room_id] = {"invite_state": {"events": events}}
        else:
            knock_out[m.room_id] = {"knock_state": {"events": events}}
    return invite_out, knock_out
