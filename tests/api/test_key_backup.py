"""Server-side key backups against a live server (spec: client-server API "Server-side key backups")."""

from __future__ import annotations

from typing import Any

from tests.support.client import MatrixClient, q

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH_DATA = {"public_key": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo", "signatures": {}}
ROOM = "!room:example.org"


def _create(client: MatrixClient, auth_data: dict[str, Any] | None = None) -> str:
    body = {"algorithm": ALGORITHM, "auth_data": auth_data or AUTH_DATA}
    return str(client.post("/room_keys/version", body, spec="/room_keys/version").json["version"])


def _key(fmi: int = 0, fc: int = 0, verified: bool = False, tag: str = "a") -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag}}  # fmt: skip


def _put(
    client: MatrixClient, version: str, key: dict[str, Any], session: str = "s1", expect: int = 200
) -> Any:
    spec = "/room_keys/keys/{roomId}/{sessionId}" if expect != 400 else None  # the spec lists no 400 here
    return client.put(f"/room_keys/keys/{q(ROOM)}/{q(session)}", key, params={"version": version}, expect=expect,
                      spec=spec).json  # fmt: skip


def _get(client: MatrixClient, version: str, session: str = "s1") -> dict[str, Any]:
    return client.get(f"/room_keys/keys/{q(ROOM)}/{q(session)}", params={"version": version},
                      spec="/room_keys/keys/{roomId}/{sessionId}").json  # fmt: skip


def test_no_backup_is_404_until_one_is_created(make_client) -> None:
    alice = make_client()
    r = alice.get("/room_keys/version", expect=404, spec="/room_keys/version")
    assert r.json["errcode"] == "M_NOT_FOUND"
    version = _create(alice)
    info = alice.get("/room_keys/version", spec="/room_keys/version").json
    assert info == {
        "version": version,
        "algorithm": ALGORITHM,
        "auth_data": AUTH_DATA,
        "count": 0,
        "etag": info["etag"],
    }
    assert alice.get(f"/room_keys/version/{version}", spec="/room_keys/version/{version}").json == info
    # Backups are per user.
    assert make_client().get("/room_keys/version", expect=404).json["errcode"] == "M_NOT_FOUND"


def test_create_refuses_bad_parameters(make_client) -> None:
    alice = make_client()
    for body, code in (
        ({"auth_data": AUTH_DATA}, "M_MISSING_PARAM"),
        ({"algorithm": ALGORITHM}, "M_MISSING_PARAM"),
        ({"algorithm": ALGORITHM, "auth_data": "x"}, "M_INVALID_PARAM"),
        ({"algorithm": ALGORITHM, "auth_data": {"signatures": {}}}, "M_INVALID_PARAM"),
        ({"algorithm": 5, "auth_data": AUTH_DATA}, "M_INVALID_PARAM"),
    ):
        assert alice.post("/room_keys/version", body, expect=400).json["errcode"] == code, body
    alice.get("/room_keys/version", expect=404)
    _create(alice)


