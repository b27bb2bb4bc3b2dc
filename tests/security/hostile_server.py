"""A hostile homeserver for the federation attack suite: its own signing keys, served over TLS,
signing its requests (``X-Matrix``) and its PDUs as a real server would, and answering Dagma's
requests back (keys, missing events) through handlers the tests set.

It plays by the rules only when a test wants it to: every builder takes the knobs an attacker
turns (the signing key, the server signing, the auth and prev events, the timestamp).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

from dagcore.protocol import signing
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.hashing import add_content_hash, compute_event_id
from dagcore.protocol.request_auth import authorization_header
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.protocol.signing import SigningKey
from tests.federation.certs import TestCA
from tests.federation.https_server import Answer, FakeHomeserver, Handler, Recorded
from tests.support.live import LiveServer

DAY_MS = 24 * 3600 * 1000


def q(value: str) -> str:
    return quote(value, safe="")


def now_ms() -> int:
    return int(time.time() * 1000)


def json_answer(body: Any, status: int = 200) -> Answer:
    return status, {}, json.dumps(body).encode()


class PrefixRoutes(dict[str, Handler]):
    """Routes matched on the longest path prefix (a federation path ends in IDs and a query)."""

    def get(self, path: str, default: Any = None) -> Any:
        best = max((p for p in self if path.startswith(p)), key=len, default=None)
        return self[best] if best is not None else default


class HostileServer:
    """A fake homeserver on loopback (``localhost:<port>``) with a CA-issued certificate.

    ``valid_until_ts`` (callable): what its key answer says; ``old_keys``: retired keys with
    their ``expired_ts``, listed under ``old_verify_keys``.
    """

    def __init__(self, ca: TestCA, stem: str, *, bind: str = "127.0.0.1") -> None:
        self.key = signing.generate_signing_key()
        self.old_keys: dict[str, tuple[SigningKey, int]] = {}
        self.valid_until_ts: Callable[[], int] = lambda: now_ms() + DAY_MS
        self.http = FakeHomeserver(ca.issue("localhost", "127.0.0.1", stem=stem))
        self.http.routes = PrefixRoutes({"/_matrix/key/v2/server": self._keys})
        self.server_name = f"localhost:{self.http.port}"
        self._lock = threading.Lock()

    # -- what Dagma asks us ------------------------------------------------------------

    def _keys(self, _: Recorded) -> Answer:
        body = {
            "server_name": self.server_name,
            "valid_until_ts": self.valid_until_ts(),
            "verify_keys": {signing.key_id(self.key): {"key": signing.encode_verify_key_base64(self.key)}},
            "old_verify_keys": {
                kid: {"key": signing.encode_verify_key_base64(k), "expired_ts": ts}
                for kid, (k, ts) in self.old_keys.items()
            },
        }
        return json_answer(signing.sign_json(body, server_name=self.server_name, signing_key=self.key))

    def route(self, prefix: str, handler: Handler) -> None:
        self.http.routes[prefix] = handler

    def requests_to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.http.requests if r.path.startswith(prefix)]

    def close(self) -> None:
        self.http.close()

    # -- requests to Dagma -------------------------------------------------------------

    def request(
        self,
        dagma: LiveServer,
        ca: TestCA,
        method: str,
        path: str,
        body: Any = None,
        *,
        origin: str | None = None,
        key: SigningKey | None = None,
        sign: bool = True,
        timeout: float = 60.0,
    ) -> tuple[int, Any]:
        """``method path`` to Dagma's federation listener, signed as ``origin`` with ``key``."""
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["Authorization"] = authorization_header(
                method=method,
                uri=path,
                origin=origin or self.server_name,
                destination=dagma.server_name,
                signing_key=key or self.key,
                content=body,
            )
        data = encode_canonical_json(body) if body is not None else None
        r = httpx.request(
            method,
            f"{dagma.federation_url}{path}",
            content=data,
            headers=headers,
            verify=ssl.create_default_context(cafile=str(ca.cert_path)),
            timeout=timeout,
        )
        try:
            parsed = r.json()
        except ValueError:
            parsed = r.text
        return r.status_code, parsed

    # -- events ------------------------------------------------------------------------

    def sign(
        self,
        pdu: dict[str, Any],
        version: RoomVersion,
        *,
        server_name: str | None = None,
        key: SigningKey | None = None,
    ) -> dict[str, Any]:
        return signing.sign_event(
            pdu,
            room_version=version,
            server_name=server_name or self.server_name,
            signing_key=key or self.key,
        )

    def pdu(
        self,
        version: RoomVersion,
        *,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        prev_events: list[str],
        auth_events: list[str],
        depth: int,
        state_key: str | None = None,
        origin_server_ts: int | None = None,
        server_name: str | None = None,
        key: SigningKey | None = None,
        signed: bool = True,
    ) -> dict[str, Any]:
        """A hashed (and unless ``signed=False``, signed) PDU; its ID is :func:`event_id`."""
        pdu: dict[str, Any] = {
            "room_id": room_id,
            "sender": sender,
            "type": event_type,
            "content": content,
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": depth,
            "origin_server_ts": origin_server_ts if origin_server_ts is not None else now_ms(),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu = add_content_hash(pdu)
        return self.sign(pdu, version, server_name=server_name, key=key) if signed else pdu

    def send(
        self,
        dagma: LiveServer,
        ca: TestCA,
        pdus: Iterable[dict[str, Any]] = (),
        edus: Iterable[dict[str, Any]] = (),
        *,
        txn_id: str | None = None,
    ) -> tuple[int, Any]:
        """``PUT /send/{txnId}`` with these PDUs and EDUs."""
        with self._lock:
            self._txn = getattr(self, "_txn", 0) + 1
            txn = txn_id or f"t{self._txn}-{now_ms()}"
        body = {
            "origin": self.server_name,
            "origin_server_ts": now_ms(),
            "pdus": list(pdus),
            "edus": list(edus),
        }
        return self.request(dagma, ca, "PUT", f"/_matrix/federation/v1/send/{q(txn)}", body)

    def do_membership(
        self,
        dagma: LiveServer,
        ca: TestCA,
        room_id: str,
        user_id: str,
        membership: str = "join",
    ) -> dict[str, Any]:
        """make_{membership} then send_{membership} for our ``user_id`` (join, leave or knock):
        the signed event as Dagma accepted it (200 asserted)."""
        make = {"join": "v1/make_join", "leave": "v1/make_leave", "knock": "v1/make_knock"}[membership]
        send = {"join": "v2/send_join", "leave": "v2/send_leave", "knock": "v1/send_knock"}[membership]
        ver = "" if membership == "leave" else "?" + "&".join(f"ver={v}" for v in ("10", "11", "12"))
        status, template = self.request(
            dagma, ca, "GET", f"/_matrix/federation/{make}/{q(room_id)}/{q(user_id)}{ver}"
        )
        assert status == 200, template
        version = get_room_version(template["room_version"])
        pdu = add_content_hash({**template["event"], "origin_server_ts": now_ms()})
        pdu = self.sign(pdu, version)
        eid = event_id(pdu, version)
        status, answer = self.request(
            dagma, ca, "PUT", f"/_matrix/federation/{send}/{q(room_id)}/{q(eid)}", pdu
        )
        assert status == 200, answer
        return pdu


def event_id(pdu: dict[str, Any], version: RoomVersion) -> str:
    return compute_event_id(pdu, version)


class DagmaDb:
    """One connection to Dagma's database for the test's reads (the machine's PostgreSQL is
    shared: a connection per query would churn through its client slots)."""

    def __init__(self, dagma: LiveServer) -> None:
        self.conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{dagma.db_name}", autocommit=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self.conn.close()


class RoomView:
    """What the hostile server knows of a room it joined: version, current state, tips, depth.

    Read from Dagma's database after each step (the test's view of what a real member would
    have learnt from the transactions it received).
    """

    def __init__(self, dagma: DagmaDb, room_id: str) -> None:
        self.dagma = dagma
        self.room_id = room_id
        [(version,)] = dagma.query("SELECT room_version FROM rooms WHERE room_id = %s", (room_id,))
        self.version = get_room_version(version)

    def state(self) -> dict[tuple[str, str], str]:
        rows = self.dagma.query(
            "SELECT c.type, c.state_key, e.event_id FROM current_state_events c "
            "JOIN events e ON e.id = c.event_id JOIN rooms r ON r.id = c.room_id WHERE r.room_id = %s",
            (self.room_id,),
        )
        return {(t, k): eid for t, k, eid in rows}

    def state_content(self, event_type: str, state_key: str = "") -> dict[str, Any] | None:
        rows = self.dagma.query(
            "SELECT e.json FROM current_state_events c JOIN events e ON e.id = c.event_id "
            "JOIN rooms r ON r.id = c.room_id WHERE r.room_id = %s AND c.type = %s AND c.state_key = %s",
            (self.room_id, event_type, state_key),
        )
        return json.loads(rows[0][0])["content"] if rows else None

    def tips(self) -> tuple[list[str], int]:
        """The forward extremities and the depth a new event on them takes."""
        [(raw,)] = self.dagma.query(
            "SELECT forward_extremities FROM rooms WHERE room_id = %s", (self.room_id,)
        )
        tips = [entry[1] for entry in json.loads(raw)]
        [(depth,)] = self.dagma.query(
            "SELECT max(e.depth) FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.room_id = %s",
            (self.room_id,),
        )
        return tips, int(depth) + 1

    def auth_for(
        self, sender: str, event_type: str, state_key: str | None = None, *, membership: str | None = None
    ) -> list[str]:
        """The auth events the spec selects for such an event, from the current state."""
        state = self.state()
        wanted: list[tuple[str, str]] = [("m.room.power_levels", ""), ("m.room.member", sender)]
        if not self.version.room_id_is_create_event_hash:
            wanted.insert(0, ("m.room.create", ""))
        if event_type == "m.room.member" and state_key is not None:
            wanted.append(("m.room.member", state_key))
            if membership in ("join", "invite", "knock"):
                wanted.append(("m.room.join_rules", ""))
        return list(dict.fromkeys(state[k] for k in wanted if k in state))


class InternalListener:
    """A listener standing for an internal service (127.0.0.2: loopback, outside the test's
    whitelist): it only counts the connections it gets, which must stay at zero."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


class WellKnownServer:
    """``https://localhost:443/.well-known/matrix/server`` (the spec's port: the only one a
    server name without a port is looked up on), answering what the test sets."""

    def __init__(self, ca: TestCA, port: int = 443) -> None:
        self.answer: Answer = json_answer({})
        self.requests: list[str] = []
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                status, headers, body = owner.answer
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        cert = ca.issue("localhost", "127.0.0.1", stem="wellknown")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
