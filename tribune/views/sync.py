"""``GET /sync`` (spec: client-server API "Syncing").

An async view: the response is built in a thread (database work), and an
incremental sync with nothing new waits on the event loop — holding neither a
thread nor a database connection — until ``tribune.sync.notifier`` wakes it
or ``timeout`` runs out. It then answers with a ``next_batch`` the client can
use again, as Synapse does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from django.urls import URLPattern

from dagcore.actions.filters import FilterError, FilterNotFound, resolve_sync_filter
from dagcore.actions.presence import sync_presence_wanted
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.http.tokens import extract_access_token
from dagcore.store import txns as txn_store
from dagcore.store.transaction import release_connection
from dagcore.sync import SyncRequest, SyncResult, build_sync_response
from dagcore.sync.basis import SyncBasis, TimelineNews
from dagcore.sync.news import answer_from_news
from tribune.http import RequestContext, client_route, endpoint
from tribune.inputs import SyncQuery, parse_sync_query
from tribune.sync import answered, notifier
from tribune.sync.builds import MAX_BATCH, MAX_CONCURRENT_BUILDS, BatchedPool


def _sync_request(ctx: RequestContext, query: SyncQuery) -> SyncRequest:
    """Authenticate and resolve the filter (in a thread: both may read the database)."""
    ctx.prepare()
    user_id = ctx.user_id
    try:
        sync_filter = resolve_sync_filter(user_id=user_id, value=query.filter)
    except FilterNotFound:
        raise MatrixError(400, "M_INVALID_PARAM", "No such filter for this user") from None
    except FilterError as exc:
        raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {exc}") from None
    return SyncRequest(
        user_id=user_id,
        device_id=ctx.device_id,
        device_key=txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id),
        since=query.since,
        full_state=query.full_state,
        filter=sync_filter,
        presence=sync_presence_wanted(query.set_presence),
    )


@dataclass(frozen=True)
class FirstPass:
    #: The request, authenticated; its rebuilds leave presence alone (the first pass set it).
    params: SyncRequest
    #: None: the request follows a remembered answer and nothing changed for it since
    #: (``tribune.sync.answered``): nothing was built, it waits.
    result: SyncResult | None
    #: ``WaiterRegistry.generation`` read before ``result`` was built (or the remembered one).
    generation: int
    presence_checked_ms: int | None
    #: The rooms the long-poll watches.
    room_ids: frozenset[str]
    #: What the answer it follows (or ``result``) read, for an answer from timeline news.
    basis: SyncBasis | None


def _first_pass(ctx: RequestContext, query: SyncQuery, known: answered.Answered | None) -> FirstPass:
    """Authenticate, resolve the filter and build, marking the user online (in a thread).

    A request that follows a remembered answer builds only if something changed for it
    since that answer; its presence was checked recently enough (``answered.followed``).
    """
    params = _sync_request(ctx, query)
    registry = notifier.registry
    if known is not None and (params.user_id, params.device_id) == (known.user_id, known.device_id):
        params = replace(params, presence=None)
        if not registry.missed_since(known.generation, known.user_id, known.room_ids):
            return FirstPass(
                params, None, known.generation, known.presence_checked_ms, known.room_ids, known.basis
            )
        if known.basis is not None:
            # Something came since the answer it follows (a busy room outpaces its members'
            # round trips): new timeline events alone are answered from them.
            generation, news = registry.timeline_news(
                known.generation, known.user_id, known.room_ids, known.basis.now.events
            )
            result = _answer(params, known.basis, news)
            return FirstPass(
                params, result, generation, known.presence_checked_ms, result.room_ids, result.basis
            )
        presence_checked_ms = known.presence_checked_ms
    else:
        presence_checked_ms = answered.presence_checked_at(query, now_ms())
    generation = registry.generation
    result = build_sync_response(request=params)
    return FirstPass(
        replace(params, presence=None), result, generation, presence_checked_ms, result.room_ids, result.basis
    )


def _rebuild(params: SyncRequest) -> SyncResult:
    return build_sync_response(request=params)


def _answer(params: SyncRequest, basis: SyncBasis | None, news: TimelineNews | None) -> SyncResult:
    """From the timeline news alone where it can tell (``dagcore.sync.news``), else a full build."""
    if basis is not None and news is not None:
        result = answer_from_news(params, basis, news, now_ms=now_ms())
        if result is not None:
            return result
    return build_sync_response(request=params)


#: Syncs are built by two long-lived threads (never a thread per request), several per hop
#: (``tribune.sync.builds``). After each batch the thread's connection goes back to the
#: pool: a long-poll must not hold one while it waits.
_builders = BatchedPool(
    "dagma-sync", threads=MAX_CONCURRENT_BUILDS, max_batch=MAX_BATCH, after_batch=release_connection
)


# Authenticated in the thread that builds the first answer (``_first_pass``): one thread
# hop per answer at most, shared with other requests' builds (``tribune.sync.builds``), on
# the hottest path of the server; served without Django's request handler (``asgi_direct``,
# see ``dagma_project.asgi.common.DirectViews``).
@endpoint(methods=("GET",), allow_guest=True, deferred_auth=True)
async def sync(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/sync"""
    notifier.ensure_started()
    query = parse_sync_query(ctx.request)
    token = extract_access_token(ctx.request)
    first = await _builders.run(_first_pass, ctx, query, answered.followed(token, query))
    generation, result = first.generation, first.result
    if result is None or not (
        result.has_news or query.timeout_ms == 0 or query.since is None or query.full_state
    ):
        generation, result = await _wait_for_news(
            first.params, result, first.room_ids, generation, query.timeout_ms, first.basis
        )
    answered.remember(
        token,
        query,
        first.params,
        result,
        generation=generation,
        presence_checked_ms=first.presence_checked_ms,
    )
    return result.body


async def _wait_for_news(
    params: SyncRequest,
    result: SyncResult | None,
    room_ids: frozenset[str],
    generation: int,
    timeout_ms: int,
    basis: SyncBasis | None,
) -> tuple[int, SyncResult]:
    """Wait for a change to these rooms or the user, then build; ``(generation, answer)``,
    the generation read before the answer's build. ``result`` None: nothing was built yet
    (the request follows a remembered answer); at the timeout the answer is built then.
    Woken by new timeline events only, the answer is made from them and ``basis``, what
    the last build read (``dagcore.sync.news``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    registry = notifier.registry
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        waiter = registry.register(params.user_id, room_ids)
        try:
            if not registry.missed_since(generation, params.user_id, room_ids):
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    break
        finally:
            registry.unregister(waiter)
        news = None
        if basis is not None:
            generation, news = registry.timeline_news(generation, params.user_id, room_ids, basis.now.events)
        else:
            generation = registry.generation
        result = await _builders.run(_answer, params, basis, news)
        room_ids, basis = result.room_ids, result.basis
        if result.has_news:
            return generation, result
    if result is None:
        generation = registry.generation
        result = await _builders.run(_rebuild, params)
    return generation, result


sync.asgi_direct = ("GET",)  # type: ignore[attr-defined]

routes: list[URLPattern] = [client_route("sync", sync)]