def test_newest_backup_is_current_and_old_versions_cannot_be_written(make_client) -> None:
    alice = make_client()
    old = _create(alice)
    _put(alice, old, _key())
    new = _create(alice)
    assert new != old
    assert alice.get("/room_keys/version").json["version"] == new
    r = alice.put(f"/room_keys/keys/{q(ROOM)}/s2", _key(), params={"version": old}, expect=403,
                  spec="/room_keys/keys/{roomId}/{sessionId}")  # fmt: skip
    assert r.json["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert r.json["current_version"] == new
    # The old backup can still be read.
    assert _get(alice, old) == _key()
    _put(alice, new, _key())


def test_a_key_is_replaced_only_by_a_better_one(make_client) -> None:
    """Spec: is_verified wins, then the lower first_message_index, then the lower forwarded_count."""
    alice = make_client()
    version = _create(alice)
    _put(alice, version, _key(fmi=5, fc=2, verified=False, tag="first"))
    # Not better: higher index; same index but more forwards; unverified vs unverified worse.
    for worse in (_key(fmi=6, fc=0, tag="w1"), _key(fmi=5, fc=3, tag="w2")):
        _put(alice, version, worse)
        assert _get(alice, version)["session_data"]["ephemeral"] == "first"
    _put(alice, version, _key(fmi=5, fc=1, tag="fewer-forwards"))
    assert _get(alice, version)["session_data"]["ephemeral"] == "fewer-forwards"
    _put(alice, version, _key(fmi=2, fc=9, tag="lower-index"))
    assert _get(alice, version)["session_data"]["ephemeral"] == "lower-index"
    _put(alice, version, _key(fmi=9, fc=9, verified=True, tag="verified"))
    assert _get(alice, version)["session_data"]["ephemeral"] == "verified"
    # An unverified key never replaces a verified one, however good otherwise.
    _put(alice, version, _key(fmi=0, fc=0, verified=False, tag="unverified"))
    assert _get(alice, version)["session_data"]["ephemeral"] == "verified"


def test_etag_changes_when_keys_change_and_count_follows(make_client) -> None:
    alice = make_client()
    version = _create(alice)
    etag0 = alice.get("/room_keys/version").json["etag"]
    first = _put(alice, version, _key(fmi=3))
    assert first["count"] == 1 and first["etag"] != etag0
    same = _put(alice, version, _key(fmi=4))  # not better: nothing changes
    assert same == first
    body = {
        "rooms": {
            ROOM: {"sessions": {"s2": _key(), "s3": _key()}},
            "!other:example.org": {"sessions": {"s1": _key()}},
        }
    }
    bulk = alice.put("/room_keys/keys", body, params={"version": version}, spec="/room_keys/keys").json
    assert bulk["count"] == 4 and bulk["etag"] != first["etag"]
    info = alice.get(f"/room_keys/version/{version}").json
    assert (info["count"], info["etag"]) == (4, bulk["etag"])
    per_room = {"sessions": {"s4": _key()}}
    r = alice.put(
        f"/room_keys/keys/{q(ROOM)}", per_room, params={"version": version}, spec="/room_keys/keys/{roomId}"
    )
    assert r.json["count"] == 5


def test_reading_keys_at_each_level(make_client) -> None:
    alice = make_client()
    version = _create(alice)
    body = {
        "rooms": {
            ROOM: {"sessions": {"s1": _key(tag="1"), "s2": _key(tag="2")}},
            "!b:example.org": {"sessions": {"s9": _key()}},
        }
    }
    alice.put("/room_keys/keys", body, params={"version": version})
    everything = alice.get("/room_keys/keys", params={"version": version}, spec="/room_keys/keys").json
    assert everything == body
    room = alice.get(
        f"/room_keys/keys/{q(ROOM)}", params={"version": version}, spec="/room_keys/keys/{roomId}"
    ).json
    assert room == body["rooms"][ROOM]
    empty = alice.get(f"/room_keys/keys/{q('!none:example.org')}", params={"version": version}).json
    assert empty == {"sessions": {}}
    r = alice.get(f"/room_keys/keys/{q(ROOM)}/nope", params={"version": version}, expect=404,
                  spec="/room_keys/keys/{roomId}/{sessionId}")  # fmt: skip
    assert r.json["errcode"] == "M_NOT_FOUND"
    assert (
        alice.get("/room_keys/keys", params={"version": "999"}, expect=404).json["errcode"] == "M_NOT_FOUND"
    )
    assert alice.get("/room_keys/keys", expect=400).json["errcode"] == "M_MISSING_PARAM"
    # Another user cannot read alice's backup by its number.
    bob = make_client()
    assert (
        bob.get("/room_keys/keys", params={"version": version}, expect=404).json["errcode"] == "M_NOT_FOUND"
    )


def test_deleting_keys_at_each_level(make_client) -> None:
    alice = make_client()
    version = _create(alice)
    body = {
        "rooms": {
            ROOM: {"sessions": {"s1": _key(), "s2": _key()}},
            "!b:example.org": {"sessions": {"s9": _key()}},
        }
    }
    alice.put("/room_keys/keys", body, params={"version": version})
    one = alice.delete(
        f"/room_keys/keys/{q(ROOM)}/s1",
        params={"version": version},
        spec="/room_keys/keys/{roomId}/{sessionId}",
    ).json
    assert one["count"] == 2
    room = alice.delete(
        f"/room_keys/keys/{q(ROOM)}", params={"version": version}, spec="/room_keys/keys/{roomId}"
    ).json
    assert room["count"] == 1 and room["etag"] != one["etag"]
    rest = alice.delete("/room_keys/keys", params={"version": version}, spec="/room_keys/keys").json
    assert rest["count"] == 0
    r = alice.delete("/room_keys/keys", params={"version": "77"}, expect=404, spec="/room_keys/keys")
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_bad_key_data_is_refused_and_changes_nothing(make_client) -> None:
    alice = make_client()
    version = _create(alice)
    for bad, code in (
        ({**_key(), "first_message_index": -1}, "M_INVALID_PARAM"),
        ({**_key(), "forwarded_count": "1"}, "M_INVALID_PARAM"),
        ({k: v for k, v in _key().items() if k != "is_verified"}, "M_MISSING_PARAM"),
        ({**_key(), "session_data": "x"}, "M_INVALID_PARAM"),
    ):
        assert _put(alice, version, bad, expect=400)["errcode"] == code, bad
    r = alice.put(
        "/room_keys/keys",
        {"rooms": {"not-a-room": {"sessions": {}}}},
        params={"version": version},
        expect=400,
    )
    assert r.json["errcode"] == "M_INVALID_PARAM"
    assert (
        alice.put("/room_keys/keys", {"rooms": {ROOM: {"sessions": {"s": _key()}}}}, expect=400).json[
            "errcode"
        ]
        == "M_MISSING_PARAM"
    )
    assert alice.get("/room_keys/version").json["count"] == 0
    _put(alice, version, _key())


def test_writing_without_any_backup_is_404(make_client) -> None:
    alice = make_client()
    r = alice.put(
        "/room_keys/keys", {"rooms": {}}, params={"version": "1"}, expect=404, spec="/room_keys/keys"
    )
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_update_changes_auth_data_only(make_client) -> None:
    alice = make_client()
    version = _create(alice)
    new_auth = {**AUTH_DATA, "signatures": {alice.user_id: {"ed25519:DEV": "sig"}}}
    alice.put(f"/room_keys/version/{version}", {"algorithm": ALGORITHM, "auth_data": new_auth, "version": version},
              spec="/room_keys/version/{version}")  # fmt: skip
    assert alice.get("/room_keys/version").json["auth_data"] == new_auth
    r = alice.put(f"/room_keys/version/{version}", {"algorithm": "other.algorithm", "auth_data": AUTH_DATA},
                  expect=400, spec="/room_keys/version/{version}")  # fmt: skip
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put(f"/room_keys/version/{version}", {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "version": "99"},
                  expect=400)  # fmt: skip
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put("/room_keys/version/99", {"algorithm": ALGORITHM, "auth_data": AUTH_DATA}, expect=404,
                  spec="/room_keys/version/{version}")  # fmt: skip
    assert r.json["errcode"] == "M_NOT_FOUND"
    assert alice.get("/room_keys/version").json["auth_data"] == new_auth


def test_deleting_a_backup_deletes_its_keys_and_is_idempotent(make_client) -> None:
    alice = make_client()
    first = _create(alice)
    second = _create(alice)
    _put(alice, second, _key())
    alice.delete(f"/room_keys/version/{second}", spec="/room_keys/version/{version}")
    alice.delete(f"/room_keys/version/{second}", spec="/room_keys/version/{version}")  # again: still fine
    # The older backup is current again; the deleted one is gone with its keys.
    assert alice.get("/room_keys/version").json["version"] == first
    assert alice.get(f"/room_keys/version/{second}", expect=404).json["errcode"] == "M_NOT_FOUND"
    assert (
        alice.get("/room_keys/keys", params={"version": second}, expect=404).json["errcode"] == "M_NOT_FOUND"
    )
    r = alice.delete("/room_keys/version/12345", expect=404, spec="/room_keys/version/{version}")
    assert r.json["errcode"] == "M_NOT_FOUND"
    # Version numbers are not reused.
    assert _create(alice) not in (first, second)
