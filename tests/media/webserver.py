"""A small HTTP server on 127.0.0.1 for URL preview tests (what a preview must not reach by default)."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.media import images

PAGE_IMAGE = images.png(300, 200, (0, 128, 0))


def page_html(image_path: str = "/image.png") -> bytes:
    return f"""<!doctype html><html><head>
<meta charset="utf-8">
<title>Fallback title</title>
<meta property="og:title" content="Dagma &amp; friends">
<meta property="og:description" content="A Matrix homeserver">
<meta property="og:image" content="{image_path}">
<meta property="og:image:width" content="9999">
</head><body><meta property="og:late" content="ignored"></body></html>""".encode()


class TestServer(ThreadingHTTPServer):
    daemon_threads = True
    #: Paths requested, in order (to prove a refused URL was never contacted).
    hits: list[str]

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that give up early (size caps, timeouts: the point of several tests)
        # break the pipe; a traceback printed from this thread would land in whatever
        # test captures stderr next.
        pass


class _Handler(BaseHTTPRequestHandler):
    server_version = "TestServer"
    server: TestServer

    def log_message(self, *args: object) -> None:
        pass

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_port
        self.server.hits.append(self.path)
        if self.path == "/page":
            self._send(200, page_html(), "text/html; charset=utf-8")
        elif self.path == "/image.png":
            self._send(200, PAGE_IMAGE, "image/png")
        elif self.path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": "/page"})
        elif self.path == "/redirect-to-ipv6-loopback":
            self._send(302, b"", "text/plain", {"Location": f"http://[::1]:{port}/page"})
        elif self.path == "/redirect-to-other-loopback":
            self._send(302, b"", "text/plain", {"Location": f"http://127.0.0.2:{port}/page"})
        elif self.path == "/redirect-loop":
            self._send(302, b"", "text/plain", {"Location": "/redirect-loop"})
        elif self.path == "/big":
            self._send(200, b"x" * (3 * 1024 * 1024), "text/html")
        elif self.path == "/big-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(3 * 64):
                self.wfile.write(b"y" * 16384)
            self.close_connection = True
        elif self.path == "/gzip-bomb":
            self._send(
                200, gzip.compress(b"\0" * (50 * 1024 * 1024)), "text/html", {"Content-Encoding": "gzip"}
            )
        elif self.path == "/slow":
            time.sleep(3)
            self._send(200, page_html(), "text/html")
        elif self.path == "/plain":
            self._send(200, b"just text", "text/plain")
        else:
            self._send(404, b"nope", "text/plain")


@contextmanager
def serve() -> Iterator[TestServer]:
    server = TestServer(("127.0.0.1", 0), _Handler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def base_url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"
