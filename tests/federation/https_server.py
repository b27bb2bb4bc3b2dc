"""A small HTTPS server on loopback that plays another homeserver (or its web server) in tests.

Routes map a raw path (query included) to a handler returning ``(status, headers, body)``;
every request is recorded with its SNI name, so tests can check what the client sent.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.federation.certs import ServerCert

Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[["Recorded"], Answer]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    authorization: list[str]
    body: bytes
    sni: str | None


@dataclass
class FakeHomeserver:
    cert: ServerCert
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    #: Set to hold every answer until released (a server that never answers).
    hold: threading.Event | None = None

    def __post_init__(self) -> None:
        owner = self
        last_sni: dict[int, str | None] = {}

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    authorization=self.headers.get_all("Authorization") or [],
                    body=body,
                    sni=last_sni.get(id(self.connection)),
                )
                owner.requests.append(record)
                if owner.hold is not None:
                    owner.hold.wait(30)
                handler = owner.routes.get(self.path)
                status, headers, payload = (
                    handler(record) if handler else (404, {}, b'{"errcode":"M_UNRECOGNIZED"}')
                )
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert.cert_path), str(self.cert.key_path))

        def remember_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            last_sni[id(sock)] = name

        context.sni_callback = remember_sni
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self._httpd.shutdown()
        self._httpd.server_close()
