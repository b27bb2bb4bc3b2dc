"""Device management against a live server (spec: client-server API "Device Management")."""

from __future__ import annotations

from typing import Any

from tests.support.client import MatrixClient, q

PASSWORD = "correct horse battery"


def _login(base_url: str, user: str, **extra: Any) -> MatrixClient:
    client = MatrixClient(base_url)
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": PASSWORD,
        **extra,
    }
    r = client.post("/login", body, auth=False)
    client.access_token, client.user_id, client.device_id = (
        r.json["access_token"],
        r.json["user_id"],
        r.json["device_id"],
    )
    return client


def _password_auth(
    client: MatrixClient, password: str = PASSWORD, session: str | None = None
) -> dict[str, Any]:
    auth: dict[str, Any] = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.user_id},
                            "password": password}  # fmt: skip
    if session:
        auth["session"] = session
    return auth


def test_devices_lists_each_login_with_last_seen(dagma_server, make_client) -> None:
    alice = make_client()
    alice.put(f"/devices/{q(str(alice.device_id))}", {"display_name": "Desktop"})
    phone = _login(dagma_server.base_url, alice.user_id, initial_device_display_name="Phone")
    devices = {d["device_id"]: d for d in alice.get("/devices", spec="/devices").json["devices"]}
    assert set(devices) == {alice.device_id, phone.device_id}
    assert devices[phone.device_id]["display_name"] == "Phone"
    # The device making requests is seen: ts and address are recorded.
    assert devices[alice.device_id]["last_seen_ip"] == "127.0.0.1"
    assert devices[alice.device_id]["last_seen_ts"] > 0
    bob = make_client()
    assert [d["device_id"] for d in bob.get("/devices").json["devices"]] == [bob.device_id]


def test_get_device_and_unknown_device(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    alice.put(f"/devices/{q(str(alice.device_id))}", {"display_name": "Desktop"})
    got = alice.get(f"/devices/{q(str(alice.device_id))}", spec="/devices/{deviceId}").json
    assert got["device_id"] == alice.device_id
    # Someone else's device is not yours to see.
    r = alice.get(f"/devices/{q(bob.device_id)}", expect=404, spec="/devices/{deviceId}")
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_rename_device(dagma_server, make_client) -> None:
    alice = make_client()
    alice.put(f"/devices/{q(alice.device_id)}", {"display_name": "Work laptop"}, spec="/devices/{deviceId}")
    assert alice.get(f"/devices/{q(alice.device_id)}").json["display_name"] == "Work laptop"
    r = alice.put("/devices/NOSUCHDEVICE", {"display_name": "x"}, expect=404, spec="/devices/{deviceId}")
    assert r.json["errcode"] == "M_NOT_FOUND"
    r = alice.put(f"/devices/{q(alice.device_id)}", {"display_name": "x" * 101}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put(f"/devices/{q(alice.device_id)}", {"display_name": 7}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    assert alice.get(f"/devices/{q(alice.device_id)}").json["display_name"] == "Work laptop"


def test_delete_device_needs_the_password_and_kills_its_token_at_once(dagma_server, make_client) -> None:
    alice = make_client()
    phone = _login(dagma_server.base_url, alice.user_id)
    path = f"/devices/{q(str(phone.device_id))}"
    first = alice.delete(path, expect=401, spec="/devices/{deviceId}")
    assert first.json["flows"] == [{"stages": ["m.login.password"]}]
    wrong = alice.delete(path, {"auth": _password_auth(alice, "nope", first.json["session"])}, expect=401)
    assert wrong.json["errcode"] == "M_FORBIDDEN"
    phone.get("/account/whoami")
    alice.delete(
        path, {"auth": _password_auth(alice, PASSWORD, first.json["session"])}, spec="/devices/{deviceId}"
    )
    assert phone.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    assert [d["device_id"] for d in alice.get("/devices").json["devices"]] == [alice.device_id]


def test_delete_devices_session_is_bound_to_the_device_list(dagma_server, make_client) -> None:
    alice = make_client()
    phone, tablet = _login(dagma_server.base_url, alice.user_id), _login(dagma_server.base_url, alice.user_id)
    first = alice.post("/delete_devices", {"devices": [phone.device_id]}, expect=401, spec="/delete_devices")
    session = first.json["session"]
    # The session was started to delete the phone: it cannot delete the tablet as well.
    changed = alice.post(
        "/delete_devices", {"devices": [phone.device_id, tablet.device_id], "auth": _password_auth(alice, session=session)},
        expect=403,
    )  # fmt: skip
    assert changed.json["errcode"] == "M_FORBIDDEN"
    alice.post(
        "/delete_devices",
        {"devices": [phone.device_id], "auth": _password_auth(alice, session=session)},
        spec="/delete_devices",
    )
    assert phone.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    tablet.get("/account/whoami")


def test_delete_devices_in_one_request_with_password(dagma_server, make_client) -> None:
    alice = make_client()
    others = [_login(dagma_server.base_url, alice.user_id) for _ in range(3)]
    alice.post(
        "/delete_devices", {"devices": [o.device_id for o in others] + ["UNKNOWN"], "auth": _password_auth(alice)},
        spec="/delete_devices",
    )  # fmt: skip
    for o in others:
        assert o.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    bad = alice.post("/delete_devices", {"devices": "all"}, expect=400)
    assert bad.json["errcode"] == "M_INVALID_PARAM"


def test_deleting_your_own_device_logs_you_out(dagma_server, make_client) -> None:
    alice = make_client()
    alice.delete(
        f"/devices/{q(alice.device_id)}", {"auth": _password_auth(alice)}, spec="/devices/{deviceId}"
    )
    assert alice.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"


def test_an_unnamed_device_has_a_null_display_name_as_on_synapse(dagma_server, make_client) -> None:
    """Not the spec's "absent": matrix-nio rejects a device list without the key (see tribune/views/devices.py)."""
    alice = make_client()
    (device,) = alice.get("/devices").json["devices"]
    assert device["display_name"] is None
    assert device["last_seen_ip"] == "127.0.0.1" and isinstance(device["last_seen_ts"], int)
