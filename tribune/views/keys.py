"""End-to-end encryption: key management, cross-signing and server-side key backups.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
(the server stores and routes public keys and encrypted backups; it never sees plaintext).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from django.urls import URLPattern

from dagcore.actions import cross_signing, e2e_keys, key_backup
from dagcore.http.errors import MatrixError
from dagcore.sync.tokens import SyncToken
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods
from tribune.uia import PASSWORD, user_interactive_auth

#: One DEBUG line per request, in the order their answers are decided, next to the
#: ``device_lists`` positions the changes committed (``dagcore.actions.device_lists``):
#: enough to read an E2EE interleaving back from the log.
logger = logging.getLogger("dagma.e2ee")

View = Callable[..., dict[str, Any]]


def _logged(view: View) -> View:
    @functools.wraps(view)
    def wrapper(ctx: RequestContext, **kwargs: Any) -> dict[str, Any]:
        if not logger.isEnabledFor(logging.DEBUG):
            return view(ctx, **kwargs)
        started = time.monotonic()
        status, answer = 500, ""
        try:
            result = view(ctx, **kwargs)
            status, answer = 200, _summary(result)
            return result
        except MatrixError as exc:
            status = exc.status
            raise
        finally:
            logger.debug(
                "%s %s by %s/%s: %d in %.0f ms%s", ctx.request.method, ctx.request.path, ctx.user_id,
                ctx.device_id, status, (time.monotonic() - started) * 1000, answer,
            )  # fmt: skip

    return wrapper


def _summary(result: dict[str, Any]) -> str:
    """The cross-signing keys a ``/keys/query`` answered with (their IDs' first characters)."""
    masters = result.get("master_keys")
    if not isinstance(masters, dict) or not masters:
        return ""
    ssks = result.get("self_signing_keys", {})

    def short(key: Any) -> str:
        return next(iter(key.get("keys", {})), "?")[8:16] if isinstance(key, dict) else "-"

    return " answered " + ", ".join(
        f"{u} master={short(k)} ssk={short(ssks.get(u))}" for u, k in masters.items()
    )


def _device_id(ctx: RequestContext) -> str:
    if ctx.device_id is None:
        raise MatrixError(400, "M_INVALID_PARAM", "This access token has no device")
    return ctx.device_id


# --------------------------------------------------------------------------- key management


@endpoint(allow_guest=True)
@_logged
def upload_keys(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/keys/upload"""
    device_id = _device_id(ctx)
    upload = e2e_keys.check_key_upload(ctx.json_object(), user_id=ctx.user_id, device_id=device_id)
    counts = e2e_keys.do_upload_keys(user_id=ctx.user_id, device_id=device_id, upload=upload)
    return {"one_time_key_counts": counts}


@endpoint(allow_guest=True)
@_logged
def query_keys(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/keys/query"""
    body = ctx.json_object()
    if "device_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "device_keys is required")
    wanted = e2e_keys.check_query_request(body["device_keys"])
    return e2e_keys.get_keys_for_users(
        requester=ctx.user_id, device_keys=wanted, timeout_ms=e2e_keys.check_timeout(body.get("timeout"))
    )


@endpoint(allow_guest=True)
@_logged
def claim_keys(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/keys/claim"""
    body = ctx.json_object()
    if "one_time_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "one_time_keys is required")
    wanted = e2e_keys.check_claim_request(body["one_time_keys"])
    return e2e_keys.do_claim_keys(wanted=wanted, timeout_ms=e2e_keys.check_timeout(body.get("timeout")))


@endpoint(allow_guest=True)
@_logged
def key_changes(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/keys/changes"""
    raw_from = ctx.query.get("from")
    if not raw_from:
        raise MatrixError(400, "M_MISSING_PARAM", "from is required")
    since = SyncToken.parse(raw_from)
    raw_to = ctx.query.get("to")
    # ``to`` is only a hint (spec); without it, "now".
    upto = SyncToken.parse(raw_to) if raw_to else None
    delta = e2e_keys.get_device_list_changes(
        user_id=ctx.user_id,
        from_events=since.events,
        to_events=upto.events if upto else None,
        from_device_lists=since.device_lists,
        to_device_lists=upto.device_lists if upto else None,
    )
    return {"changed": delta.changed, "left": delta.left}


# --------------------------------------------------------------------------- cross-signing


@endpoint()
@_logged
def upload_device_signing_keys(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/keys/device_signing/upload"""
    upload = cross_signing.check_cross_signing_upload(ctx.json_object(), user_id=ctx.user_id)
    # Spec: replacing existing keys needs UIA; the session is bound to these keys.
    cross_signing.do_upload_cross_signing_keys(
        user_id=ctx.user_id,
        upload=upload,
        authorize=lambda: user_interactive_auth(ctx, flows=[[PASSWORD]], bound=upload.to_json()),
    )
    return {}


@endpoint()
@_logged
def upload_signatures(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/keys/signatures/upload"""
    signed = cross_signing.check_signatures_upload(ctx.json_object())
    return cross_signing.do_upload_signatures(requester=ctx.user_id, signed=signed)


# --------------------------------------------------------------------------- key backup


@endpoint()
@_logged
def create_backup(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/room_keys/version"""
    params = inputs.parse_backup_params(ctx.json_object())
    return {"version": key_backup.do_create_backup(user_id=ctx.user_id, params=params)}


@endpoint()
@_logged
def get_current_backup(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/room_keys/version"""
    return key_backup.get_backup_info(user_id=ctx.user_id, version=None).to_json()


@endpoint()
@_logged
def get_backup(ctx: RequestContext, version: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/room_keys/version/{version}"""
    return key_backup.get_backup_info(user_id=ctx.user_id, version=version).to_json()


@endpoint()
@_logged
def update_backup(ctx: RequestContext, version: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/room_keys/version/{version}"""
    params = inputs.parse_backup_update(ctx.json_object(), version=version)
    key_backup.do_update_backup(user_id=ctx.user_id, version=version, params=params)
    return {}


@endpoint()
@_logged
def delete_backup(ctx: RequestContext, version: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/room_keys/version/{version}"""
    key_backup.do_delete_backup(user_id=ctx.user_id, version=version)
    return {}


def _version(ctx: RequestContext) -> str | None:
    value = ctx.query.get("version")
    return str(value) if value is not None else None


@endpoint()
@_logged
def put_keys(
    ctx: RequestContext, room_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    keys = inputs.parse_room_keys_upload(ctx.json_object(), room_id=room_id, session_id=session_id)
    return key_backup.do_store_keys(user_id=ctx.user_id, version=_version(ctx), keys=keys).to_json()


@endpoint()
@_logged
def get_keys(
    ctx: RequestContext, room_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    return key_backup.get_backed_up_keys(
        user_id=ctx.user_id, version=_version(ctx), room_id=room_id, session_id=session_id
    )


@endpoint()
@_logged
def delete_keys(
    ctx: RequestContext, room_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    return key_backup.do_delete_keys(
        user_id=ctx.user_id, version=_version(ctx), room_id=room_id, session_id=session_id
    ).to_json()


_room_keys = methods(GET=get_keys, PUT=put_keys, DELETE=delete_keys)

routes: list[URLPattern] = [
    client_route("keys/upload", methods(POST=upload_keys)),
    client_route("keys/query", methods(POST=query_keys)),
    client_route("keys/claim", methods(POST=claim_keys)),
    client_route("keys/changes", methods(GET=key_changes)),
    client_route("keys/device_signing/upload", methods(POST=upload_device_signing_keys)),
    client_route("keys/signatures/upload", methods(POST=upload_signatures)),
    client_route("room_keys/version", methods(GET=get_current_backup, POST=create_backup)),
    client_route(
        "room_keys/version/<version>", methods(GET=get_backup, PUT=update_backup, DELETE=delete_backup)
    ),
    client_route("room_keys/keys", _room_keys),
    client_route("room_keys/keys/<room_id>", _room_keys),
    client_route("room_keys/keys/<room_id>/<session_id>", _room_keys),
]
