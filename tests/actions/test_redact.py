"""Redactions in-process: who may redact, how it applies, and erasing old content."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from dagcore.actions import room_access
from dagcore.actions.redact import check_redact_event
from dagcore.actions.txns import ClientTxn
from dagcore.http.errors import MatrixError
from dagcore.models import Event as EventRow
from dagcore.store import redactions as redaction_store
from tests.actions.roomkit import dagma_with, join, make_room, make_user, reader, say

pytestmark = pytest.mark.django_db


def _redact(user, room_id: str, event_id: str, txn: str = "r1", reason: str | None = None) -> str:
    return check_redact_event(
        txn=ClientTxn(user_id=user.user_id, device_key="DEV", txn_id=txn),
        room_id=room_id,
        event_id=event_id,
        reason=reason,
    )


def _redacted_by(event_id: str) -> str | None:
    return EventRow.objects.get(event_id=event_id).redacted_by


def test_members_redact_their_own_events_but_not_others_without_power() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    alices = say(alice, room, "alice's words")
    bobs = say(bob, room, "bob's words")
    with pytest.raises(MatrixError) as exc:
        _redact(bob, room, alices)
    assert exc.value.status == 403
    assert _redacted_by(alices) is None
    redaction = _redact(bob, room, bobs)
    assert _redacted_by(bobs) == redaction


def test_moderators_redact_others_events() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    bobs = say(bob, room, "rude")
    redaction = _redact(alice, room, bobs, reason="moderation")
    assert _redacted_by(bobs) == redaction


def test_a_retried_redaction_transaction_answers_the_same_redaction() -> None:
    alice = make_user()
    room = make_room(alice)
    target = say(alice, room)
    assert _redact(alice, room, target, txn="same") == _redact(alice, room, target, txn="same")


def test_redacted_events_are_served_pruned_with_redacted_because() -> None:
    from dagcore.events_format import serialize_stored_events

    alice = make_user()
    room = make_room(alice)
    target = say(alice, room, "secret")
    redaction = _redact(alice, room, target, reason="oops")
    r = reader(alice, room)
    stored = room_access.access_event(r, target)
    extras = room_access.get_client_event_extras([stored], user_id=alice.user_id, device_key="DEV")
    data = serialize_stored_events([stored], extras)[0]
    assert data["content"] == {}
    assert data["unsigned"]["redacted_because"]["event_id"] == redaction
    assert data["unsigned"]["redacted_because"]["content"]["reason"] == "oops"


def test_v11_redactions_carry_redacts_in_content() -> None:
    alice = make_user()
    room = make_room(alice, room_version="11")
    target = say(alice, room)
    redaction = _redact(alice, room, target)
    pdu = json.loads(EventRow.objects.get(event_id=redaction).json)
    assert pdu["content"]["redacts"] == target and "redacts" not in pdu


def test_the_create_event_cannot_be_redacted() -> None:
    alice = make_user()
    room = make_room(alice, room_version="10")
    create_id = EventRow.objects.filter(type="m.room.create", room__room_id=room).values_list(
        "event_id", flat=True
    )[0]
    with pytest.raises(MatrixError) as exc:
        _redact(alice, room, create_id)
    assert exc.value.status == 403


def test_censoring_erases_content_only_after_the_retention_period() -> None:
    alice = make_user()
    room = make_room(alice)
    old = say(alice, room, "erase me")
    _redact(alice, room, old)
    kept = say(alice, room, "keep me")
    with override_settings(DAGMA=dagma_with(redaction_retention_period="7d")):
        assert redaction_store.censor_expired() == 0
    assert "erase me" in EventRow.objects.get(event_id=old).json
    with override_settings(DAGMA=dagma_with(redaction_retention_period="0ms")):
        EventRow.objects.filter(type="m.room.redaction").update(received_ts=0)
        assert redaction_store.censor_expired() == 1
        assert redaction_store.censor_expired() == 0  # the cursor moved on
    assert "erase me" not in EventRow.objects.get(event_id=old).json
    assert "keep me" in EventRow.objects.get(event_id=kept).json


@pytest.mark.parametrize(("version", "invite_kept"), [("10", False), ("11", True)])
def test_auth_sees_a_redacted_power_levels_event_in_its_redacted_form(
    version: str, invite_kept: bool
) -> None:
    """Redaction algorithm: before v11 a redacted m.room.power_levels loses ``invite``, so the
    invite level falls back to its default (0); from v11 it keeps it. Auth must use that form,
    not the stored original."""
    from tests.actions.roomkit import invite, set_state

    alice, bob, carol = make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat", room_version=version)
    join(bob, room)
    levels = {"users": {alice.user_id: 100}, "invite": 100, "redact": 50, "events_default": 0}
    levels_id = set_state(alice, room, "m.room.power_levels", levels)
    with pytest.raises(MatrixError):
        invite(bob, room, carol)  # invite needs 100
    _redact(alice, room, levels_id)
    assert _redacted_by(levels_id) is not None
    if invite_kept:
        with pytest.raises(MatrixError):
            invite(bob, room, carol)
    else:
        invite(bob, room, carol)  # the redacted form has no "invite": the default 0 applies
