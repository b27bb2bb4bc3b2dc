"""Server-side search (spec: client-server API "Server Side Search" — ``POST /search``)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import search as actions
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods
from tribune.views.events import room_token, serialize_events


@endpoint()
def search(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/search"""
    criteria = inputs.parse_search_criteria(ctx.json_object())
    before = inputs.parse_search_batch(ctx.query.get("next_batch"))
    outcome = actions.search_room_events(user_id=ctx.user_id, criteria=criteria, before=before)
    results = []
    for result in outcome.results:
        events = serialize_events(ctx, [*result.before, result.stored, *result.after])
        n = len(result.before)
        item: dict[str, Any] = {"rank": result.rank, "result": events[n]}
        if result.start is not None and result.end is not None:
            context: dict[str, Any] = {
                "events_before": events[:n],
                "events_after": events[n + 1 :],
                "start": room_token(result.start),
                "end": room_token(result.end),
            }
            if outcome.profiles is not None:
                senders = {e["sender"] for e in events}
                context["profile_info"] = {
                    user: {
                        k: v
                        for k, v in zip(("displayname", "avatar_url"), profile, strict=True)
                        if v is not None
                    }
                    for user, profile in outcome.profiles.items()
                    if user in senders
                }
            item["context"] = context
        results.append(item)
    room_events: dict[str, Any] = {
        "count": outcome.count,
        "highlights": outcome.highlights,
        "results": results,
    }
    if outcome.next_batch is not None:
        room_events["next_batch"] = outcome.next_batch
    if outcome.state is not None:
        room_events["state"] = {
            room_id: serialize_events(ctx, events, relations=False)
            for room_id, events in outcome.state.items()
        }
    if outcome.group_by:
        groups: dict[str, dict[str, Any]] = {}
        for key in outcome.group_by:
            grouped: dict[str, list[str]] = {}
            for result in outcome.results:
                value = result.stored.event.room_id if key == "room_id" else result.stored.event.sender
                grouped.setdefault(value, []).append(result.stored.event.event_id)
            groups[key] = {
                value: {"results": ids, "order": order} for order, (value, ids) in enumerate(grouped.items())
            }
        room_events["groups"] = groups
    return {"search_categories": {"room_events": room_events}}


routes: list[URLPattern] = [client_route("search", methods(POST=search))]
