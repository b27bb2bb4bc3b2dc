"""Authorization rules for every room version, pure (no Django, no database).

Spec: https://spec.matrix.org/v1.19/rooms/ ("Authorization rules" of v1 ... v12) and
https://spec.matrix.org/v1.19/server-server-api/#authorization-rules. One module per
step of the spec:

* :mod:`.auth_events_selection` — which state an event cites, and the rules about that list;
* :mod:`.create` — rule 1, ``m.room.create``;
* :mod:`.aliases` — the v1-v5 ``m.room.aliases`` special case;
* :mod:`.member` / :mod:`.third_party_invite` — ``m.room.member``;
* :mod:`.power_levels` — ``m.room.power_levels``;
* :mod:`.redaction` — the v1-v2 redaction rule and v3+ "handling redactions";
* :mod:`.power` — user levels, named levels, creators;
* :mod:`.event_auth` — :func:`check_event_auth`, the rules in the spec's order.

Typical use, for an event received over federation::

    check_auth_events_list(event, auth_events, create_event=create)   # v12: create from room ID
    check_event_auth(event, state_from(auth_events))                   # step 4
    check_event_auth(event, state_before)                              # step 5 (reject)
    check_event_auth(event, current_state)                             # step 6 (soft fail)
"""

from dagcore.protocol.auth_rules.auth_events_selection import (
    auth_types_for_event,
    check_auth_events_list,
    check_create_event_for_room,
)
from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.event_auth import check_event_auth
from dagcore.protocol.auth_rules.member import SignatureCheck
from dagcore.protocol.auth_rules.power import (
    INFINITE_POWER,
    creators,
    get_named_level,
    get_required_level,
    get_user_power_level,
    is_creator,
)
from dagcore.protocol.auth_rules.redaction import redaction_applies

__all__ = [
    "INFINITE_POWER",
    "AuthError",
    "SignatureCheck",
    "auth_types_for_event",
    "check_auth_events_list",
    "check_create_event_for_room",
    "check_event_auth",
    "creators",
    "get_named_level",
    "get_required_level",
    "get_user_power_level",
    "is_creator",
    "redaction_applies",
]
