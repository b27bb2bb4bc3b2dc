"""Profiles (spec: https://spec.matrix.org/v1.19/client-server-api/#profiles) and the
user directory (https://spec.matrix.org/v1.19/client-server-api/#user-directory)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions import profile as profile_actions
from dagcore.actions import user_directory as directory_actions
from dagcore.http.errors import MatrixError
from dagcore.models import User
from tribune.http import RequestContext, authenticate, client_route, endpoint, methods

#: Spec: ``avatar_url``, ``displayname``, ``m.tz`` or a namespaced custom key.
_KEY_NAME_RE = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")


def _readable_profile(ctx: RequestContext, user_id: str) -> dict[str, str]:
    """The profile, local or (over federation) remote; a token first with
    ``require_auth_for_profile_requests`` (as Synapse, for both)."""
    if settings.DAGMA.require_auth_for_profile_requests and ctx.user is None:
        authenticate(ctx, required=True, allow_guest=True)
    return profile_actions.get_any_profile(user_id=user_id)


def _own_field(ctx: RequestContext, user_id: str, key_name: str) -> User:
    """The requester's own account, if ``key_name`` is a field they may change."""
    user = ctx.require_user()
    if not _KEY_NAME_RE.match(key_name) or len(key_name.encode()) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid profile key")
    if user_id != user.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You can only change your own profile")
    if key_name not in profile_actions.PROFILE_FIELDS:
        raise MatrixError(403, "M_FORBIDDEN", f"This server does not store the profile field {key_name}")
    return user


@endpoint(auth="optional", allow_guest=True)
def get_profile(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/profile/{userId}"""
    return _readable_profile(ctx, user_id)


@endpoint(auth="optional", allow_guest=True)
def get_profile_field(ctx: RequestContext, user_id: str, key_name: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
    profile = _readable_profile(ctx, user_id)
    if key_name not in profile_actions.PROFILE_FIELDS:
        raise MatrixError(404, "M_NOT_FOUND", "Profile field not found")
    # An unset display name or avatar is an empty object, as other servers answer.
    return {k: v for k, v in profile.items() if k == key_name}


@endpoint(allow_guest=True)
def set_profile_field(ctx: RequestContext, user_id: str, key_name: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
    account_actions.check_not_suspended(ctx.user)
    user = _own_field(ctx, user_id, key_name)
    body = ctx.json_object()
    if key_name not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"The body must hold {key_name}")
    value = profile_actions.check_profile_value(field=key_name, value=body[key_name])
    profile_actions.do_set_profile_field(user=user, field=key_name, value=value)
    return {}


@endpoint(allow_guest=True)
def delete_profile_field(ctx: RequestContext, user_id: str, key_name: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
    account_actions.check_not_suspended(ctx.user)
    user = _own_field(ctx, user_id, key_name)
    profile_actions.do_set_profile_field(user=user, field=key_name, value=None)
    return {}


@endpoint()
def search_user_directory(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/user_directory/search"""
    body = ctx.json_object()
    term = body.get("search_term")
    if not isinstance(term, str):
        raise MatrixError(
            400, "M_MISSING_PARAM" if term is None else "M_INVALID_PARAM", "search_term must be a string"
        )
    limit = body.get("limit", directory_actions.DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    results, limited = directory_actions.search_user_directory(
        searcher=ctx.user_id, term=term, limit=min(limit, directory_actions.MAX_LIMIT)
    )
    out = []
    for entry in results:
        item: dict[str, Any] = {"user_id": entry.user_id}
        if entry.display_name is not None:
            item["display_name"] = entry.display_name
        if entry.avatar_url is not None:
            item["avatar_url"] = entry.avatar_url
        out.append(item)
    return {"results": out, "limited": limited}


routes: list[URLPattern] = [
    client_route("profile/<user_id>", methods(GET=get_profile)),
    client_route(
        "profile/<user_id>/<key_name>",
        methods(GET=get_profile_field, PUT=set_profile_field, DELETE=delete_profile_field),
    ),
    client_route("user_directory/search", methods(POST=search_user_directory)),
]
