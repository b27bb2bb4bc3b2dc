"""The ``to_device`` section (spec "Send-to-Device messaging"): the device's messages after
the token's to-device position. A sync from a position acknowledges every message up to
it, which are deleted then (once per position and process: ``memory.acknowledged_to_device``)."""

from __future__ import annotations

from typing import Any

from dagcore.actions.to_device import acknowledge_device_inbox, get_device_inbox, to_device_event
from dagcore.sync.context import SyncContext
from dagcore.sync.memory import acknowledged_to_device


def acknowledge_to_device(ctx: SyncContext) -> None:
    """Delete what the ``since`` token acknowledges (nothing for an initial sync or without a device)."""
    if ctx.since is None or ctx.device_id is None:
        return
    key = (ctx.user_id, ctx.device_id)
    position = ctx.since.to_device
    if position and acknowledged_to_device.get(key) != position:
        acknowledge_device_inbox(user_id=ctx.user_id, device_id=ctx.device_id, upto=position)
        acknowledged_to_device.put(key, position)


def build_to_device(ctx: SyncContext) -> tuple[list[dict[str, Any]], int]:
    """``(events, to-device position for next_batch)``: the position stops at the last
    message sent when the inbox holds more than one sync delivers (the rest follow)."""
    if ctx.device_id is None:
        return [], ctx.now.to_device
    if ctx.since is not None and not ctx.moved("to_device"):
        acknowledge_to_device(ctx)
        return [], ctx.now.to_device
    acknowledged = ctx.since.to_device if ctx.since is not None else None
    messages, position = get_device_inbox(
        user_id=ctx.user_id, device_id=ctx.device_id, acknowledged=acknowledged, upto=ctx.now.to_device
    )
    acknowledged_to_device.put((ctx.user_id, ctx.device_id), acknowledged or 0)
    return [to_device_event(m) for m in messages], position
