"""The console's navigation: one entry per area, in this order, by URL name.

An entry shows only once its URL name is routed in ``politburo/urls.py``: each helper adds its
pages' routes (``name="users"`` etc.) and its entry appears, with no edit here. A new area
adds one line below. Pages that are not in the nav (details, forms) are reached by links.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavEntry:
    label: str
    #: The URL name of the area's index page.
    url_name: str


NAV: list[NavEntry] = [
    NavEntry("Dashboard", "dashboard"),
    NavEntry("Users", "users"),
    NavEntry("Rooms", "rooms"),
    NavEntry("Media", "media"),
    NavEntry("Reports", "reports"),
    NavEntry("Federation", "federation"),
    NavEntry("Keys", "keys"),
    NavEntry("Jobs", "jobs"),
    NavEntry("Audit", "audit"),
]


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    active: bool


def nav_links(request: HttpRequest) -> list[NavLink]:
    """The entries whose page exists, the current area marked (the longest matching prefix)."""
    links: list[tuple[str, str]] = []
    for entry in NAV:
        try:
            links.append((entry.label, reverse(entry.url_name)))
        except NoReverseMatch:
            continue
    best = max(
        (url for _, url in links if request.path == url or (url != "/" and request.path.startswith(url))),
        key=len,
        default=None,
    )
    return [NavLink(label, url, url == best) for label, url in links]
