"""Key management against a live server (spec: client-server API "Key management API").

Keys are real Ed25519 keys signed as a client signs them, so the server's
signature checks run for real.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.support.client import MatrixClient, q
from tests.support.e2e_keys import DeviceKeys

PASSWORD = "correct horse battery"


def _upload(client: MatrixClient, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    r = client.post("/keys/upload", body, expect=expect, spec="/keys/upload" if expect == 200 else None)
    return r.json


def _with_device(client: MatrixClient, *, otks: int = 0) -> DeviceKeys:
    assert client.user_id and client.device_id
    dev = DeviceKeys(client.user_id, client.device_id)
    body: dict[str, Any] = {"device_keys": dev.device_keys()}
    if otks:
        body["one_time_keys"] = dev.one_time_keys(otks)
    _upload(client, body)
    return dev


def _query(client: MatrixClient, users: dict[str, list[str]]) -> dict[str, Any]:
    return client.post("/keys/query", {"device_keys": users}, spec="/keys/query").json


def _claim(client: MatrixClient, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
    r = client.post("/keys/claim", {"one_time_keys": wanted}, spec="/keys/claim")
    return r.json


# --------------------------------------------------------------------------- /keys/upload


def test_uploaded_device_keys_are_served_by_query_with_display_name(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _with_device(alice)
    alice.put(f"/devices/{q(alice.device_id)}", {"display_name": "Alice's laptop"})
    got = _query(bob, {alice.user_id: []})
    served = got["device_keys"][alice.user_id][alice.device_id]
    assert served["keys"] == dev.device_keys()["keys"]
    assert served["signatures"] == dev.device_keys()["signatures"]
    assert served["unsigned"] == {"device_display_name": "Alice's laptop"}
    # A device that never uploaded keys is not listed.
    assert _query(alice, {bob.user_id: []})["device_keys"][bob.user_id] == {}


def test_device_keys_must_carry_a_valid_self_signature(make_client) -> None:
    alice = make_client()
    dev = DeviceKeys(alice.user_id, alice.device_id)
    forged = dev.device_keys()
    forged["algorithms"] = ["m.olm.v1.curve25519-aes-sha2"]  # changed after signing
    r = alice.post("/keys/upload", {"device_keys": forged}, expect=400)
    assert r.json["errcode"] == "M_INVALID_SIGNATURE"
    unsigned = {k: v for k, v in dev.device_keys().items() if k != "signatures"}
    unsigned["signatures"] = {}
    assert (
        alice.post("/keys/upload", {"device_keys": unsigned}, expect=400).json["errcode"]
        == "M_INVALID_SIGNATURE"
    )
    assert _query(alice, {alice.user_id: []})["device_keys"][alice.user_id] == {}
    _upload(alice, {"device_keys": dev.device_keys()})  # the genuine object is accepted
    assert alice.device_id in _query(alice, {alice.user_id: []})["device_keys"][alice.user_id]


def test_device_keys_must_name_the_callers_user_and_device(make_client) -> None:
    alice, bob = make_client(), make_client()
    for user_id, device_id in ((bob.user_id, alice.device_id), (alice.user_id, "OTHERDEVICE")):
        dev = DeviceKeys(user_id, device_id)
        r = alice.post("/keys/upload", {"device_keys": dev.device_keys()}, expect=400)
        assert r.json["errcode"] == "M_INVALID_PARAM"
    assert _query(alice, {bob.user_id: [], alice.user_id: []})["device_keys"] == {
        alice.user_id: {},
        bob.user_id: {},
    }
    _with_device(alice)


def test_a_devices_identity_keys_cannot_be_replaced_but_can_be_repeated(make_client) -> None:
    alice = make_client()
    dev = _with_device(alice)
    _upload(alice, {"device_keys": dev.device_keys()})  # idempotent retry
    impostor = DeviceKeys(alice.user_id, alice.device_id)
    r = alice.post("/keys/upload", {"device_keys": impostor.device_keys()}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    served = _query(alice, {alice.user_id: []})["device_keys"][alice.user_id][alice.device_id]
    assert served["keys"] == dev.device_keys()["keys"]


def test_one_time_key_counts_follow_uploads_and_key_ids_are_not_reused(make_client) -> None:
    alice = make_client()
    dev = _with_device(alice)
    first = dev.one_time_keys(5)
    assert _upload(alice, {"one_time_keys": first})["one_time_key_counts"]["signed_curve25519"] == 5
    # Repeating keys already stored changes nothing (a retried request).
    again = _upload(alice, {"one_time_keys": {**first, **dev.one_time_keys(2, prefix="more")}})
    assert again["one_time_key_counts"]["signed_curve25519"] == 7
    # Another key under a stored key ID is refused, and nothing of that upload is kept.
    clash = {**dev.one_time_keys(1), **dev.one_time_keys(3, prefix="new")}
    r = alice.post("/keys/upload", {"one_time_keys": clash}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    assert _upload(alice, {})["one_time_key_counts"]["signed_curve25519"] == 7


def test_malformed_uploads_change_nothing(make_client) -> None:
    alice = make_client()
    dev = _with_device(alice)
    for body, code in (
        ({"one_time_keys": ["nope"]}, "M_BAD_JSON"),
        ({"one_time_keys": {"no_colon": "abc"}}, "M_INVALID_PARAM"),
        ({"one_time_keys": {"signed_curve25519:a": {"nokey": 1}}}, "M_BAD_JSON"),
        (
            {"fallback_keys": {**dev.one_time_keys(1, prefix="f"), **dev.one_time_keys(1, prefix="g")}},
            "M_INVALID_PARAM",
        ),
        ({"device_keys": "x"}, "M_BAD_JSON"),
    ):
        r = alice.post("/keys/upload", body, expect=400)
        assert r.json["errcode"] == code, body
    counts = _upload(alice, {})["one_time_key_counts"]
    assert counts.get("signed_curve25519", 0) == 0


# --------------------------------------------------------------------------- /keys/claim


def test_claim_hands_out_one_time_keys_then_the_fallback_key(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _with_device(alice)
    otks = dev.one_time_keys(2)
    fallback = dev.one_time_keys(1, prefix="fb", fallback=True)
    _upload(alice, {"one_time_keys": otks, "fallback_keys": fallback})
    want = {alice.user_id: {alice.device_id: "signed_curve25519"}}
    first = _claim(bob, want)["one_time_keys"][alice.user_id][alice.device_id]
    second = _claim(bob, want)["one_time_keys"][alice.user_id][alice.device_id]
    # Oldest first, each once; then the fallback key, again and again.
    assert set(first) | set(second) == set(otks)
    assert first != second
    assert _claim(bob, want)["one_time_keys"][alice.user_id][alice.device_id] == fallback
    assert _claim(bob, want)["one_time_keys"][alice.user_id][alice.device_id] == fallback
    counts = _upload(alice, {})["one_time_key_counts"]
    assert counts.get("signed_curve25519", 0) == 0


def test_claim_for_unknown_devices_and_remote_servers(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _with_device(alice)
    _upload(alice, {"one_time_keys": dev.one_time_keys(1)})
    got = _claim(bob, {
        alice.user_id: {"NOSUCHDEVICE": "signed_curve25519", alice.device_id: "signed_curve25519"},
        "@carol:remote.example": {"DEV": "signed_curve25519"},
    })  # fmt: skip
    assert list(got["one_time_keys"][alice.user_id]) == [alice.device_id]
    assert "remote.example" in got["failures"]
    r = bob.post("/keys/claim", {"one_time_keys": {alice.user_id: ["x"]}}, expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    assert bob.post("/keys/claim", {}, expect=400).json["errcode"] == "M_MISSING_PARAM"


def test_concurrent_claims_hand_out_each_one_time_key_at_most_once(dagma_server, make_client) -> None:
    """20 parallel claims for 10 keys: 10 distinct keys, then (no fallback) nothing."""
    alice = make_client()
    dev = _with_device(alice)
    otks = dev.one_time_keys(10)
    _upload(alice, {"one_time_keys": otks})
    claimers = [make_client() for _ in range(4)]
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def claim(i: int) -> None:
        token = claimers[i % len(claimers)].access_token
        with httpx.Client(base_url=dagma_server.base_url, timeout=30) as http:
            barrier.wait()
            r = http.post(
                "/_matrix/client/v3/keys/claim",
                json={"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200, r.text
        with lock:
            results.append(r.json())

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [
        key_id
        for res in results
        for key_id in res["one_time_keys"].get(alice.user_id, {}).get(alice.device_id, {})
    ]
    assert len(handed) == len(set(handed)) == 10
    assert set(handed) == set(otks)


# --------------------------------------------------------------------------- /keys/query


def test_query_reports_remote_servers_as_failures_and_skips_unknown_users(make_client) -> None:
    alice = make_client()
    _with_device(alice)
    server = alice.user_id.split(":", 1)[1]
    got = _query(alice, {f"@nobody:{server}": [], "@x:elsewhere.example": [], alice.user_id: []})
    assert got["device_keys"][f"@nobody:{server}"] == {}
    assert "elsewhere.example" in got["failures"]
    assert alice.device_id in got["device_keys"][alice.user_id]
    for bad, code in (({"device_keys": ["@a:b"]}, "M_BAD_JSON"), ({"device_keys": {"notauser": []}}, "M_INVALID_PARAM"),
                      ({}, "M_MISSING_PARAM")):  # fmt: skip
        assert alice.post("/keys/query", bad, expect=400).json["errcode"] == code


def test_query_can_ask_for_some_devices_only(dagma_server, make_client) -> None:
    alice = make_client()
    _with_device(alice)
    r = alice.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                              "password": PASSWORD}, auth=False)  # fmt: skip
    phone = MatrixClient(dagma_server.base_url, r.json["access_token"])
    phone.user_id, phone.device_id = alice.user_id, r.json["device_id"]
    _with_device(phone)
    assert set(_query(alice, {alice.user_id: []})["device_keys"][alice.user_id]) == {
        alice.device_id,
        phone.device_id,
    }
    assert set(_query(alice, {alice.user_id: [phone.device_id]})["device_keys"][alice.user_id]) == {
        phone.device_id
    }


def test_deleted_devices_lose_their_keys(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                              "password": PASSWORD, "device_id": "PHONE"}, auth=False)  # fmt: skip
    phone = MatrixClient(dagma_server.base_url, r.json["access_token"])
    phone.user_id, phone.device_id = alice.user_id, "PHONE"
    dev = _with_device(phone, otks=3)
    assert "PHONE" in _query(bob, {alice.user_id: []})["device_keys"][alice.user_id]
    phone.post("/logout")
    assert "PHONE" not in _query(bob, {alice.user_id: []})["device_keys"][alice.user_id]
    assert _claim(bob, {alice.user_id: {"PHONE": "signed_curve25519"}})["one_time_keys"] == {}
    # Logging in again as PHONE starts afresh: new identity keys are accepted.
    r = alice.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                              "password": PASSWORD, "device_id": "PHONE"}, auth=False)  # fmt: skip
    phone.access_token = r.json["access_token"]
    new = _with_device(phone)
    assert new.device_keys()["keys"] != dev.device_keys()["keys"]
    served = _query(bob, {alice.user_id: []})["device_keys"][alice.user_id]["PHONE"]
    assert served["keys"] == new.device_keys()["keys"]


@pytest.mark.django_db
def test_query_uses_a_fixed_number_of_queries_whatever_the_number_of_users(
    django_assert_max_num_queries,
) -> None:
    from dagcore.actions.e2e_keys import KeyUpload, do_upload_keys, get_keys_for_users
    from dagcore.server_keys import get_server_name
    from dagcore.store import accounts as account_store

    server = get_server_name()
    users = []
    for i in range(30):
        user = account_store.insert_user(user_id=f"@q{i}:{server}", localpart=f"q{i}", password_hash=None)
        account_store.upsert_device(user, "DEV", None)
        dev = DeviceKeys(user.user_id, "DEV")
        do_upload_keys(user_id=user.user_id, device_id="DEV", upload=KeyUpload(dev.device_keys(), [], []))
        users.append(user.user_id)
    with django_assert_max_num_queries(4):
        one = get_keys_for_users(requester=users[0], device_keys={users[0]: []})
    with django_assert_max_num_queries(4):
        many = get_keys_for_users(requester=users[0], device_keys={u: [] for u in users})
    assert len(one["device_keys"]) == 1
    assert all("DEV" in many["device_keys"][u] for u in users)


# --------------------------------------------------------------------------- device-list tracking


def test_key_changes_name_users_sharing_a_room_and_those_who_left(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = alice.sync()["next_batch"]
    _with_device(bob)
    _with_device(carol)  # shares no room with alice
    synced = alice.sync(since)
    now = synced["next_batch"]
    assert bob.user_id in synced["device_lists"]["changed"]
    assert carol.user_id not in synced["device_lists"]["changed"]
    changes = alice.get("/keys/changes", params={"from": since, "to": now}, spec="/keys/changes").json
    assert bob.user_id in changes["changed"]
    assert carol.user_id not in changes["changed"]
    # Without `to`: up to now.
    assert (
        bob.user_id
        in alice.get("/keys/changes", params={"from": since}, spec="/keys/changes").json["changed"]
    )
    # Nothing changed after `now`.
    assert alice.get("/keys/changes", params={"from": now, "to": now}).json == {"changed": [], "left": []}
    bob.post(f"/rooms/{q(room)}/leave")
    after_leave = alice.sync(now)
    assert bob.user_id in after_leave["device_lists"]["left"]
    changes = alice.get(
        "/keys/changes", params={"from": now, "to": after_leave["next_batch"]}, spec="/keys/changes"
    )
    assert changes.json["left"] == [bob.user_id]
    assert (
        alice.get("/keys/changes", params={"from": "garbage"}, expect=400).json["errcode"]
        == "M_INVALID_PARAM"
    )
    assert alice.get("/keys/changes", expect=400).json["errcode"] == "M_MISSING_PARAM"


def test_a_new_room_mate_counts_as_changed(make_client) -> None:
    """Alice has never tracked carol's devices: once carol joins a shared room she must query them."""
    alice, carol = make_client(), make_client()
    _with_device(carol)
    room = alice.create_room(preset="public_chat")
    since = alice.sync()["next_batch"]
    carol.join(room)
    synced = alice.sync(since)
    assert carol.user_id in synced["device_lists"]["changed"]
    changes = alice.get("/keys/changes", params={"from": since, "to": synced["next_batch"]}).json
    assert carol.user_id in changes["changed"]


