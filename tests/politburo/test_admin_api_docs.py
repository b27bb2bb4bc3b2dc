"""``docs/admin-api.md`` lists every endpoint of Synapse's admin API as served, not
applicable (and why) or not yet; this keeps it true both ways: a row marked served is routed
in Politburo and answers its method, a row not marked served is not, and every admin API
route Politburo has is listed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.urls import Resolver404, get_resolver, resolve

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin-api.md"
STATUSES = ("served", "not applicable", "not yet")
#: A value for each placeholder of Synapse's paths.
SAMPLES = {
    "user_id": "@someone:localhost", "room_id": "!room:localhost", "room_id_or_alias": "!room:localhost",
    "event_id": "$event", "report_id": "1", "media_id": "abcdef", "origin": "localhost",
    "server_name": "localhost", "token": "abcd", "destination": "example.org", "txnId": "t1",
    "redact_id": "r1", "delete_id": "d1", "purge_id": "p1", "device_id": "DEVICE",
    "provider": "oidc", "external_id": "x", "medium": "email", "address": "a@example.org",
}  # fmt: skip


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    status: str
    note: str


def read_rows(doc: Path = DOC) -> list[Row]:
    rows = []
    for line in doc.read_text().splitlines():
        m = re.match(r"\| (GET|PUT|POST|DELETE) \| `([^`]+)` \| ([a-z ]+) \| (.*) \|$", line)
        if m:
            rows.append(Row(m.group(1), m.group(2), m.group(3), m.group(4).strip()))
    return rows


def concrete_paths(path: str) -> list[str]:
    """The path with sample values (both forms of an optional ``[/<event_id>]``)."""
    forms = [path]
    optional = re.search(r"\[(/[^\]]+)\]", path)
    if optional:
        forms = [path.replace(optional.group(0), ""), path.replace(optional.group(0), optional.group(1))]

    def fill(m: re.Match[str]) -> str:
        return quote(SAMPLES[m.group(1)], safe="")

    return [re.sub(r"[<{](\w+)[>}]", fill, form) for form in forms]


def served(method: str, path: str) -> bool:
    """Whether Politburo routes every form of ``path`` to a view answering ``method``."""
    for concrete in concrete_paths(path):
        try:
            match = resolve(concrete, urlconf="politburo.urls")
        except Resolver404:
            return False
        view_class = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
        if view_class is None or not hasattr(view_class, method.lower()):
            return False
    return True


def test_the_document_lists_synapses_endpoints_with_a_known_status() -> None:
    rows = read_rows()
    assert len(rows) >= 100, "the table lost rows"
    assert {r.status for r in rows} <= set(STATUSES)
    assert len({(r.method, r.path) for r in rows}) == len(rows), "a row is listed twice"
    for row in rows:
        if row.status == "not applicable":
            assert row.note, f"{row.method} {row.path}: not applicable needs the reason"


@pytest.mark.parametrize("row", read_rows(), ids=lambda r: f"{r.method} {r.path}")
def test_a_row_is_served_exactly_when_politburo_serves_it(row: Row) -> None:
    assert served(row.method, row.path) == (row.status == "served"), (
        f"{row.method} {row.path} is marked {row.status!r}: update docs/admin-api.md"
    )


def test_every_admin_api_route_of_politburo_is_in_the_document() -> None:
    listed = [
        re.compile(p)
        for p in (pattern.pattern.regex.pattern for pattern in get_resolver("politburo.urls").url_patterns)
    ]
    documented = [c for r in read_rows() if r.status == "served" for c in concrete_paths(r.path)]
    for regex in listed:
        if "_synapse" not in regex.pattern:
            continue
        assert any(regex.match(path.lstrip("/")) for path in documented), (
            f"{regex.pattern} is not in docs/admin-api.md"
        )
