"""Send-to-device messaging (spec: client-server API "Send-to-Device messaging")."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions.to_device import check_send_to_device
from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(allow_guest=True, max_body=8 * 1024 * 1024)
def send_to_device(ctx: RequestContext, event_type: str, txn_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
    if not txn_id or len(txn_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "The transaction ID must be 1-255 characters")
    body = ctx.json_object()
    if "messages" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing messages")
    check_send_to_device(
        sender=ctx.user_id,
        device_key=txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id),
        event_type=event_type,
        txn_id=txn_id,
        messages=body["messages"],
    )
    return {}


routes: list[URLPattern] = [
    client_route("sendToDevice/<event_type>/<txn_id>", methods(PUT=send_to_device)),
]
