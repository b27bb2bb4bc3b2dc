"""Server discovery and capabilities (spec: client-server API "Server Discovery", "Capabilities")."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse

from dagcore.http.errors import MatrixError
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS
from tribune.http import RequestContext, endpoint

#: Every spec version whose client-server API we implement (js-sdk needs one of
#: v1.1-v1.13 and changes behaviour at v1.4 and v1.11). v1.12: account locking lets a locked
#: account log out; v1.13: room reports and the requestToken endpoints' error codes; v1.14:
#: user reports; v1.15: ``/v1/room_summary`` (js-sdk previews rooms with it from v1.15 on).
#: Not v1.16 yet: no ``use_state_after`` in ``/sync``.
SUPPORTED_SPEC_VERSIONS = [
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
    "v1.12", "v1.13", "v1.14", "v1.15",
]  # fmt: skip


@endpoint(auth="optional", allow_guest=True)
def versions(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/versions"""
    return {"versions": SUPPORTED_SPEC_VERSIONS, "unstable_features": {}}


@endpoint(auth="none")
def well_known_client(ctx: RequestContext) -> dict[str, Any]:
    """GET /.well-known/matrix/client"""
    return {"m.homeserver": {"base_url": settings.DAGMA.public_baseurl.rstrip("/")}}


@endpoint(allow_guest=True)
def capabilities(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/capabilities"""
    available = {v.identifier: "stable" for v in KNOWN_ROOM_VERSIONS.values() if v.supported}
    return {
        "capabilities": {
            "m.room_versions": {"default": settings.DAGMA.default_room_version, "available": available},
            "m.change_password": {"enabled": True},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": True},
            "m.profile_fields": {"enabled": True, "allowed": ["displayname", "avatar_url"]},
        }
    }


@endpoint(auth="none", body_methods=())
def unrecognized(ctx: RequestContext, **_: str) -> dict[str, Any]:
    """Any path we do not serve: JSON 404 M_UNRECOGNIZED (spec: "Unsupported endpoints")."""
    raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")


@endpoint(auth="none")
def health(ctx: RequestContext) -> Any:
    """GET /health — liveness for load balancers (plain "OK", as Synapse answers)."""

    return HttpResponse(b"OK", content_type="text/plain")
