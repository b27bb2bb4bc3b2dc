"""Redactions as steps of the event pipeline: may a local redaction be sent, does an accepted one apply.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions and rooms/v3
"Handling redactions": from room version 3 the auth rules accept any redaction
from a member who may send ``m.room.redaction``; it *applies* only if its
sender has the ``redact`` power level or is on the same server as the redacted
event's sender (:func:`dagcore.protocol.auth_rules.redaction_applies`). Since
our own users always share our server, a client may only redact others' events
with the ``redact`` level — checked here, under the room's write lock, before the
redaction is built.

The pipeline (``dagcore.actions.persist_event``) calls these; this module calls
nothing of the pipeline back.
"""

from __future__ import annotations

from dagcore.http.errors import MatrixError, not_in_room
from dagcore.models import Room
from dagcore.protocol.auth_rules import get_named_level, get_user_power_level, redaction_applies
from dagcore.protocol.events import Event, StateKey
from dagcore.store import events as event_store
from dagcore.store import redactions as redaction_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline

_POWER_KEYS: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", "")]


def check_may_redact(*, user_id: str, room: Room, event_id: str) -> None:
    """Refuse a local redaction the room's auth rules would accept but that must not apply.

    Every redaction a local client sends passes here, through ``/redact`` or as an
    ``m.room.redaction`` through ``/send``. From room v3 the auth rules accept any
    member's redaction and apply it when the sender is on the target sender's
    server — which our users always are — so without this check any member could
    redact anyone's events. The target must be an event of this room: an event of
    another room answers as an unknown one does (no probing for event IDs).
    """
    membership = room_store.get_membership(room, user_id)
    if membership is None or membership.membership != "join":
        # Before looking at the target: outsiders learn nothing about the room's events.
        raise not_in_room()
    target = timeline.get_room_event(room, event_id)
    if target is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found in this room")
    if target.event.type == "m.room.create":
        raise MatrixError(403, "M_FORBIDDEN", "The room's create event cannot be redacted")
    if target.event.sender != user_id:
        state = state_store.get_current_state_events(room, _POWER_KEYS)
        if get_user_power_level(user_id, state) < get_named_level("redact", state):
            raise MatrixError(403, "M_FORBIDDEN", "You don't have permission to redact others' events")


def _state_for_redaction(state_group: int | None) -> dict[StateKey, Event]:
    if state_group is None:
        return {}
    ids = state_store.get_state_ids(state_group, _POWER_KEYS)
    loaded = event_store.get_events_by_nids(ids.values())
    return {k: loaded[n].event for k, n in ids.items() if n in loaded}


def do_apply_redaction(*, room: Room, redaction: Event, state_group_before: int | None) -> bool:
    """Mark the target of an accepted redaction as redacted, if the redaction applies to it.

    Called by the event pipeline inside the room's write transaction, for local
    and received redactions alike. A target we do not have yet is handled when
    it arrives (:func:`get_pending_redaction`).
    """
    target_id = redaction.redacts
    if target_id is None:
        return False
    target = event_store.get_event_by_id(target_id)
    if target is None or target.room_nid != room.id or target.redacted_by is not None:
        return False
    if not redaction_applies(redaction, target.event, _state_for_redaction(state_group_before)):
        return False
    return redaction_store.mark_redacted(
        room=room, target_event_id=target_id, redaction_event_id=redaction.event_id
    )


def get_pending_redaction(*, room: Room, event: Event) -> str | None:
    """For an event that arrives after a redaction of it (federation): the first stored
    redaction that applies to it. The event pipeline writes it with the event's row (written
    last in its transaction, so there is no row to mark before)."""
    for redaction_id in redaction_store.get_redactions_of(room, event.event_id):
        stored = event_store.get_event_by_id(redaction_id)
        if stored is None:
            continue
        if redaction_applies(stored.event, event, _state_for_redaction(stored.state_group_before)):
            return redaction_id
    return None


def do_apply_pending_redactions(*, room: Room, event: Event) -> bool:
    """For a stored event that joins the timeline after a redaction of it (a backfilled
    outlier): apply the first that applies."""
    redaction_id = get_pending_redaction(room=room, event=event)
    if redaction_id is None:
        return False
    return redaction_store.mark_redacted(
        room=room, target_event_id=event.event_id, redaction_event_id=redaction_id
    )
