"""Device lists and E2EE keys across servers: what we serve and how we use others'.

Spec: server-server API "End-to-End Encryption" and "Device Management"
(https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption,
#device-management).

* Serving (the Embassy): ``/user/devices``, ``/user/keys/query`` and
  ``/user/keys/claim`` answer only about our own users, with what any other user
  may see (no user-signing keys, no other users' signatures).
* Using (Tribune's ``/keys/query`` and ``/keys/claim``): a remote user who shares a
  room with one of ours is *tracked*: their server sends us ``m.device_list_update``
  EDUs, so their device list is cached (fetched once with ``/user/devices``, then kept
  fresh by the EDUs, fetched again after a gap). Other remote users are asked live.
  Servers that cannot be reached within the timeout, or answer something unusable,
  are listed in ``failures`` (spec: "If the homeserver could be reached, but the
  user or device was unknown, no failure is recorded").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dagcore.actions.device_lists import mark_remote_device_list_changed
from dagcore.actions.published_keys import get_published_keys
from dagcore.clock import now_ms
from dagcore.federation import user_keys as remote_api
from dagcore.federation.client import FederationError, FederationHttpError
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.server_keys import get_server_name
from dagcore.store import device_lists as device_list_store
from dagcore.store import e2e_keys as key_store
from dagcore.store import remote_devices as remote_store
from dagcore.store import transaction
from dagcore.store.transaction import release_all_connections

logger = logging.getLogger("dagma.e2ee")

#: Default and longest wait for other servers in one client request (spec ``timeout``: 10 s default).
DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 30_000
#: Servers asked at once for one client request.
MAX_PARALLEL_SERVERS = 8
#: ``GET /user/devices`` requests in flight at once to one server (one request per user).
MAX_PARALLEL_PER_SERVER = 8
#: From this many never-cached users of one server, their keys come in one ``/user/keys/query``.
BATCH_FROM = 10
#: The stream position of a list learnt from ``/user/keys/query`` (which has none): any update
#: about the user then shows a gap and resyncs the list.
UNKNOWN_STREAM_ID = 0


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def dump(value: Any) -> str:
    return encode_canonical_json(value).decode()


# --------------------------------------------------------------------------- serving


def get_user_devices_answer(*, user_id: str) -> dict[str, Any]:
    """``GET /user/devices/{userId}`` for one of our users (the caller checked it is ours).

    ``stream_id`` is the position of the user's last device change: the ``prev_id``
    our next ``m.device_list_update`` for the user will name. Display names are not
    shared (Synapse's ``allow_device_name_lookup_over_federation`` default: they leak
    what devices a user has to every server in every room).
    """
    published = get_published_keys([user_id])
    devices = [
        {"device_id": device_id, "keys": keys}
        for device_id, keys in sorted(published.devices.get(user_id, {}).items())
    ]
    answer: dict[str, Any] = {
        "user_id": user_id,
        "stream_id": device_list_store.get_last_device_stream_id(user_id=user_id) or 0,
        "devices": devices,
    }
    if user_id in published.master_keys:
        answer["master_key"] = published.master_keys[user_id]
    if user_id in published.self_signing_keys:
        answer["self_signing_key"] = published.self_signing_keys[user_id]
    return answer


def get_user_keys_answer(*, device_keys: dict[str, list[str]]) -> dict[str, Any]:
    """``POST /user/keys/query`` for our users among ``device_keys`` (others are not ours to tell)."""
    ours = get_server_name()
    local = [u for u in device_keys if server_of(u) == ours]
    published = get_published_keys(local)
    devices: dict[str, dict[str, Any]] = {}
    for user_id in local:
        wanted = device_keys[user_id]
        devices[user_id] = {
            d: k for d, k in published.devices.get(user_id, {}).items() if not wanted or d in wanted
        }
    return {
        "device_keys": devices,
        "master_keys": published.master_keys,
        "self_signing_keys": published.self_signing_keys,
    }


# --------------------------------------------------------------------------- using


@dataclass
class RemoteAnswer:
    """Remote users' keys gathered for one client request, and the servers that failed."""

    device_keys: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    master_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    self_signing_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)


def timeout_seconds(timeout_ms: object) -> float:
    if isinstance(timeout_ms, int) and not isinstance(timeout_ms, bool) and timeout_ms >= 0:
        return min(timeout_ms, MAX_TIMEOUT_MS) / 1000
    return DEFAULT_TIMEOUT_MS / 1000


def failure_of(exc: FederationError) -> dict[str, Any]:
    status = exc.status if isinstance(exc, FederationHttpError) else 503
    return {"status": status, "message": f"{exc.server_name[:255]}: {exc.reason[:500]}"}


T = TypeVar("T")


