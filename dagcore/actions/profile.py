"""Profiles of local users: display name and avatar (spec: client-server API "Profiles").

https://spec.matrix.org/v1.19/client-server-api/#profiles — a change is also
announced in every room the user is joined to, as a new ``m.room.member`` event
carrying the new ``displayname``/``avatar_url`` (spec: "Events on Change of
Profile Information"), which is how other members learn of it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

from dagcore.actions.persist_event import send_local_event
from dagcore.clock import now_ms
from dagcore.federation.queries import query_remote_profile
from dagcore.http.errors import MatrixError
from dagcore.models import User
from dagcore.protocol.identifiers import is_valid_server_name, is_valid_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import remote_profiles as remote_profile_store
from dagcore.store import user_directory as directory_store

logger = logging.getLogger(__name__)

#: The profile fields this server stores (``m.profile_fields`` beyond these is not supported).
PROFILE_FIELDS = ("displayname", "avatar_url")
#: Longest display name, in characters (as other servers enforce).
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 512

#: How long another server's profile answer is reused (spec: "Requesting servers MAY wish to
#: cache the response to this query"); short, as the user may change it at any time.
REMOTE_PROFILE_CACHE_MS = 5 * 60 * 1000

_MXC_RE = re.compile(r"^mxc://([^/]+)/([A-Za-z0-9_-]+)$")
#: Keys of the old member event that belong to the original join, not to the profile
#: change: a restricted-join authorisation or an invite's signature must not be replayed.
_NOT_CARRIED_OVER = ("reason", "join_authorised_via_users_server", "third_party_invite", "is_direct")


def is_valid_mxc_uri(value: str) -> bool:
    """``mxc://<server-name>/<media-id>`` (spec: "Matrix Content (mxc://) URIs")."""
    m = _MXC_RE.match(value)
    return m is not None and is_valid_server_name(m.group(1))


def access_profile(*, user_id: str) -> User:
    """The local account whose profile is asked for; M_NOT_FOUND for unknown, remote or
    deactivated users (remote profiles: :func:`get_remote_profile`)."""
    if not user_id.startswith("@") or user_id.partition(":")[2] != get_server_name():
        raise MatrixError(404, "M_NOT_FOUND", "Profile not found")
    user = account_store.get_user(user_id)
    if user is None or user.deactivated:
        raise MatrixError(404, "M_NOT_FOUND", "Profile not found")
    return user


def is_local_user_id(user_id: str) -> bool:
    return user_id.startswith("@") and user_id.partition(":")[2] == get_server_name()


def get_federated_profile(*, user_id: str, field: str | None) -> dict[str, str]:
    """``GET /_matrix/federation/v1/query/profile``: the public profile of one of our users.

    400 for a user of another server, 404 for unknown or deactivated users and for
    fields this server does not store (spec: "the queried field does not exist");
    unset fields are omitted. Profiles are public to other servers, as in Synapse
    (``require_auth_for_profile_requests`` concerns clients; the asking server has
    authenticated itself already). ``allow_profile_lookup_over_federation`` off (Synapse's
    option, default on): 403 ``M_FORBIDDEN`` for every lookup, as Synapse answers.
    """
    if not settings.DAGMA.allow_profile_lookup_over_federation:
        raise MatrixError(403, "M_FORBIDDEN", "Profile lookup over federation is disabled on this homeserver")
    if not is_valid_user_id(user_id) or not is_local_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "user_id must be a user of this server")
    if field is not None and field not in PROFILE_FIELDS:
        raise MatrixError(404, "M_NOT_FOUND", "Profile field not found")
    profile = get_profile(user=access_profile(user_id=user_id))
    return {k: v for k, v in profile.items() if field is None or k == field}


def _checked_remote_profile(answer: dict[str, Any]) -> dict[str, str]:
    """The fields of another server's answer we pass on: strings of the right shape only."""
    out: dict[str, str] = {}
    name = answer.get("displayname")
    if isinstance(name, str) and name and len(name) <= MAX_DISPLAYNAME_LENGTH:
        out["displayname"] = name
    avatar = answer.get("avatar_url")
    if isinstance(avatar, str) and len(avatar) <= MAX_AVATAR_URL_LENGTH and is_valid_mxc_uri(avatar):
        out["avatar_url"] = avatar
    return out


