"""Cross-signing against a live server (spec: client-server API "Cross-signing")."""

from __future__ import annotations

from typing import Any

from tests.support.client import MatrixClient
from tests.support.e2e_keys import CrossSigningKeys, DeviceKeys, public, sign

PASSWORD = "correct horse battery"
UPLOAD = "/keys/device_signing/upload"
SIGNATURES = "/keys/signatures/upload"


def _device(client: MatrixClient) -> DeviceKeys:
    assert client.user_id and client.device_id
    dev = DeviceKeys(client.user_id, client.device_id)
    client.post("/keys/upload", {"device_keys": dev.device_keys()}, spec="/keys/upload")
    return dev


def _cross_signing(client: MatrixClient) -> CrossSigningKeys:
    assert client.user_id
    keys = CrossSigningKeys(client.user_id)
    client.post(UPLOAD, keys.upload_body(), spec=UPLOAD)
    return keys


def _query(client: MatrixClient, *users: str) -> dict[str, Any]:
    r = client.post("/keys/query", {"device_keys": {u: [] for u in users}}, spec="/keys/query")
    return r.json


def _password(client: MatrixClient, session: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.user_id},
            "password": password, "session": session}  # fmt: skip


def test_first_upload_needs_no_uia_and_is_served_by_query(make_client) -> None:
    alice, bob = make_client(), make_client()
    keys = _cross_signing(alice)
    mine = _query(alice, alice.user_id)
    assert mine["master_keys"][alice.user_id] == keys.key_object("master")
    assert mine["self_signing_keys"][alice.user_id] == keys.key_object("self_signing")
    assert mine["user_signing_keys"][alice.user_id] == keys.key_object("user_signing")
    # Others see the master and self-signing keys, never the user-signing key.
    theirs = _query(bob, alice.user_id)
    assert theirs["master_keys"][alice.user_id] == keys.key_object("master")
    assert alice.user_id in theirs["self_signing_keys"]
    assert alice.user_id not in theirs.get("user_signing_keys", {})


def test_repeating_the_same_keys_needs_no_uia(make_client) -> None:
    alice = make_client()
    keys = _cross_signing(alice)
    # Without any "auth": accepted at once (200, no 401 UIA challenge), and nothing changes.
    alice.post(UPLOAD, keys.upload_body(), spec=UPLOAD)
    alice.post(UPLOAD, {"master_key": keys.key_object("master")}, spec=UPLOAD)
    mine = _query(alice, alice.user_id)
    assert mine["master_keys"][alice.user_id] == keys.key_object("master")
    assert mine["self_signing_keys"][alice.user_id] == keys.key_object("self_signing")
    assert mine["user_signing_keys"][alice.user_id] == keys.key_object("user_signing")


def test_replacing_keys_needs_password_uia(make_client) -> None:
    alice, bob = make_client(), make_client()
    _cross_signing(alice)
    new = CrossSigningKeys(alice.user_id)
    r = alice.post(UPLOAD, new.upload_body(), expect=401)
    assert ["m.login.password"] in [f["stages"] for f in r.json["flows"]]
    session = r.json["session"]
    wrong = alice.post(UPLOAD, {**new.upload_body(), "auth": _password(alice, session, "wrong")}, expect=401)
    assert wrong.json["errcode"] == "M_FORBIDDEN"
    assert (
        _query(bob, alice.user_id)["master_keys"][alice.user_id]["keys"] != new.key_object("master")["keys"]
    )
    # The session is bound to the keys it was started for.
    other = CrossSigningKeys(alice.user_id)
    r2 = alice.post(UPLOAD, {**other.upload_body(), "auth": _password(alice, session)}, expect=403)
    assert r2.json["errcode"] == "M_FORBIDDEN"
    alice.post(UPLOAD, {**new.upload_body(), "auth": _password(alice, session)}, spec=UPLOAD)
    assert _query(bob, alice.user_id)["master_keys"][alice.user_id] == new.key_object("master")


