"""The redaction algorithm, for every room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions defers the
algorithm to the room versions:

* v1-v5: https://spec.matrix.org/v1.19/rooms/v1/#redactions (``m.room.aliases``
  keeps ``aliases``),
* v6, v7: https://spec.matrix.org/v1.19/rooms/v6/#redactions (``aliases`` no
  longer special),
* v8: https://spec.matrix.org/v1.19/rooms/v8/#redactions (``join_rules`` keeps
  ``allow``),
* v9, v10: https://spec.matrix.org/v1.19/rooms/v9/#redactions (``m.room.member``
  keeps ``join_authorised_via_users_server``),
* v11, v12: https://spec.matrix.org/v1.19/rooms/v11/#redactions (top-level
  ``origin``/``membership``/``prev_state`` no longer kept; create keeps all of
  ``content``; power levels keep ``invite``; redaction keeps ``content.redacts``;
  member keeps ``third_party_invite.signed``). Room version 12 lists its
  redaction algorithm as "unchanged from v11".

Redaction is not only for clients: the *redacted* form is what event
signatures and reference hashes (event IDs) cover, so this must match every
other server byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.room_versions import RoomVersion

__all__ = ["redact_pdu"]

#: Top-level keys kept by the v1-v10 algorithm.
_KEPT_TOP_LEVEL_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
#: v11 stops protecting ``origin``, ``membership`` and ``prev_state``.
_KEPT_TOP_LEVEL_V11 = _KEPT_TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def _kept_content_keys(event_type: object, room_version: RoomVersion) -> tuple[str, ...] | None:
    """The content keys ``event_type`` keeps; ``None`` means "all of them"."""
    if event_type == "m.room.member":
        if room_version.restricted_join_rule_fix:
            # v9: without it, a redacted restricted join no longer passes auth
            # (its authorising signature requirement loses its subject).
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        # v11: the whole content (room_version, m.federate, predecessor, ...
        # and in v12 additional_creators) matters to auth; keep it all.
        return None if room_version.updated_redaction_rules else ("creator",)
    if event_type == "m.room.join_rules":
        # v8 introduced restricted rooms, whose ``allow`` list is needed by auth.
        return ("join_rule", "allow") if room_version.restricted_join_rule else ("join_rule",)
    if event_type == "m.room.power_levels":
        if room_version.updated_redaction_rules:
            return (*_POWER_LEVELS_KEYS_V1, "invite")
        return _POWER_LEVELS_KEYS_V1
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.aliases" and room_version.special_case_aliases_auth:
        # v1-v5 only: v6 removed all significance of m.room.aliases (spec rooms/v6).
        return ("aliases",)
    if event_type == "m.room.redaction" and room_version.updated_redaction_rules:
        # v11 moved ``redacts`` into content, so it must survive redaction there.
        return ("redacts",)
    return ()


def redact_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return the redacted form of ``pdu`` under ``room_version``'s algorithm.

    The result is a new dict; kept nested values (``content.users``,
    ``signatures``, ...) are shared with ``pdu``, not copied, so treat it as
    read-only or copy before mutating. ``unsigned`` is never kept: the spec's
    list of kept keys does not include it (servers re-add ``redacted_because``
    when serving to clients, which is not this function's business).

    ``content`` is always present in the result (``{}`` when the PDU had none or
    a non-object one), because every event format requires it.
    """
    kept_top = _KEPT_TOP_LEVEL_V11 if room_version.updated_redaction_rules else _KEPT_TOP_LEVEL_V1
    redacted: dict[str, Any] = {key: value for key, value in pdu.items() if key in kept_top}

    content = pdu.get("content")
    if not isinstance(content, Mapping):
        content = {}
    event_type = pdu.get("type")
    kept_content = _kept_content_keys(event_type, room_version)
    if kept_content is None:
        new_content = dict(content)
    else:
        new_content = {key: content[key] for key in kept_content if key in content}

    if event_type == "m.room.member" and room_version.updated_redaction_rules:
        # v11 (MSC3821): "the third_party_invite key ... is no longer redacted,
        # but will only contain the signed key after redaction" (spec rooms/v11).
        # Auth rules need ``signed`` to re-check a redacted 3pid invite. An object
        # without ``signed`` is therefore kept as ``{}``: the key itself survives.
        third_party_invite = content.get("third_party_invite")
        if isinstance(third_party_invite, Mapping):
            new_content["third_party_invite"] = (
                {"signed": third_party_invite["signed"]} if "signed" in third_party_invite else {}
            )

    redacted["content"] = new_content
    return redacted