def test_sync_counts_one_time_keys_and_unused_fallback_keys(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _with_device(alice)
    _upload(
        alice,
        {
            "one_time_keys": dev.one_time_keys(3),
            "fallback_keys": dev.one_time_keys(1, prefix="fb", fallback=True),
        },
    )
    first = alice.sync()
    assert first["device_one_time_keys_count"]["signed_curve25519"] == 3
    assert first["device_unused_fallback_key_types"] == ["signed_curve25519"]
    for _ in range(4):  # three one-time keys, then the fallback key
        _claim(bob, {alice.user_id: {alice.device_id: "signed_curve25519"}})
    later = alice.sync(first["next_batch"])
    assert later["device_one_time_keys_count"].get("signed_curve25519", 0) == 0
    assert later["device_unused_fallback_key_types"] == []


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_claim_statement_takes_the_oldest_key_once_on_this_database() -> None:
    """The store's claim statement (PostgreSQL and SQLite variants): oldest first, each key once."""
    from dagcore.store import e2e_keys as key_store

    keys = [("signed_curve25519", f"k{i}", f'{{"key":"{i}"}}') for i in range(3)]
    key_store.insert_one_time_keys(user_id="@a:x", device_id="D1", keys=keys)
    key_store.insert_one_time_keys(user_id="@b:x", device_id="D2", keys=keys[:1])
    wanted = [
        ("@a:x", "D1", "signed_curve25519"),
        ("@b:x", "D2", "signed_curve25519"),
        ("@c:x", "D3", "signed_curve25519"),
    ]
    first = key_store.claim_one_time_keys(wanted)
    assert sorted((u, k) for u, _, _, k, _ in first) == [("@a:x", "k0"), ("@b:x", "k0")]
    second = key_store.claim_one_time_keys(wanted)
    assert [(u, k) for u, _, _, k, _ in second] == [("@a:x", "k1")]
    assert key_store.get_one_time_keys(user_id="@a:x", device_id="D1", key_ids=[("signed_curve25519", "k2")])


def test_deleting_a_device_reaches_room_mates_through_device_lists(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    r = bob.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
                            "password": PASSWORD}, auth=False)  # fmt: skip
    phone = MatrixClient(dagma_server.base_url, r.json["access_token"])
    phone.user_id, phone.device_id = bob.user_id, r.json["device_id"]
    _with_device(phone)
    since = alice.sync()["next_batch"]
    phone.post("/logout")
    synced = alice.sync(since)
    assert bob.user_id in synced["device_lists"]["changed"]
    assert phone.device_id not in _query(alice, {bob.user_id: []})["device_keys"][bob.user_id]