def test_signing_keys_must_be_signed_by_the_master_key(make_client) -> None:
    alice = make_client()
    keys = CrossSigningKeys(alice.user_id)
    stranger = CrossSigningKeys(alice.user_id)
    # Self-signing key signed by another master key.
    body = {"master_key": keys.key_object("master"), "self_signing_key": stranger.key_object("self_signing")}
    assert alice.post(UPLOAD, body, expect=400).json["errcode"] == "M_INVALID_SIGNATURE"
    # No master key at all.
    r = alice.post(UPLOAD, {"self_signing_key": keys.key_object("self_signing")}, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"
    # Malformed key objects.
    bad = keys.key_object("master")
    bad["keys"] = {"ed25519:abc": "abc"}
    assert alice.post(UPLOAD, {"master_key": bad}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    other_user = {**keys.key_object("master"), "user_id": "@mallory:example.org"}
    assert alice.post(UPLOAD, {"master_key": other_user}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    assert alice.post(UPLOAD, {}, expect=400).json["errcode"] == "M_MISSING_PARAM"
    assert (
        "master_keys" not in _query(alice, alice.user_id) or not _query(alice, alice.user_id)["master_keys"]
    )
    alice.post(UPLOAD, keys.upload_body(), spec=UPLOAD)


def test_a_key_named_like_a_device_is_refused(dagma_server, make_client) -> None:
    alice = make_client()
    keys = CrossSigningKeys(alice.user_id)
    r = alice.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                              "password": PASSWORD, "device_id": keys.master_id}, auth=False)  # fmt: skip
    assert r.json["device_id"] == keys.master_id
    assert alice.post(UPLOAD, keys.upload_body(), expect=403, spec=UPLOAD).json["errcode"] == "M_FORBIDDEN"
    _cross_signing(alice)


def test_self_signing_key_signs_own_devices_and_everyone_sees_it(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _device(alice)
    keys = _cross_signing(alice)
    signed = sign(dev.device_keys(), user_id=alice.user_id, key=keys.self_signing)
    r = alice.post(SIGNATURES, {alice.user_id: {alice.device_id: signed}}, spec=SIGNATURES)
    assert r.json["failures"] == {}
    served = _query(bob, alice.user_id)["device_keys"][alice.user_id][alice.device_id]
    ssk_id = f"ed25519:{public(keys.self_signing)}"
    assert served["signatures"][alice.user_id][ssk_id] == signed["signatures"][alice.user_id][ssk_id]
    # The device's own signature is still there.
    assert f"ed25519:{alice.device_id}" in served["signatures"][alice.user_id]


def test_invalid_or_misplaced_signatures_are_reported_per_key(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _device(alice)
    bob_dev = _device(bob)
    keys = _cross_signing(alice)
    _cross_signing(bob)
    # A signature by a key that is not alice's self-signing key.
    forged = sign(dev.device_keys(), user_id=alice.user_id, key=CrossSigningKeys(alice.user_id).self_signing)
    # Alice may not sign bob's device (only his master key, with her user-signing key).
    on_bob_device = sign(bob_dev.device_keys(), user_id=alice.user_id, key=keys.user_signing)
    # A signed object that differs from the stored key.
    altered = sign({**dev.device_keys(), "algorithms": ["x"]}, user_id=alice.user_id, key=keys.self_signing)
    body = {
        alice.user_id: {alice.device_id: forged, "NOSUCHDEVICE": forged},
        bob.user_id: {bob.device_id: on_bob_device},
    }
    r = alice.post(SIGNATURES, body, spec=SIGNATURES)
    assert r.json["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert alice.device_id in r.json["failures"][alice.user_id]
    assert "NOSUCHDEVICE" in r.json["failures"][alice.user_id]
    assert r.json["failures"][bob.user_id][bob.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    r = alice.post(SIGNATURES, {alice.user_id: {alice.device_id: altered}}, spec=SIGNATURES)
    assert r.json["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    served = _query(bob, alice.user_id)["device_keys"][alice.user_id][alice.device_id]
    assert list(served["signatures"][alice.user_id]) == [f"ed25519:{alice.device_id}"]
    assert (
        bob_dev.device_keys()["signatures"]
        == _query(alice, bob.user_id)["device_keys"][bob.user_id][bob.device_id]["signatures"]
    )


def test_user_signing_signature_on_another_master_key_is_seen_by_the_signer_only(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    alice_keys = _cross_signing(alice)
    bob_keys = _cross_signing(bob)
    signed = sign(bob_keys.key_object("master"), user_id=alice.user_id, key=alice_keys.user_signing)
    r = alice.post(SIGNATURES, {bob.user_id: {bob_keys.master_id: signed}}, spec=SIGNATURES)
    assert r.json["failures"] == {}
    usk_id = f"ed25519:{public(alice_keys.user_signing)}"
    seen_by_alice = _query(alice, bob.user_id)["master_keys"][bob.user_id]
    assert seen_by_alice["signatures"][alice.user_id][usk_id] == signed["signatures"][alice.user_id][usk_id]
    assert alice.user_id not in _query(carol, bob.user_id)["master_keys"][bob.user_id].get("signatures", {})
    # Signing with the self-signing key instead is refused.
    wrong = sign(bob_keys.key_object("master"), user_id=alice.user_id, key=alice_keys.self_signing)
    r = alice.post(SIGNATURES, {bob.user_id: {bob_keys.master_id: wrong}}, spec=SIGNATURES)
    assert r.json["failures"][bob.user_id][bob_keys.master_id]["errcode"] == "M_INVALID_SIGNATURE"


def test_devices_sign_their_users_master_key(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _device(alice)
    keys = _cross_signing(alice)
    signed = sign(keys.key_object("master"), user_id=alice.user_id, key=dev.key)
    r = alice.post(SIGNATURES, {alice.user_id: {keys.master_id: signed}}, spec=SIGNATURES)
    assert r.json["failures"] == {}
    master = _query(bob, alice.user_id)["master_keys"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in master["signatures"][alice.user_id]
    # A device key that is not the device's signs nothing.
    forged = sign(
        keys.key_object("master"), user_id=alice.user_id, key=DeviceKeys(alice.user_id, alice.device_id).key
    )
    r = alice.post(SIGNATURES, {alice.user_id: {keys.master_id: forged}}, spec=SIGNATURES)
    assert r.json["failures"][alice.user_id][keys.master_id]["errcode"] == "M_INVALID_SIGNATURE"


def test_a_new_master_key_resets_trust(make_client) -> None:
    alice, bob = make_client(), make_client()
    dev = _device(alice)
    alice_keys = _cross_signing(alice)
    bob_keys = _cross_signing(bob)
    alice.post(SIGNATURES, {alice.user_id: {alice.device_id: sign(dev.device_keys(), user_id=alice.user_id,
                                                                   key=alice_keys.self_signing)}})  # fmt: skip
    bob.post(SIGNATURES, {alice.user_id: {alice_keys.master_id: sign(alice_keys.key_object("master"),
                                                                      user_id=bob.user_id, key=bob_keys.user_signing)}})  # fmt: skip
    assert bob.user_id in _query(bob, alice.user_id)["master_keys"][alice.user_id]["signatures"]
    new = CrossSigningKeys(alice.user_id)
    r = alice.post(UPLOAD, new.upload_body(), expect=401)
    alice.post(UPLOAD, {**new.upload_body(), "auth": _password(alice, r.json["session"])}, spec=UPLOAD)
    seen = _query(bob, alice.user_id)
    # Bob's verification was of the old master key; the old self-signing key's signature is gone too.
    assert bob.user_id not in seen["master_keys"][alice.user_id].get("signatures", {})
    assert list(seen["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]) == [
        f"ed25519:{alice.device_id}"
    ]


def test_cross_signing_changes_reach_room_mates_through_device_lists(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = alice.sync()["next_batch"]
    carol_since = carol.sync()["next_batch"]
    bob_keys = _cross_signing(bob)
    synced = alice.sync(since)
    assert bob.user_id in synced["device_lists"]["changed"]
    # Carol shares no room with bob: nothing to re-query.
    assert bob.user_id not in carol.sync(carol_since).get("device_lists", {}).get("changed", [])
    # A new signature (bob's device signs his master key) is a change too.
    dev = _device(bob)
    since = alice.sync(synced["next_batch"])["next_batch"]
    signed = sign(bob_keys.key_object("master"), user_id=bob.user_id, key=dev.key)
    bob.post(SIGNATURES, {bob.user_id: {bob_keys.master_id: signed}}, spec=SIGNATURES)
    assert bob.user_id in alice.sync(since)["device_lists"]["changed"]


def test_a_verification_tells_only_the_signers_devices_to_requery_the_verified_user(make_client) -> None:
    """Spec "Cross-signing": a user-signing signature is visible only to its signer, so only
    the signer's devices re-query the user they verified (and then trust them)."""
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    alice_keys = _cross_signing(alice)
    bob_keys = _cross_signing(bob)
    since = {c.user_id: c.sync()["next_batch"] for c in (alice, bob, carol)}
    signed = sign(bob_keys.key_object("master"), user_id=alice.user_id, key=alice_keys.user_signing)
    assert alice.post(SIGNATURES, {bob.user_id: {bob_keys.master_id: signed}}).json["failures"] == {}
    changed = {
        c.user_id: c.sync(since[c.user_id]).get("device_lists", {}).get("changed", [])
        for c in (alice, bob, carol)
    }
    assert changed[alice.user_id] == [bob.user_id]  # not Alice herself: her keys did not change
    assert changed[bob.user_id] == [] and changed[carol.user_id] == []
    r = alice.get("/keys/changes", params={"from": since[alice.user_id], "to": alice.sync()["next_batch"]})
    assert r.json["changed"] == [bob.user_id]
    r = carol.get("/keys/changes", params={"from": since[carol.user_id], "to": carol.sync()["next_batch"]})
    assert r.json["changed"] == []
