"""A small synchronous Matrix client for API tests (httpx), with spec validation built in."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.spec import validate_response

CS = "/_matrix/client/v3"


def q(value: str) -> str:
    """Percent-encode one path segment (event IDs may contain '/')."""
    return quote(value, safe="")


class Response:
    def __init__(self, r: httpx.Response) -> None:
        self.raw = r
        self.status = r.status_code
        try:
            self.json: Any = r.json()
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.json!r}>"


class MatrixClient:
    def __init__(self, base_url: str, access_token: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.user_id: str | None = None
        self.device_id: str | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        expect: int | None = 200,
        spec: str | None = None,
        auth: bool = True,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """``spec``: the spec's path template (e.g. "/rooms/{roomId}/join") to validate the answer against."""
        hdrs = dict(headers or {})
        if auth and self.access_token:
            hdrs["Authorization"] = f"Bearer {self.access_token}"
        url = path if path.startswith(("/_matrix", "/.well-known", "/health")) else CS + path
        r = self.http.request(
            method, url, json=body if content is None else None, content=content, params=params, headers=hdrs
        )
        resp = Response(r)
        if expect is not None:
            assert resp.status == expect, (
                f"{method} {url}: expected {expect}, got {resp.status}: {r.text[:500]}"
            )
        if spec is not None:
            validate_response(method, spec, resp.status, resp.json)
        return resp

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, {} if body is None else body, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("DELETE", path, body, **kw)

    # -- conveniences --------------------------------------------------------------

    def register(self, localpart: str | None = None, password: str = "correct horse battery") -> MatrixClient:
        localpart = localpart or f"user{secrets.token_hex(4)}"
        body = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}}
        r = self.post("/register", body, auth=False)
        self.access_token = r.json["access_token"]
        self.user_id = r.json["user_id"]
        self.device_id = r.json.get("device_id")
        return self

    def create_room(self, **body: Any) -> str:
        return str(self.post("/createRoom", body).json["room_id"])

    def send(
        self,
        room_id: str,
        body: str = "hello",
        event_type: str = "m.room.message",
        content: dict[str, Any] | None = None,
    ) -> str:
        content = content or {"msgtype": "m.text", "body": body}
        r = self.put(f"/rooms/{q(room_id)}/send/{q(event_type)}/{secrets.token_hex(8)}", content)
        return str(r.json["event_id"])

    def join(self, room_id_or_alias: str) -> str:
        return str(self.post(f"/join/{q(room_id_or_alias)}").json["room_id"])

    def sync(self, since: str | None = None, timeout: int = 0, **params: Any) -> dict[str, Any]:
        p = {"timeout": timeout, **params}
        if since:
            p["since"] = since
        result: dict[str, Any] = self.get("/sync", params=p).json
        return result