def _per_server(jobs: dict[str, Callable[[], T]]) -> dict[str, T | FederationError]:
    """Run one job per server, in parallel; each one's result or its federation error.

    The jobs only talk to the network: the database is written by the caller's thread.
    """

    def run(job: Callable[[], T]) -> T | FederationError:
        try:
            return job()
        except FederationError as exc:
            return exc

    def run_in_pool(job: Callable[[], T]) -> T | FederationError:
        try:
            return run(job)
        finally:
            release_all_connections()  # the client's discovery may have used the pool thread's own

    if not jobs:
        return {}
    if len(jobs) == 1:
        ((server, job),) = jobs.items()
        return {server: run(job)}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SERVERS, len(jobs))) as pool:
        futures = {server: pool.submit(run_in_pool, job) for server, job in jobs.items()}
        return {server: f.result() for server, f in futures.items()}


def fetch_device_lists(
    users: list[str], *, timeout: float, cold: frozenset[str] = frozenset()
) -> list[remote_api.RemoteDeviceList]:
    """The device lists of one server's users.

    ``cold`` users (never cached), when there are ``BATCH_FROM`` or more of them, are asked in
    one ``/user/keys/query``: one request per user (``/user/devices``) meets the peer's
    ``rc_federation`` (Synapse's default delays each request beyond 10 a second by 500 ms),
    so 100 users took 7-12 s (bench/results). That answer carries no stream position: the
    list is cached at position 0, so the first ``m.device_list_update`` about the user finds a
    gap in ``prev_id`` and resyncs it by ``/user/devices`` (spec "Device Management"), as
    Synapse does. The others (and stale lists) are fetched one ``/user/devices`` per user,
    ``MAX_PARALLEL_PER_SERVER`` at a time. The first failure fails the server."""
    batched = sorted(u for u in users if u in cold) if len(cold & set(users)) >= BATCH_FROM else []
    single = [u for u in users if u not in batched]
    lists = _device_lists_from_keys_query(batched, timeout=timeout) if batched else []
    if len(single) <= 1:
        return lists + [remote_api.fetch_user_devices(user_id=u, timeout=timeout) for u in single]

    def one(user_id: str) -> remote_api.RemoteDeviceList:
        try:
            return remote_api.fetch_user_devices(user_id=user_id, timeout=timeout)
        finally:
            release_all_connections()  # discovery may have used this thread's own connection

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PER_SERVER, len(single))) as pool:
        return lists + list(pool.map(one, single))


def _device_lists_from_keys_query(users: list[str], *, timeout: float) -> list[remote_api.RemoteDeviceList]:
    answer = remote_api.query_user_keys(
        server=server_of(users[0]), device_keys={u: [] for u in users}, timeout=timeout
    )
    return [
        remote_api.RemoteDeviceList(
            user_id=u,
            stream_id=UNKNOWN_STREAM_ID,
            devices=[(d, keys, None) for d, keys in sorted(answer.device_keys.get(u, {}).items())],
            master_key=answer.master_keys.get(u),
            self_signing_key=answer.self_signing_keys.get(u),
        )
        for u in users
    ]


def get_remote_keys(*, device_keys: dict[str, list[str]], timeout_ms: object = None) -> RemoteAnswer:
    """Keys of remote users for Tribune's ``/keys/query``: tracked users from the cache
    (fetching their list first when it is missing or stale), the others live."""
    out = RemoteAnswer()
    if not device_keys:
        return out
    timeout = timeout_seconds(timeout_ms)
    tracked = remote_store.get_tracked_users(device_keys)
    cached = remote_store.get_cached_lists(tracked)
    to_fetch = sorted(u for u in tracked if u not in cached or cached[u].stale)
    live: dict[str, dict[str, list[str]]] = {}
    for user_id, devices in device_keys.items():
        if user_id not in tracked:
            live.setdefault(server_of(user_id), {})[user_id] = devices

    fetch_jobs: dict[str, Callable[[], list[remote_api.RemoteDeviceList]]] = {}
    by_server: dict[str, list[str]] = {}
    for user_id in to_fetch:
        by_server.setdefault(server_of(user_id), []).append(user_id)
    for server, users in by_server.items():
        fetch_jobs[server] = lambda users=users: fetch_device_lists(  # type: ignore[misc]
            users, timeout=timeout, cold=frozenset(u for u in users if u not in cached)
        )
    query_jobs: dict[str, Callable[[], remote_api.RemoteKeys]] = {
        server: (lambda server=server, asked=asked: remote_api.query_user_keys(  # type: ignore[misc]
            server=server, device_keys=asked, timeout=timeout
        ))
        for server, asked in live.items()
    }  # fmt: skip
    fetched = _per_server(fetch_jobs)
    queried = _per_server(query_jobs)

    for server, result in fetched.items():
        if isinstance(result, FederationError):
            out.failures[server] = failure_of(result)
            continue
        for device_list in result:
            store_device_list(device_list)
    cached_users = [u for u in tracked if server_of(u) not in out.failures]
    cached_devices = remote_store.get_devices(cached_users)
    cross_signing = remote_store.get_cross_signing_keys(cached_users)
    for user_id in cached_users:
        wanted = device_keys[user_id]
        out.device_keys[user_id] = {
            d: keys
            for d, (keys, _) in cached_devices.get(user_id, {}).items()
            if keys is not None and (not wanted or d in wanted)
        }
        if "master" in cross_signing.get(user_id, {}):
            out.master_keys[user_id] = cross_signing[user_id]["master"]
        if "self_signing" in cross_signing.get(user_id, {}):
            out.self_signing_keys[user_id] = cross_signing[user_id]["self_signing"]
    for server, answer in queried.items():
        if isinstance(answer, FederationError):
            out.failures[server] = failure_of(answer)
            continue
        for user_id in live[server]:
            out.device_keys[user_id] = answer.device_keys.get(user_id, {})
        out.master_keys.update(answer.master_keys)
        out.self_signing_keys.update(answer.self_signing_keys)
    return out


