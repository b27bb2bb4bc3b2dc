"""``GET /sync`` (spec: client-server API "Syncing").

An async view: the response is built in a thread (database work), and an
incremental sync with nothing new waits on the event loop — holding neither a
thread nor a database connection — until ``tribune.sync.notifier`` wakes it
or ``timeout`` runs out. It then answers with a ``next_batch`` the client can
use again, as Synapse does.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from django.urls import URLPattern

from dagcore.actions.filters import FilterError, FilterNotFound, resolve_sync_filter
from dagcore.actions.presence import sync_presence_wanted
from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store
from dagcore.store.transaction import release_connection
from dagcore.sync import SyncRequest, SyncResult, build_sync_response
from tribune.http import RequestContext, client_route, endpoint
from tribune.inputs import SyncQuery, parse_sync_query
from tribune.sync import notifier


def _first_pass(ctx: RequestContext, query: SyncQuery) -> tuple[SyncRequest, SyncResult]:
    """Authenticate, resolve the filter and build, marking the user online (in a thread)."""
    try:
        ctx.prepare()
        user_id = ctx.user_id
        try:
            sync_filter = resolve_sync_filter(user_id=user_id, value=query.filter)
        except FilterNotFound:
            raise MatrixError(400, "M_INVALID_PARAM", "No such filter for this user") from None
        except FilterError as exc:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {exc}") from None
        params = SyncRequest(
            user_id=user_id,
            device_id=ctx.device_id,
            device_key=txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id),
            since=query.since,
            full_state=query.full_state,
            filter=sync_filter,
            presence=sync_presence_wanted(query.set_presence),
        )
        result = build_sync_response(request=params)
        # A woken long-poll's rebuild leaves presence alone (the first pass set it).
        return replace(params, presence=None), result
    finally:
        release_connection()  # back to the pool: a long-poll must not hold a connection


def _rebuild(params: SyncRequest) -> SyncResult:
    try:
        return build_sync_response(request=params)
    finally:
        release_connection()


#: Syncs built at once, by a pool of long-lived threads (never a thread per request).
#: One event wakes every member of its room together; their builds are mostly CPU work
#: under one interpreter lock, so running them all at once makes each take about as long
#: as all of them, while a few at a time (enough to overlap some builds' database round
#: trips with others' Python) lets the first answers leave early. Measured with 20 woken
#: members (bench/client_api_bench.py): 2-6 at a time answer ~10% sooner than all at once.
MAX_CONCURRENT_BUILDS = 6
_builders = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_BUILDS, thread_name_prefix="dagma-sync")
_first_pass_in_pool = sync_to_async(_first_pass, thread_sensitive=False, executor=_builders)
_rebuild_in_pool = sync_to_async(_rebuild, thread_sensitive=False, executor=_builders)


# Authenticated in the thread that builds the first answer (``_first_pass``): one thread
# hop per answer, into a pool thread, on the hottest path of the server; served without
# Django's request handler (``asgi_direct``, see ``dagma_project.asgi.common.DirectViews``).
@endpoint(methods=("GET",), allow_guest=True, deferred_auth=True)
async def sync(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/sync"""
    notifier.ensure_started()
    query = parse_sync_query(ctx.request)
    generation = notifier.registry.generation
    params, result = await _first_pass_in_pool(ctx, query)
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
        result = await _rebuild_in_pool(params)
        if result.has_news:
            return result.body


sync.asgi_direct = ("GET",)  # type: ignore[attr-defined]

routes: list[URLPattern] = [client_route("sync", sync)]
