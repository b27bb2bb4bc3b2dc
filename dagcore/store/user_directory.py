"""The user directory and the profile as it appears in rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3user_directorysearch —
a searcher sees at least the users who share a room with them and the users
joined to rooms with a ``public`` join rule or ``world_readable`` history. The
search is a query over ``RoomMembership`` (current joins, with each member's
display name in that room) and, for ``search_all_users``, over ``User``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, IntegerField, JSONField, Max, Min, Q, QuerySet, Value, When
from django.db.models.functions import Cast

from dagcore.models import CurrentStateEvent, RoomMembership, User


@dataclass(frozen=True)
class DirectoryEntry:
    user_id: str
    display_name: str | None
    avatar_url: str | None
    #: 0: the user ID's localpart or the display name starts with the term; 1: contains it.
    rank: int


def _public_room_nids() -> QuerySet[Any, Any]:
    """Rooms anyone may see the members of: public join rule or world-readable history."""
    return (
        CurrentStateEvent.objects.filter(
            state_key="", type__in=("m.room.join_rules", "m.room.history_visibility")
        )
        .annotate(pdu=Cast("event__json", output_field=JSONField()))
        .filter(
            Q(type="m.room.join_rules", pdu__content__join_rule="public")
            | Q(type="m.room.history_visibility", pdu__content__history_visibility="world_readable")
        )
        .values("room_id")
    )


def _rank(user_field: str, name_field: str, term: str) -> Case:
    return Case(
        When(
            Q(**{f"{user_field}__istartswith": "@" + term}) | Q(**{f"{name_field}__istartswith": term}),
            then=Value(0),
        ),
        default=Value(1),
        output_field=IntegerField(),
    )


def search_room_members(*, searcher: str, term: str, limit: int) -> list[DirectoryEntry]:
    """Up to ``limit`` users joined to a room the searcher shares or to a public room, matching ``term``."""
    shared = RoomMembership.objects.filter(user_id=searcher, membership="join").values("room_id")
    rows = (
        RoomMembership.objects.filter(membership="join")
        .filter(Q(room_id__in=shared) | Q(room_id__in=_public_room_nids()))
        .filter(Q(user_id__icontains=term) | Q(displayname__icontains=term))
        .values("user_id")
        .annotate(
            name=Max("displayname"),
            avatar=Max("avatar_url"),
            rank=Min(_rank("user_id", "displayname", term)),
        )
        .order_by("rank", "user_id")[:limit]
    )
    return [DirectoryEntry(r["user_id"], r["name"], r["avatar"], r["rank"]) for r in rows]


def search_local_users(*, term: str, limit: int) -> list[DirectoryEntry]:
    """Up to ``limit`` active, non-guest local accounts matching ``term`` (``search_all_users``)."""
    rows = (
        User.objects.filter(deactivated=False, is_guest=False)
        .filter(Q(user_id__icontains=term) | Q(displayname__icontains=term))
        .annotate(rank=_rank("user_id", "displayname", term))
        .order_by("rank", "user_id")
        .values("user_id", "displayname", "avatar_url", "rank")[:limit]
    )
    return [DirectoryEntry(r["user_id"], r["displayname"], r["avatar_url"], r["rank"]) for r in rows]


def get_local_profiles(user_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """``user_id -> (displayname, avatar_url)`` of the active local accounts among ``user_ids``."""
    if not user_ids:
        return {}
    return {
        uid: (name, avatar)
        for uid, name, avatar in User.objects.filter(user_id__in=user_ids, deactivated=False).values_list(
            "user_id", "displayname", "avatar_url"
        )
    }


def get_joined_member_contents(user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """``(room_id, content of the user's current m.room.member event)`` for every room they are joined to.

    One query; the profile update re-sends these with the new display name and avatar.
    """
    rows = RoomMembership.objects.filter(user_id=user_id, membership="join").values_list(
        "room__room_id", "event__json"
    )
    out: list[tuple[str, dict[str, Any]]] = []
    for room_id, pdu_json in rows:
        content = json.loads(pdu_json).get("content")
        out.append((room_id, content if isinstance(content, dict) else {}))
    return out
