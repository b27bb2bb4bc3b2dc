"""Device management (spec: https://spec.matrix.org/v1.19/client-server-api/#device-management)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.http.errors import MatrixError
from dagcore.models import Device
from tribune.http import RequestContext, client_route, endpoint, methods
from tribune.uia import PASSWORD, user_interactive_auth


def _device_json(device: Device) -> dict[str, Any]:
    """Every key is always present, ``display_name`` as null when no name was set.

    The spec says "absent if no name has been set", but matrix-nio (built against
    Synapse, which sends null) refuses a device list without the key, so we send
    what Synapse sends. ``last_seen_*`` are recorded at login, so they are never null.
    """
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


@endpoint()
def list_devices(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/devices"""
    return {"devices": [_device_json(d) for d in account_actions.get_devices(user=ctx.require_user())]}


@endpoint()
def get_device(ctx: RequestContext, device_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/devices/{deviceId}"""
    return _device_json(account_actions.access_device(user=ctx.require_user(), device_id=device_id))


@endpoint()
def update_device(ctx: RequestContext, device_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/devices/{deviceId}"""
    body = ctx.json_object()
    account_actions.check_update_device(
        user=ctx.require_user(), device_id=device_id, display_name=body.get("display_name")
    )
    return {}


@endpoint(body_methods=("DELETE",))  # this DELETE carries UIA in its body
def delete_device(ctx: RequestContext, device_id: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/devices/{deviceId}"""
    user = ctx.require_user()
    with user_interactive_auth(ctx, flows=[[PASSWORD]]):
        account_actions.do_delete_devices(user=user, device_ids=[device_id])
    return {}


@endpoint()
def delete_devices(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/delete_devices"""
    user = ctx.require_user()
    device_ids = ctx.json_object().get("devices")
    if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
        raise MatrixError(400, "M_INVALID_PARAM", "devices must be a list of device IDs")
    if len(device_ids) > 1000:
        raise MatrixError(400, "M_INVALID_PARAM", "At most 1000 devices can be deleted at once")
    # The session is bound to this list: it cannot be spent on other devices.
    with user_interactive_auth(ctx, flows=[[PASSWORD]], bound=sorted(set(device_ids))):
        account_actions.do_delete_devices(user=user, device_ids=device_ids)
    return {}


routes: list[URLPattern] = [
    client_route("devices", methods(GET=list_devices)),
    client_route("devices/<device_id>", methods(GET=get_device, PUT=update_device, DELETE=delete_device)),
    client_route("delete_devices", methods(POST=delete_devices)),
]
