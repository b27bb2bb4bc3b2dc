"""Push rules and the notification list (spec: client-server API "Push Notifications").

Note the trailing slashes of ``GET /pushrules/`` and ``GET /pushrules/global/``:
those are the spec's paths.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import push_rules as actions
from dagcore.actions.account_data import get_ignored_users
from dagcore.events_format import serialize_stored_events
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint()
def get_all(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushrules/"""
    return {"global": actions.get_ruleset(user_id=ctx.user_id)}


@endpoint()
def get_global(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushrules/global/"""
    return actions.get_ruleset(user_id=ctx.user_id)


@endpoint()
def get_rule(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    return actions.access_rule(user_id=ctx.user_id, kind=kind, rule_id=rule_id)


@endpoint()
def put_rule(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    rule = inputs.parse_push_rule(
        kind=kind,
        rule_id=rule_id,
        body=ctx.json_object(),
        before=ctx.query.get("before"),
        after=ctx.query.get("after"),
    )
    actions.check_put_rule(user_id=ctx.user_id, rule=rule)
    return {}


@endpoint()
def delete_rule(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    actions.check_delete_rule(user_id=ctx.user_id, kind=kind, rule_id=rule_id)
    return {}


@endpoint()
def get_enabled(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    return {"enabled": actions.access_rule(user_id=ctx.user_id, kind=kind, rule_id=rule_id)["enabled"]}


@endpoint()
def put_enabled(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    enabled = inputs.parse_rule_enabled(ctx.json_object())
    actions.check_set_rule_enabled(user_id=ctx.user_id, kind=kind, rule_id=rule_id, enabled=enabled)
    return {}


@endpoint()
def get_actions(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    return {"actions": actions.access_rule(user_id=ctx.user_id, kind=kind, rule_id=rule_id)["actions"]}


@endpoint()
def put_actions(ctx: RequestContext, kind: str, rule_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    rule_actions = inputs.parse_rule_actions(ctx.json_object())
    actions.check_set_rule_actions(user_id=ctx.user_id, kind=kind, rule_id=rule_id, actions=rule_actions)
    return {}


@endpoint()
def get_notifications(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/notifications"""
    limit = ctx.query_int("limit", default=actions.DEFAULT_NOTIFICATIONS_LIMIT, minimum=1)
    assert limit is not None
    limit = min(limit, actions.MAX_NOTIFICATIONS_LIMIT)
    only = ctx.query.get("only")
    items, next_token = actions.get_notifications(
        user_id=ctx.user_id,
        from_token=ctx.query.get("from") or None,
        limit=limit,
        only_highlight=only == "highlight",
        ignored_users=get_ignored_users(user_id=ctx.user_id),
    )
    events = serialize_stored_events([i.stored for i in items])
    out: dict[str, Any] = {
        "notifications": [
            {
                "actions": list(item.actions),
                "event": event,
                "read": item.read,
                "room_id": item.room_id,
                "ts": item.stored.event.origin_server_ts,
            }
            for item, event in zip(items, events, strict=True)
        ]
    }
    if next_token is not None:
        out["next_token"] = next_token
    return out


routes: list[URLPattern] = [
    client_route("pushrules/", methods(GET=get_all)),
    client_route("pushrules/global/", methods(GET=get_global)),
    client_route(
        "pushrules/global/<kind>/<rule_id>", methods(GET=get_rule, PUT=put_rule, DELETE=delete_rule)
    ),
    client_route("pushrules/global/<kind>/<rule_id>/enabled", methods(GET=get_enabled, PUT=put_enabled)),
    client_route("pushrules/global/<kind>/<rule_id>/actions", methods(GET=get_actions, PUT=put_actions)),
    client_route("notifications", methods(GET=get_notifications)),
]
