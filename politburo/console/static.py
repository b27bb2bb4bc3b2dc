"""The console's few static files, served by Politburo itself (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Only these names are served (no directory walking).
FILES = {"politburo.css": "text/css; charset=utf-8", "politburo.js": "text/javascript; charset=utf-8"}


def static_file(request: HttpRequest, name: str) -> HttpResponse:
    """GET /static/{name} — the console's stylesheet and script."""
    content_type = FILES.get(name)
    if content_type is None:
        raise Http404(name)
    return HttpResponse((STATIC_DIR / name).read_bytes(), content_type=content_type)
