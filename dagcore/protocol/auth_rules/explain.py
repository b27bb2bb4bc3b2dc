"""Why an event passes or fails the auth rules: the rule and the auth event that decided.

Not a spec step: operators looking at a rejected or soft-failed event (Politburo's event
page, ``dag repair``) want more than the failure's reason. :func:`explain_event_auth` runs
the very same checks (:func:`check_auth_events_list`, :func:`check_event_auth`) over a state
that records which ``(type, state_key)`` the rules read, in order. The rules read the state
in the spec's order and stop at the first failure, so the last entry read before a failure
is the one that decided it (the sender's membership for "not joined", the power levels for
a power check, the target's membership for a kick...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from dagcore.protocol.auth_rules.auth_events_selection import check_auth_events_list
from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.event_auth import check_event_auth
from dagcore.protocol.events import Event, StateKey


class _RecordingState(Mapping[StateKey, Event]):
    """A read-only state that remembers every key looked up, present or not."""

    def __init__(self, state: Mapping[StateKey, Event]) -> None:
        self._state = state
        self.reads: list[StateKey] = []

    def __getitem__(self, key: StateKey) -> Event:
        self._note(key)
        return self._state[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            self._note(key)
        return key in self._state

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def _note(self, key: StateKey) -> None:
        if key not in self.reads:
            self.reads.append(key)
        else:  # read again: it is the latest read
            self.reads.remove(key)
            self.reads.append(key)


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    """The outcome of the auth rules for one event against one state, explained."""

    allowed: bool
    reason: str
    #: The rule (spec wording) that decided: for an allowed event, the last one that applied.
    rule: str
    #: ``(key, event ID or None if absent)`` the rules read, in the order they read them.
    consulted: tuple[tuple[StateKey, str | None], ...]
    #: The state entry that decided a refusal (the last read), ``None`` when none was read.
    deciding: tuple[StateKey, str | None] | None


def explain_event_auth(
    event: Event,
    state: Mapping[StateKey, Event],
    *,
    auth_events: Sequence[Event] | None = None,
    create_event: Event | None = None,
) -> AuthVerdict:
    """Run the auth rules for ``event`` against ``state`` and say which rule and entry decided.

    ``auth_events``: also check the rules about the event's own ``auth_events`` list first
    (spec server-server API "Checks performed on receipt of a PDU", step 4), then use them
    as the state when ``state`` is empty.
    """
    recording = _RecordingState(state)
    try:
        if auth_events is not None:
            try:
                check_auth_events_list(event, auth_events, create_event=create_event)
            except AuthError as exc:
                culprit = _auth_list_culprit(exc.reason, auth_events)
                return AuthVerdict(False, exc.reason, "the rules about the auth_events list", (), culprit)
        check_event_auth(event, recording)
    except AuthError as exc:
        consulted = _consulted(recording)
        return AuthVerdict(
            False, exc.reason, rule_for(event, exc.reason), consulted, _deciding(event, exc.reason, consulted)
        )
    return AuthVerdict(True, "allowed", rule_for(event, None), _consulted(recording), None)


def _consulted(recording: _RecordingState) -> tuple[tuple[StateKey, str | None], ...]:
    out = []
    for key in recording.reads:
        found = recording._state.get(key)
        out.append((key, found.event_id if found is not None else None))
    return tuple(out)


def _deciding(
    event: Event, reason: str, consulted: tuple[tuple[StateKey, str | None], ...]
) -> tuple[StateKey, str | None] | None:
    """The entry that decided a refusal: the one the reason is about when it names one (a
    power check reads the create event too, for v12 creators, after the power levels),
    else the last entry read."""
    by_key = dict(consulted)
    preferred: list[StateKey] = []
    if "level" in reason:
        preferred.append(("m.room.power_levels", ""))
    if "not joined" in reason:
        preferred.append(("m.room.member", event.sender))
    if "join rule" in reason or "join_rule" in reason:
        preferred.append(("m.room.join_rules", ""))
    if event.state_key is not None and event.type == "m.room.member":
        preferred.append(("m.room.member", event.state_key))
    for key in preferred:
        if key in by_key:
            return key, by_key[key]
    return consulted[-1] if consulted else None


def _auth_list_culprit(reason: str, auth_events: Sequence[Event]) -> tuple[StateKey, str | None] | None:
    for auth_event in auth_events:
        if auth_event.event_id in reason or (
            auth_event.state_key is not None and f"{auth_event.type} {auth_event.state_key!r}" in reason
        ):
            return (auth_event.type, auth_event.state_key or ""), auth_event.event_id
    return None


def rule_for(event: Event, reason: str | None) -> str:
    """The spec's name for the rule a reason comes from (the authorization rules of
    https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules, in their order)."""
    text = reason or ""
    if event.type == "m.room.create":
        return "rule 1: m.room.create"
    if "create event" in text or "m.room.create" in text:
        return "rule 2/3: the room's m.room.create event"
    if "federate" in text:
        return "m.federate: the room does not federate"
    if event.type == "m.room.aliases" and event.room_version.special_case_aliases_auth:
        return "m.room.aliases (v1-v5)"
    if event.type == "m.room.member":
        membership = event.content.get("membership")
        shown = membership if isinstance(membership, str) else "?"
        if "third_party_invite" in text or "third party" in text:
            return f"m.room.member ({shown}): third-party invite"
        return f"m.room.member ({shown})"
    if "not joined" in text:
        return "the sender must be joined to the room"
    if event.type == "m.room.third_party_invite":
        return "m.room.third_party_invite: the sender needs the invite level"
    if "needs power level" in text:
        return "the sender's power level must reach the level required for the event type"
    if "'@'" in text:
        return "state keys starting with '@' must be the sender's user ID"
    if event.type == "m.room.power_levels":
        return "m.room.power_levels: changes allowed by the sender's level"
    if event.type == "m.room.redaction":
        return "m.room.redaction (v1-v2): the redact level or the same server"
    return "the sender's power level reaches the event's required level" if reason is None else "auth rules"
