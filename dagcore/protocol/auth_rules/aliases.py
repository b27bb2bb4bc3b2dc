"""The ``m.room.aliases`` special case of room versions 1-5.

Spec: rule 4 of https://spec.matrix.org/v1.19/rooms/v1/#authorization-rules (removed in
v6, spec rooms/v6 "Authorization rules": aliases events then follow the ordinary rules).
"""

from __future__ import annotations

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import domain_of
from dagcore.protocol.events import Event


def check_aliases(event: Event) -> None:
    """Allow when the ``state_key`` is the sender's domain — even for a non-member."""
    if event.state_key is None:
        raise AuthError("m.room.aliases needs a state_key")
    if domain_of(event.sender) != event.state_key:
        raise AuthError("m.room.aliases state_key is not the sender's domain")
