"""Room versions on this server, and upgrading old rooms (issue 14's runbook).

Versions 1-5 predate the fixes operators care about (v1: state resolution v1, which this
server does not run; v1-v2: server-assigned event IDs; v1-v4: signing keys accepted past
their validity; v1-v5: non-strict canonical JSON and the alias special case), so they are
flagged ``old``; an identifier the spec does not define (an experimental or unknown version)
is flagged ``unstable``. Upgrading uses the spec's room upgrade
(``dagcore.actions.upgrade_room``), performed by the local member with the most power,
who must be allowed to send ``m.room.tombstone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagcore.actions.audit import Actor, record_audit
from dagcore.actions.upgrade_room import check_upgrade_room
from dagcore.http.errors import MatrixError
from dagcore.protocol.auth_rules import get_required_level, get_user_power_level
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS, UnsupportedRoomVersion, get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import room_admin as store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store

OLD_BELOW = 6


def version_flag(identifier: str) -> str | None:
    """``old`` (v1-v5), ``unstable`` (not a version the spec defines), or ``None``."""
    if identifier not in KNOWN_ROOM_VERSIONS:
        return "unstable"
    return "old" if int(identifier) < OLD_BELOW else None


def _version_key(identifier: str) -> tuple[int, str]:
    return (int(identifier), "") if identifier.isdigit() else (10_000, identifier)


def get_room_versions_report() -> list[dict[str, Any]]:
    """Per room version: how many rooms, their local joined members, a flag, the room IDs."""
    by_version: dict[str, dict[str, Any]] = {}
    for facts in store.get_room_facts():
        row = by_version.setdefault(
            facts.version,
            {"version": facts.version, "flag": version_flag(facts.version), "rooms": 0, "local_members": 0,
             "room_ids": []},
        )  # fmt: skip
        row["rooms"] += 1
        row["local_members"] += facts.joined_local_members
        row["room_ids"].append(facts.room_id)
    for row in by_version.values():
        row["room_ids"].sort()
    return [by_version[v] for v in sorted(by_version, key=_version_key)]


@dataclass(frozen=True)
class UpgradePlan:
    room_id: str
    from_version: str
    to_version: str
    #: The local member who would upgrade the room; ``None`` with ``refusal`` when none can.
    upgrader: str | None
    refusal: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"room_id": self.room_id, "from_version": self.from_version, "to_version": self.to_version,
                "upgrader": self.upgrader, "refusal": self.refusal}  # fmt: skip


def plan_upgrade(*, room_id: str, to_version: str) -> UpgradePlan:
    """Who would upgrade ``room_id`` to ``to_version``, or why it cannot be done (nothing changes)."""
    try:
        get_room_version(to_version)
    except UnsupportedRoomVersion:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version: {to_version!r}"
        ) from None
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
    plan = {"room_id": room_id, "from_version": room.room_version, "to_version": to_version}
    if room.room_version == to_version:
        return UpgradePlan(**plan, upgrader=None, refusal=f"already version {to_version}")
    state = state_store.get_current_state_events(room)
    if ("m.room.tombstone", "") in state:
        return UpgradePlan(**plan, upgrader=None, refusal="already upgraded (it has a tombstone)")
    server = get_server_name()
    local = [
        skey for (etype, skey), ev in state.items()
        if etype == "m.room.member" and ev.membership == "join" and skey.split(":", 1)[-1] == server
    ]  # fmt: skip
    needed = get_required_level("m.room.tombstone", is_state=True, state=state)
    able = sorted((u for u in local if get_user_power_level(u, state) >= needed),
                  key=lambda u: (-get_user_power_level(u, state), u))  # fmt: skip
    if not able:
        return UpgradePlan(**plan, upgrader=None, refusal="no local member may send m.room.tombstone")
    return UpgradePlan(**plan, upgrader=able[0])


def check_upgrade_planned_room(*, plan: UpgradePlan, actor: Actor) -> str:
    """Upgrade as planned; the new room's ID. One audit entry (ok or failed)."""
    if plan.upgrader is None:
        raise MatrixError(400, "M_UNKNOWN", f"{plan.room_id} cannot be upgraded: {plan.refusal}")
    user = account_store.get_user(plan.upgrader)
    if user is None:
        raise MatrixError(400, "M_UNKNOWN", f"{plan.upgrader} has no account on this server")
    try:
        new_room = check_upgrade_room(user=user, room_id=plan.room_id, new_version=plan.to_version)
    except MatrixError as exc:
        record_audit(actor=actor, action="upgrade_room", target=plan.room_id, params=plan.as_json(),
                     result="failed", error=exc.error)  # fmt: skip
        raise
    record_audit(
        actor=actor,
        action="upgrade_room",
        target=plan.room_id,
        params={**plan.as_json(), "new_room_id": new_room},
    )
    return new_room
