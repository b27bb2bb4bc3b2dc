"""Rooms: forward extremities over the threshold, room versions in use."""

from __future__ import annotations

from django.conf import settings

from dagcore.doctor import OK, WARN, Verdict
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS
from dagcore.store import health as store

#: Room versions 1-5 predate the spec's modern rules (state res v2 came with v2, event IDs as
#: hashes with v3/v4, key validity with v5, integer power levels and the rest with v6+).
OLD_ROOM_VERSIONS = frozenset({"1", "2", "3", "4", "5"})


def check_extremities() -> Verdict:
    threshold = int(settings.DAGMA.forward_extremities_warn)
    count, worst_rooms = store.rooms_over_extremities(threshold=threshold)
    details = {
        "threshold": threshold,
        "rooms": [{"room_id": r.room_id, "count": r.count} for r in worst_rooms],
    }
    if not count:
        return Verdict(
            "extremities", OK, f"no room has more than {threshold} forward extremities", details=details
        )
    shown = ", ".join(f"{r.room_id} ({r.count})" for r in worst_rooms[:3])
    return Verdict(
        "extremities", WARN, f"{count} room(s) over {threshold} forward extremities: {shown}",
        fix="send a message in the room (it merges the extremities), or `manage.py dag inspect` them",
        details=details,
    )  # fmt: skip


def check_room_versions() -> Verdict:
    in_use = store.room_versions_in_use()
    old = {v: n for v, n in in_use.items() if v in OLD_ROOM_VERSIONS}
    unknown = {v: n for v, n in in_use.items() if v not in KNOWN_ROOM_VERSIONS}
    details = {"in_use": in_use, "old": old, "unstable": unknown}
    shown = ", ".join(f"v{v}: {n}" for v, n in in_use.items()) or "no rooms"
    if not old and not unknown:
        return Verdict("room_versions", OK, shown, details=details)
    flagged = [f"{n} room(s) on old v{v}" for v, n in old.items()] + [
        f"{n} room(s) on unstable {v}" for v, n in unknown.items()
    ]
    return Verdict(
        "room_versions", WARN, "; ".join(flagged),
        fix="upgrade them (room admins: /upgrade; operators: the rooms admin API / dagcore.actions.upgrade_room)",
        details=details,
    )  # fmt: skip