def get_remote_profile(*, user_id: str) -> dict[str, str]:
    """Another server's user's profile: from the short cache, else asked over federation."""
    if not is_valid_user_id(user_id):
        raise MatrixError(404, "M_NOT_FOUND", "Profile not found")
    now = now_ms()
    cached = remote_profile_store.get_cached_profile(
        user_id=user_id, fetched_after=now - REMOTE_PROFILE_CACHE_MS
    )
    if cached is None:
        answer = _checked_remote_profile(
            query_remote_profile(user_id=user_id, server_name=user_id.partition(":")[2])
        )
        remote_profile_store.store_profile(
            user_id=user_id,
            displayname=answer.get("displayname"),
            avatar_url=answer.get("avatar_url"),
            fetched_ts=now,
        )
        return answer
    out: dict[str, str] = {}
    if cached.displayname is not None:
        out["displayname"] = cached.displayname
    if cached.avatar_url is not None:
        out["avatar_url"] = cached.avatar_url
    return out


def get_any_profile(*, user_id: str) -> dict[str, str]:
    """``GET /_matrix/client/v3/profile/{userId}``: ours from the database, others' over federation."""
    if is_local_user_id(user_id):
        return get_profile(user=access_profile(user_id=user_id))
    return get_remote_profile(user_id=user_id)


def do_purge_remote_profiles() -> int:
    """Beat job: forget cached profile answers past their time."""
    return remote_profile_store.delete_stale_profiles(fetched_before=now_ms() - REMOTE_PROFILE_CACHE_MS)


def get_profile(*, user: User) -> dict[str, str]:
    out: dict[str, str] = {}
    if user.displayname is not None:
        out["displayname"] = user.displayname
    if user.avatar_url is not None:
        out["avatar_url"] = user.avatar_url
    return out


def check_profile_value(*, field: str, value: Any) -> str | None:
    """The value to store (None clears the field), or 400 with the reason."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_INVALID_PARAM", f"{field} must be a string")
    if field == "displayname":
        if len(value) > MAX_DISPLAYNAME_LENGTH:
            raise MatrixError(
                400,
                "M_INVALID_PARAM",
                f"displayname may not be longer than {MAX_DISPLAYNAME_LENGTH} characters",
            )
        return value
    if len(value) > MAX_AVATAR_URL_LENGTH or not is_valid_mxc_uri(value):
        raise MatrixError(400, "M_INVALID_PARAM", "avatar_url must be an mxc:// URI")
    return value


def do_set_profile_field(*, user: User, field: str, value: str | None) -> list[str]:
    """Store the new value and announce it in every joined room; returns the rooms updated."""
    assert field in PROFILE_FIELDS
    if getattr(user, field) == value:
        return []
    account_store.set_profile(user, fields=(field,), **{field: value})
    return do_propagate_profile(user=user)


def do_propagate_profile(*, user: User) -> list[str]:
    """Send a new join event with the current profile into each joined room where it differs."""
    updated: list[str] = []
    for room_id, old in directory_store.get_joined_member_contents(user.user_id):
        content = {k: v for k, v in old.items() if k not in _NOT_CARRIED_OVER}
        content["membership"] = "join"
        for field in PROFILE_FIELDS:
            value = getattr(user, field)
            if value is None:
                content.pop(field, None)
            else:
                content[field] = value
        if content == {k: v for k, v in old.items() if k not in _NOT_CARRIED_OVER}:
            continue
        try:
            send_local_event(
                room_id=room_id, sender=user.user_id, event_type="m.room.member", content=content,
                state_key=user.user_id,
            )  # fmt: skip
        except MatrixError as exc:
            # The profile itself is saved; one room refusing the update must not undo it.
            logger.warning("profile update of %s refused in %s: %s", user.user_id, room_id, exc)
            continue
        updated.append(room_id)
    return updated
