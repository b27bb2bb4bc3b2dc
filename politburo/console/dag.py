"""Console pages of the DAG doctor and inspector (issues 13 and 14).

Room and event IDs travel as query parameters: v3 event IDs may hold ``/``, and room IDs
``!`` and ``:``, none of which a path segment carries safely.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.utils.safestring import mark_safe

from dagcore.actions.admin_jobs import do_start_job, list_jobs
from dagcore.actions.dag_check import RoomUnknown, check_room_dag, get_latest_dag_check
from dagcore.actions.dag_forks import get_room_forks
from dagcore.actions.dag_inspector import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    EventUnknown,
    get_dag_window,
    get_event_report,
    pdu_json,
    status_of,
)
from dagcore.dag_picture import PictureNode, layout, render_svg
from dagcore.store.dag_doctor import DagNode
from politburo.console.page import (
    ConsoleError,
    ConsoleRequest,
    console_actor,
    console_page,
    redirect_with_notice,
    render_page,
)

MAX_ID = 255


def _id_param(request: ConsoleRequest, name: str, sigil: str) -> str:
    value = str(request.GET.get(name, "")).strip()
    if not value:
        raise ConsoleError(400, f"{name} is required.")
    if len(value) > MAX_ID or not value.startswith(sigil):
        raise ConsoleError(
            400, f"{name} must be an ID starting with {sigil!r} (at most {MAX_ID} characters)."
        )
    return value


def _int_param(request: ConsoleRequest, name: str, *, default: int | None, low: int, high: int) -> int | None:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise ConsoleError(400, f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise ConsoleError(400, f"{name} must be between {low} and {high}.")
    return value


def event_url(event_id: str) -> str:
    return reverse("dag_event") + "?" + urlencode({"event_id": event_id})


def room_url(room_id: str, **extra: object) -> str:
    return reverse("dag_room") + "?" + urlencode({"room_id": room_id, **extra})


def _picture_node(node: DagNode, *, extremities: set[str], focus: str | None = None) -> PictureNode:
    status = status_of(node)
    what = node.type if node.state_key is None else f"{node.type} [{node.state_key}]"
    title = f"{node.event_id}\n{what}\nby {node.sender}, depth {node.depth}, {status.replace('_', '-')}"
    if node.rejected_reason:
        title += f": {node.rejected_reason}"
    return PictureNode(
        event_id=node.event_id, label=node.type, sublabel=node.state_key or node.sender, depth=node.depth,
        order=node.nid, prev_ids=node.prev_ids, auth_ids=node.auth_ids, status=status,
        redacted=node.redacted_by is not None, extremity=node.event_id in extremities,
        href=event_url(node.event_id), title=title, focus=node.event_id == focus,
    )  # fmt: skip


@console_page
def dag_index(request: ConsoleRequest) -> HttpResponseBase:
    """GET /dag — the last ``dag check`` outcome, and a room to inspect (``?room_id=``).
    POST /dag — check every room, as an admin job (read-only: no password asked)."""
    if request.method == "POST":
        job = do_start_job(kind="dag_check", target="all rooms", params={}, actor=console_actor(request))
        return redirect_with_notice(reverse("dag"), f"The check of every room started (job {job.job_id}).")
    if request.GET.get("room_id"):
        return HttpResponseRedirect(room_url(_id_param(request, "room_id", "!")))
    jobs = list_jobs(kind="dag_check", limit=1)
    context = {"latest": get_latest_dag_check(), "job": jobs[0] if jobs else None}
    return render_page(request, "politburo/dag/index.html", context, title="DAG")


@console_page(methods=("GET",))
def dag_room(request: ConsoleRequest) -> HttpResponse:
    """GET /dag/room?room_id=&limit=&before=&auth=1&check=1 — a room's newest events as a picture
    and a table (``before`` pages back; ``auth=1`` draws auth edges; ``check=1`` runs the check)."""
    room_id = _id_param(request, "room_id", "!")
    limit = _int_param(request, "limit", default=DEFAULT_WINDOW, low=1, high=MAX_WINDOW) or DEFAULT_WINDOW
    before = _int_param(request, "before", default=None, low=1, high=2**62)
    show_auth = request.GET.get("auth") == "1"
    try:
        window = get_dag_window(room_id, limit=limit, before=before)
        check = check_room_dag(room_id) if request.GET.get("check") == "1" else None
    except RoomUnknown:
        raise ConsoleError(404, "No such room on this server.") from None
    pictured = [_picture_node(n, extremities=window.extremities) for n in window.nodes]
    base = {"limit": limit, **({"before": before} if before else {})}
    context = {
        "room_id": room_id,
        "window": window,
        "rows": [(n, status_of(n), event_url(n.event_id), n.event_id in window.extremities) for n in window.nodes],
        # Drawn by dagcore.dag_picture, which escapes every text and attribute it writes.
        "svg": mark_safe(render_svg(pictured, show_auth=show_auth)),  # noqa: S308
        "show_auth": show_auth,
        "toggle_auth_url": room_url(room_id, **base, **({} if show_auth else {"auth": "1"})),
        "older_url": room_url(room_id, limit=limit, before=window.older, **({"auth": "1"} if show_auth else {}))
        if window.older else None,
        "newest_url": room_url(room_id, limit=limit) if before else None,
        "check_url": room_url(room_id, **base, check="1"),
        "forks_url": reverse("dag_forks") + "?" + urlencode({"room_id": room_id}),
        "check": check,
    }  # fmt: skip
    return render_page(request, "politburo/dag/room.html", context, title=f"DAG of {room_id}")


@console_page(methods=("GET",))
def dag_event(request: ConsoleRequest) -> HttpResponse:
    """GET /dag/event?event_id= — one event: PDU, signatures, ancestry, state, children, auth verdicts."""
    event_id = _id_param(request, "event_id", "$")
    try:
        report = get_event_report(event_id)
    except EventUnknown:
        raise ConsoleError(404, "No such event stored on this server.") from None
    extremities = {event_id} if report.is_extremity else set()
    pictured = [_picture_node(n, extremities=extremities, focus=event_id) for n in report.ancestry]
    context = {
        "report": report,
        "event_id": event_id,
        "pdu": json.dumps(pdu_json(report.stored), indent=2, sort_keys=True, ensure_ascii=False),
        # Ancestry: auth events are ancestors too, so they lay out below what they authorise.
        "svg": mark_safe(  # noqa: S308 - escaped by dag_picture
            render_svg(pictured, show_auth=True, lay=layout(pictured, include_auth=True))
        ),
        "room_url": room_url(report.room_id),
        "children": [(c, event_url(c.event_id)) for c in report.children],
        "redacted_by_url": event_url(report.stored.redacted_by) if report.stored.redacted_by else "",
    }
    return render_page(request, "politburo/dag/event.html", context, title=f"Event {event_id}")


@console_page(methods=("GET",))
def dag_forks(request: ConsoleRequest) -> HttpResponse:
    """GET /dag/forks?room_id= — the room's forward extremities and the resolution of their
    states, explained (what ``manage.py dag forks --explain`` prints)."""
    room_id = _id_param(request, "room_id", "!")
    try:
        report = get_room_forks(room_id, explain=True)
    except RoomUnknown:
        raise ConsoleError(404, "No such room on this server.") from None
    context = {
        "report": report,
        "room_id": room_id,
        "extremities": [(e, event_url(e["event_id"])) for e in report.extremities],
        "download_url": reverse("dag_forks_input") + "?" + urlencode({"room_id": room_id}),
        "room_url": room_url(room_id),
    }
    return render_page(request, "politburo/dag/forks.html", context, title=f"Forks of {room_id}")


@console_page(methods=("GET",))
def dag_forks_input(request: ConsoleRequest) -> HttpResponse:
    """GET /dag/forks/resolve.json?room_id= — the ``manage.py dag resolve FILE`` input of the
    room's current resolution, as a download."""
    room_id = _id_param(request, "room_id", "!")
    try:
        report = get_room_forks(room_id, explain=False)
    except RoomUnknown:
        raise ConsoleError(404, "No such room on this server.") from None
    body = json.dumps(report.resolve_input, ensure_ascii=False, sort_keys=True, indent=1)
    response = HttpResponse(body.encode(), content_type="application/json")
    safe = "".join(c if c.isalnum() else "_" for c in room_id)[:80]
    response["Content-Disposition"] = f'attachment; filename="resolve-{safe}.json"'
    return response
