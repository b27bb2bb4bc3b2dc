"""``GET /sync`` (spec: client-server API "Syncing").

An async view: the response is built in a thread (database work), and an
incremental sync with nothing new waits on the event loop — holding neither a
thread nor a database connection — until ``tribune.sync.notifier`` wakes it
or ``timeout`` runs out. It then answers with a ``next_batch`` the client can
use again, as Synapse does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.urls import URLPattern

from dagcore.actions.filters import FilterError, FilterNotFound, resolve_sync_filter
from dagcore.actions.presence import do_sync_presence
from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store
from dagcore.store.transaction import release_connection
from dagcore.sync import SyncRequest, SyncResult, build_sync_response
from tribune.http import RequestContext, client_route, endpoint
from tribune.inputs import SyncQuery, parse_sync_query
from tribune.sync import notifier


def _first_pass(ctx: RequestContext, query: SyncQuery) -> tuple[SyncRequest, SyncResult]:
    """Authenticate, resolve the filter, mark the user online and build (in a thread)."""
    try:
        ctx.prepare()
        user_id = ctx.user_id
        try:
            sync_filter = resolve_sync_filter(user_id=user_id, value=query.filter)
        except FilterNotFound:
            raise MatrixError(400, "M_INVALID_PARAM", "No such filter for this user") from None
        except FilterError as exc:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {exc}") from None
        do_sync_presence(user_id=user_id, set_presence=query.set_presence)
        params = SyncRequest(
            user_id=user_id,
            device_id=ctx.device_id,
            device_key=txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id),
            since=query.since,
            full_state=query.full_state,
            filter=sync_filter,
        )
        return params, build_sync_response(request=params)
    finally:
        release_connection()  # back to the pool: a long-poll must not hold a connection


def _rebuild(params: SyncRequest) -> SyncResult:
    try:
        return build_sync_response(request=params)
    finally:
        release_connection()


#: Woken long-polls rebuilt at once. One event wakes every member of its room together;
#: their rebuilds are mostly CPU work under one interpreter lock, so running them all at
#: once makes each take about as long as all of them, while a few at a time (enough to
#: overlap some rebuilds' database round trips with others' Python) lets the first answers
#: leave early. Measured with 20 woken members (bench/client_api_bench.py): 2-6 at a time
#: answer ~10% sooner than all at once.
MAX_CONCURRENT_REBUILDS = 6
_rebuild_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


async def _rebuild_woken(params: SyncRequest) -> SyncResult:
    loop = asyncio.get_running_loop()
    slots = _rebuild_slots.get(loop)
    if slots is None:
        slots = _rebuild_slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_REBUILDS)
    async with slots:
        return await sync_to_async(_rebuild)(params)


# Authenticated in the thread that builds the first answer (``_first_pass``): no extra
# thread hop on the hottest path of the server.
@endpoint(methods=("GET",), allow_guest=True, deferred_auth=True)
async def sync(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/sync"""
    notifier.ensure_started()
    query = parse_sync_query(ctx.request)
    generation = notifier.registry.generation
    params, result = await sync_to_async(_first_pass)(ctx, query)
    if result.has_news or query.timeout_ms == 0 or params.since is None or params.full_state:
        return result.body
    return await _wait_for_news(params, result, generation, query.timeout_ms)


async def _wait_for_news(
    params: SyncRequest, result: SyncResult, generation: int, timeout_ms: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    registry = notifier.registry
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return result.body
        waiter = registry.register(params.user_id, result.room_ids)
        try:
            if not registry.missed_since(generation, params.user_id, result.room_ids):
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    return result.body
        finally:
            registry.unregister(waiter)
        generation = registry.generation
        result = await _rebuild_woken(params)
        if result.has_news:
            return result.body


routes: list[URLPattern] = [client_route("sync", sync)]
