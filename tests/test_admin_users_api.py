"""Politburo's Synapse-compatible admin API over accounts (``/_synapse/admin/...``), used with
the access token of a server admin, as operators' Synapse scripts do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, start_with_politburo

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, str]]:
    server = LiveServer(tmp_path_factory.mktemp("adminapi"))
    politburo = start_with_politburo(server)
    pw = server.workdir / "pw"
    pw.write_text(PASSWORD + "\n")
    made = server.manage("register_user", "root", "--admin", "--password-file", str(pw))
    assert made.returncode == 0, made.stderr
    root = MatrixClient(server.base_url)
    login = root.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"},
                                 "password": PASSWORD}, auth=False)  # fmt: skip
    try:
        yield server, politburo.base_url, login.json["access_token"]
    finally:
        politburo.stop()
        server.destroy()


def call(url: str, token: str | None, method: str = "GET", body: Any = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, url, headers=headers, json=body, params=params or None)


def test_only_server_admins_may_use_it(admin_api) -> None:
    server, base, token = admin_api
    url = base + "/_synapse/admin/v2/users"
    assert call(url, token).status_code == 200  # control
    user = MatrixClient(server.base_url).register()
    r = call(url, user.access_token)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    assert call(url, None).json()["errcode"] == "M_MISSING_TOKEN"
    assert call(url, "nope").json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert httpx.get(base + "/_synapse/admin/v1/server_version").json()["server_version"].startswith("Dagma ")
    # The admin API is Politburo's alone: the public server does not answer it.
    assert (
        httpx.get(
            server.base_url + "/_synapse/admin/v2/users", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )


def test_create_list_modify_reset_and_deactivate_a_user(admin_api) -> None:
    server, base, token = admin_api
    uid = "@dora:localhost"
    url = f"{base}/_synapse/admin/v2/users/{q(uid)}"
    created = call(url, token, "PUT", {"password": "dora password 1", "displayname": "Dora"})
    assert created.status_code == 201
    assert created.json()["name"] == uid and created.json()["displayname"] == "Dora"
    assert created.json()["admin"] is False and created.json()["deactivated"] is False
    dora = MatrixClient(server.base_url)
    dora.access_token = dora.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dora"},
                                             "password": "dora password 1"}, auth=False).json["access_token"]  # fmt: skip
    assert call(url, token).json()["displayname"] == "Dora"
    listed = call(base + "/_synapse/admin/v2/users", token, name="dora").json()
    assert [u["name"] for u in listed["users"]] == [uid] and listed["total"] == 1
    # Modify: admin flag and display name (which reaches her profile).
    modified = call(url, token, "PUT", {"admin": True, "displayname": "Dora the Admin"})
    assert modified.status_code == 200 and modified.json()["admin"] is True
    assert dora.get(f"/profile/{q(uid)}/displayname").json["displayname"] == "Dora the Admin"
    # Reset the password: her sessions end, the new password works.
    assert (
        call(
            f"{base}/_synapse/admin/v1/reset_password/{q(uid)}",
            token,
            "POST",
            {"new_password": "fresh password 2"},
        ).status_code
        == 200
    )
    assert dora.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    dora.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dora"},
                         "password": "fresh password 2"}, auth=False)  # fmt: skip
    # Deactivate: she can no longer log in, and the listing hides her unless asked.
    assert call(f"{base}/_synapse/admin/v1/deactivate/{q(uid)}", token, "POST", {}).json() == {
        "id_server_unbind_result": "success"
    }
    dora.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dora"},
                         "password": "fresh password 2"}, auth=False, expect=403)  # fmt: skip
    assert call(url, token).json()["deactivated"] is True
    assert call(base + "/_synapse/admin/v2/users", token, name="dora").json()["users"] == []
    assert (
        len(call(base + "/_synapse/admin/v2/users", token, name="dora", deactivated="true").json()["users"])
        == 1
    )


def test_pagination_and_bad_requests(admin_api) -> None:
    _, base, token = admin_api
    for i in range(3):
        call(
            f"{base}/_synapse/admin/v2/users/{q(f'@page{i}:localhost')}",
            token,
            "PUT",
            {"password": "page password"},
        )
    first = call(base + "/_synapse/admin/v2/users", token, name="page", limit="2").json()
    assert [u["name"] for u in first["users"]] == ["@page0:localhost", "@page1:localhost"] and first[
        "total"
    ] == 3
    second = call(
        base + "/_synapse/admin/v2/users", token, name="page", limit="2", **{"from": first["next_token"]}
    ).json()
    assert [u["name"] for u in second["users"]] == ["@page2:localhost"] and "next_token" not in second
    users = base + "/_synapse/admin/v2/users"
    assert call(users, token, limit="-1").status_code == 400
    assert call(users, token, guests="maybe").status_code == 400
    assert call(f"{users}/{q('@x:elsewhere.test')}", token).json()["errcode"] == "M_INVALID_PARAM"
    assert call(f"{users}/{q('@nobody:localhost')}", token).status_code == 404
    assert call(f"{users}/{q('@Bad:localhost')}", token, "PUT", {}).json()["errcode"] == "M_INVALID_USERNAME"
    assert call(f"{users}/{q('@ok1:localhost')}", token, "PUT", {"admin": "yes"}).status_code == 400
    assert call(f"{users}/{q('@ok1:localhost')}", token, "DELETE").status_code == 405
    me = f"{base}/_synapse/admin/v1/deactivate/{q('@root:localhost')}"
    assert call(me, token, "POST", {}).status_code == 400  # an admin cannot lock themself out here
