"""TURN credentials for VoIP calls (spec: client-server API "Voice over IP", ``GET /voip/turnServer``).

With ``turn_shared_secret`` (coturn's ``static-auth-secret``, "TURN REST API") each user
gets a username ``<expiry>:<user_id>`` and its HMAC-SHA1 as password, valid for
``turn_user_lifetime``; with ``turn_username``/``turn_password`` everyone gets those.
The option names and the credential scheme are Synapse's, so a coturn set up for
Synapse works unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from django.conf import settings

from dagcore.clock import duration_ms, now_ms
from dagcore.http.errors import MatrixError


def get_turn_server(*, user_id: str, is_guest: bool) -> dict[str, Any]:
    """The credentials, or ``{}`` when no TURN server is configured.

    ``{}`` is what Synapse answers then, and what Element and matrix-js-sdk read as "no
    TURN server" (an error makes js-sdk log and poll again); the spec's schema has no
    shape for "none".
    """
    conf = settings.DAGMA
    uris = list(conf.turn_uris)
    secret, username, password = conf.turn_shared_secret, conf.turn_username, conf.turn_password
    if not uris or not (secret or (username and password)):
        return {}
    if is_guest and not conf.turn_allow_guests:
        raise MatrixError(403, "M_FORBIDDEN", "Guests may not use the TURN server")
    lifetime_ms = duration_ms(conf.turn_user_lifetime) or 3_600_000
    if secret:
        expiry_s = (now_ms() + lifetime_ms) // 1000
        username = f"{expiry_s}:{user_id}"
        digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
        password = base64.b64encode(digest).decode("ascii")
    return {"username": username, "password": password, "uris": uris, "ttl": lifetime_ms // 1000}