def store_device_list(device_list: remote_api.RemoteDeviceList) -> None:
    """Cache a fetched ``/user/devices`` answer (a newer update applied meanwhile wins)."""
    user_id = device_list.user_id
    with transaction.atomic():
        current = remote_store.lock_cached_list(user_id)
        if current is not None and not current.stale and current.stream_id > device_list.stream_id:
            return
        remote_store.replace_devices(
            user_id=user_id, devices=[(d, dump(keys), name) for d, keys, name in device_list.devices]
        )
        remote_store.delete_cross_signing_keys(user_id=user_id)
        forget_signatures_on_replaced_master(user_id=user_id, master_key=device_list.master_key)
        if device_list.master_key is not None:
            remote_store.set_cross_signing_key(
                user_id=user_id, usage="master", key_json=dump(device_list.master_key)
            )
        if device_list.self_signing_key is not None:
            remote_store.set_cross_signing_key(
                user_id=user_id, usage="self_signing", key_json=dump(device_list.self_signing_key)
            )
        remote_store.set_cached_list(
            user_id=user_id, stream_id=device_list.stream_id, stale=False, now=now_ms()
        )


def forget_signatures_on_replaced_master(*, user_id: str, master_key: dict[str, Any] | None) -> None:
    """Our users' signatures on a remote user's master key are kept only while it is their
    master key (a reset on their side makes our users verify them again)."""
    keys = master_key.get("keys") if master_key is not None else None
    keep = [str(k) for k in keys.values()] if isinstance(keys, dict) else []
    key_store.delete_signatures_on_other_keys(target_user_id=user_id, keep_key_ids=keep)


def do_resync_remote_device_list(*, user_id: str, timeout: float = 30.0) -> bool:
    """Fetch a tracked remote user's whole device list again (after a gap in ``prev_id``);
    our users sharing a room with them re-query it. False if their server did not answer."""
    if not remote_store.get_tracked_users([user_id]):
        return False
    try:
        device_list = remote_api.fetch_user_devices(user_id=user_id, timeout=timeout)
    except FederationError as exc:
        logger.info("resyncing the device list of %s failed: %s", user_id, exc.reason)
        return False
    with transaction.atomic():
        store_device_list(device_list)
        mark_remote_device_list_changed(user_id=user_id, reason="resync")
    return True


def claim_remote_keys(
    *, wanted: list[tuple[str, str, str]], timeout_ms: object = None
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """One-time keys of remote devices for Tribune's ``/keys/claim``: (keys, failures)."""
    timeout = timeout_seconds(timeout_ms)
    asked: dict[str, dict[str, dict[str, str]]] = {}
    for user_id, device_id, algorithm in wanted:
        asked.setdefault(server_of(user_id), {}).setdefault(user_id, {})[device_id] = algorithm
    jobs: dict[str, Callable[[], dict[str, dict[str, dict[str, Any]]]]] = {
        server: (lambda server=server, q=q: remote_api.claim_user_keys(  # type: ignore[misc]
            server=server, one_time_keys=q, timeout=timeout
        ))
        for server, q in asked.items()
    }  # fmt: skip
    keys: dict[str, dict[str, dict[str, Any]]] = {}
    failures: dict[str, dict[str, Any]] = {}
    for server, result in _per_server(jobs).items():
        if isinstance(result, FederationError):
            failures[server] = failure_of(result)
        else:
            keys.update(result)
    return keys, failures
