"""The key-state writers and readers on this database (issue #15): the per-user key lock, the
snapshot a ``/keys/query`` answer is read from, a reset that is authorised under the lock, and
the order in which ``device_lists`` positions commit.

The live-server side (interleavings under traffic) is ``tests/api/test_key_state_races.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dagcore.http.errors import MatrixError
from tests.support.e2e_keys import CrossSigningKeys, DeviceKeys, public, sign

#: Upper bound for anything these tests wait for; never a fixed pause.
PATIENCE = 30.0


def _user_with_device(localpart: str) -> tuple[str, DeviceKeys]:
    from dagcore.server_keys import get_server_name
    from dagcore.store import accounts as account_store

    user_id = f"@{localpart}:{get_server_name()}"
    user = account_store.insert_user(user_id=user_id, localpart=localpart, password_hash=None)
    account_store.upsert_device(user, "DEV", None)
    return user_id, DeviceKeys(user_id, "DEV")


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_a_reset_is_authorised_under_the_lock_and_answered_from_one_state() -> None:
    """Outside any test transaction, so the real transactions run (PostgreSQL: REPEATABLE READ
    snapshot and advisory locks; SQLite: IMMEDIATE transactions)."""
    from dagcore.actions import cross_signing, e2e_keys
    from dagcore.models import UiaSession
    from dagcore.store import uia as uia_store

    user_id, dev = _user_with_device("keystate")
    first = CrossSigningKeys(user_id)
    # The device keys carry the self-signing key's signature (as matrix-sdk-crypto uploads them).
    cross_signing.do_upload_cross_signing_keys(
        user_id=user_id, upload=cross_signing.check_cross_signing_upload(first.upload_body(), user_id=user_id)
    )
    signed = sign(dev.device_keys(), user_id=user_id, key=first.self_signing)
    upload = e2e_keys.check_key_upload({"device_keys": signed}, user_id=user_id, device_id="DEV")
    assert list(upload.device_keys["signatures"][user_id]) == ["ed25519:DEV"]  # type: ignore[index]
    e2e_keys.do_upload_keys(user_id=user_id, device_id="DEV", upload=upload)
    answer = e2e_keys.get_keys_for_users(requester=user_id, device_keys={user_id: []})
    ssk_id = f"ed25519:{public(first.self_signing)}"
    assert set(answer["device_keys"][user_id]["DEV"]["signatures"][user_id]) == {"ed25519:DEV", ssk_id}

    second = CrossSigningKeys(user_id)
    new = cross_signing.check_cross_signing_upload(second.upload_body(), user_id=user_id)
    with pytest.raises(cross_signing.ReplacingKeysNeedsAuth):
        cross_signing.do_upload_cross_signing_keys(user_id=user_id, upload=new)

    # An authorisation that answers 401 keeps what it recorded (its session), changes nothing else.
    @contextmanager
    def refuse() -> Iterator[None]:
        uia_store.create_session(operation="test", user_id=user_id, binding="refused")
        raise MatrixError(401, "", "Additional authentication is required")
        yield

    with pytest.raises(MatrixError):
        cross_signing.do_upload_cross_signing_keys(user_id=user_id, upload=new, authorize=refuse)
    assert UiaSession.objects.filter(binding="refused").exists()
    master = e2e_keys.get_keys_for_users(requester=user_id, device_keys={user_id: []})["master_keys"][user_id]
    assert master == first.key_object("master")

    ran: list[bool] = []

    @contextmanager
    def allow() -> Iterator[None]:
        ran.append(True)
        yield

    cross_signing.do_upload_cross_signing_keys(user_id=user_id, upload=new, authorize=allow)
    assert ran == [True]
    answer = e2e_keys.get_keys_for_users(requester=user_id, device_keys={user_id: []})
    assert answer["master_keys"][user_id] == second.key_object("master")
    # The replaced self-signing key took its signature along, wherever it had come from.
    assert list(answer["device_keys"][user_id]["DEV"]["signatures"][user_id]) == ["ed25519:DEV"]


@pytest.mark.django_db(transaction=True)
def test_device_list_positions_commit_in_order() -> None:
    """A position allocated in a transaction that has not committed holds back every later one:
    a reader whose token is at or after a position has seen the change it numbers (PostgreSQL,
    where writers run concurrently; SQLite runs one writer at a time)."""
    from django.db import connection, connections, transaction

    from dagcore.actions.device_lists import mark_device_list_changed
    from dagcore.models import StreamCounter
    from dagcore.store.device_lists import get_changed_users
    from dagcore.store.streams import get_stream_position

    allocated, release = threading.Event(), threading.Event()
    positions: dict[str, int] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                positions["first"] = mark_device_list_changed(user_id="@first:order.test")
                allocated.set()
                release.wait(PATIENCE)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            positions["second"] = mark_device_list_changed(user_id="@second:order.test")
        finally:
            connections.close_all()

    # The counter row exists, as the migration makes it (a test database flushed by an
    # earlier test has none).
    StreamCounter.objects.get_or_create(name="device_lists", defaults={"position": 0})
    before = get_stream_position("device_lists")
    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert allocated.wait(PATIENCE)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    # The second change waits for the first to commit (the stream counter's row lock), observably.
    deadline = time.monotonic() + PATIENCE
    waiting = False
    while not waiting and time.monotonic() < deadline:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                ["UPDATE stream_counters%"],
            )
            row: Any = cur.fetchone()
            waiting = row[0] > 0
    try:
        assert waiting, "the second change did not wait for the first"
        # Meanwhile readers see neither: the position has not moved.
        assert get_stream_position("device_lists") == before
        assert (
            get_changed_users(
                after=before, upto=get_stream_position("device_lists"), viewer="@first:order.test"
            )
            == set()
        )
    finally:
        release.set()
        for t in threads:
            t.join(PATIENCE)
    assert positions["second"] == positions["first"] + 1
    now = get_stream_position("device_lists")
    assert now == positions["second"]
    assert get_changed_users(after=before, upto=now, viewer="@first:order.test") == {
        "@first:order.test",
        "@second:order.test",
    }


@pytest.mark.django_db(transaction=True)
def test_deleting_a_device_waits_for_a_change_of_the_users_keys() -> None:
    """A device deletion is a change of the user's key state: it waits for a key upload (or
    reset) holding the user's key lock, so the two never interleave (PostgreSQL, where
    writers run concurrently; SQLite runs one writer at a time)."""
    from django.db import connection, connections, transaction

    from dagcore.actions.accounts import do_delete_devices
    from dagcore.store import accounts as account_store
    from dagcore.store.e2e_keys import lock_user_keys

    user_id, _ = _user_with_device("keylockdelete")
    user = account_store.get_user(user_id)
    assert user is not None
    locked, release, deleted = threading.Event(), threading.Event(), threading.Event()

    def uploader() -> None:
        try:
            with transaction.atomic():
                lock_user_keys(user_ids=[user_id])
                locked.set()
                release.wait(PATIENCE)
        finally:
            connections.close_all()

    def deleter() -> None:
        try:
            assert do_delete_devices(user=user, device_ids=["DEV"]) == 1
            deleted.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=uploader)]
    threads[0].start()
    assert locked.wait(PATIENCE)
    threads.append(threading.Thread(target=deleter))
    threads[1].start()
    deadline = time.monotonic() + PATIENCE
    waiting = False
    while not waiting and time.monotonic() < deadline:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                ["SELECT pg_advisory_xact_lock(%"],
            )
            row: Any = cur.fetchone()
            waiting = row[0] > 0
    try:
        assert waiting, "the deletion did not wait for the key lock"
        assert not deleted.is_set()
        assert account_store.get_device(user, "DEV") is not None
    finally:
        release.set()
        for t in threads:
            t.join(PATIENCE)
    assert deleted.is_set()
    assert account_store.get_device(user, "DEV") is None
