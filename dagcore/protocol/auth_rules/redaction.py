"""Redactions: an auth rule in v1-v2, a separate "apply or wait" check from v3.

Spec: rule 11 of https://spec.matrix.org/v1.19/rooms/v1/#authorization-rules and
"Handling redactions" of https://spec.matrix.org/v1.19/rooms/v3/#handling-redactions
(unchanged up to v12). From v3 the auth rules treat ``m.room.redaction`` like any other
event (only the ``events``/``events_default`` level applies); whether the redaction is
*applied* is decided by :func:`redaction_applies` once both events are known.
"""

from __future__ import annotations

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import domain_of
from dagcore.protocol.auth_rules.power import State, get_named_level, get_user_power_level
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import EventFormat, RoomVersion


def has_redaction_auth_rule(room_version: RoomVersion) -> bool:
    """v1 and v2 only: they are the versions whose event IDs carry the origin's domain."""
    return room_version.event_format is EventFormat.V1


def check_redaction_v1(event: Event, state: State) -> None:
    """v1-v2 rule 11: redact level, or the redacted event ID has the redaction's domain."""
    if get_user_power_level(event.sender, state) >= get_named_level("redact", state):
        return
    redacts = event.redacts
    if (
        redacts is not None
        and domain_of(redacts) is not None
        and domain_of(redacts) == domain_of(event.event_id)
    ):
        return
    raise AuthError("the sender may not redact events of another server")


def redaction_applies(redaction: Event, redacted: Event, state: State) -> bool:
    """v3+ "Handling redactions": apply if the sender has the redact level, or both
    events were sent from the same server. ``state`` is the state at the redaction."""
    if get_user_power_level(redaction.sender, state) >= get_named_level("redact", state):
        return True
    return domain_of(redaction.sender) == domain_of(redacted.sender)
