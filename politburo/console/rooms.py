"""Console pages of the rooms area: the room list, a room's page with its actions, and reports.

Thin views over the same services as the admin API and the commands
(``dagcore.actions.room_admin``, ``room_admin_reads``, ``purge_history``,
``room_versions_admin``, ``admin_jobs``). Destructive actions ask for the password again;
a history purge is previewed first and the action runs on the preview's boundary (so it
removes at most what the preview showed); long work runs as an admin job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode

from django.core import signing
from django.http import HttpResponse
from django.urls import NoReverseMatch, reverse

from dagcore.actions import admin_jobs, admin_users, media_admin, purge_history, room_admin, room_admin_reads
from dagcore.actions import room_versions_admin as versions
from dagcore.http.errors import MatrixError
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS
from dagcore.store.purge import PurgeBoundary
from politburo.console.page import (
    ConsoleError,
    ConsoleRequest,
    console_actor,
    console_page,
    form_str,
    redirect_with_notice,
    render_page,
    require_password_confirmation,
)

#: The purge preview's boundary travels in the confirmation form, signed (Django's signing,
#: keyed by the project's secret), so the purge runs on exactly what was previewed.
PREVIEW_SALT = "politburo.purge-preview"
PREVIEW_MAX_AGE_S = 3600

#: Rooms per page of the room list.
PAGE_SIZE = 100

#: ``?sort=`` of the room list -> (column, largest first).
SORTS = {
    "name": ("name", False),
    "members": ("joined_members", True),
    "local": ("joined_local_members", True),
    "events": ("events", True),
    "state": ("state_events", True),
    "extremities": ("forward_extremities", True),
    "version": ("version", True),
    "encryption": ("encryption", False),
}


def _decoded(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Politburo routes on the raw path (``dagma_project.asgi.common.RawPathMiddleware``):
    a room ID typed as ``%21abc`` is decoded once, here."""

    @functools.wraps(view)
    def wrapper(request: ConsoleRequest, room_id: str) -> HttpResponse:
        return view(request, unquote(room_id))

    return wrapper


def _sort_key(row: dict[str, Any], column: str, largest_first: bool) -> tuple[int, Any]:
    value = row.get(column)
    if value is None:
        return (1, "")
    if column == "version":
        value = int(value) if str(value).isdigit() else 0
    if isinstance(value, bool):
        value = int(value)
    if largest_first and isinstance(value, int):
        return (0, -value)
    return (0, str(value).lower() if isinstance(value, str) else value)


def _room_url(room_id: str) -> str:
    return reverse("room", args=[room_id])


@console_page(methods=("GET",))
def rooms(request: ConsoleRequest) -> HttpResponse:
    """GET /rooms — every room, sortable (members, local members, events, state, extremities, version, encryption)."""
    sort = request.GET.get("sort", "members")
    if sort not in SORTS:
        raise ConsoleError(400, f"Unknown sort {sort!r}: one of {', '.join(SORTS)}")
    term = request.GET.get("q", "").strip()
    page_no = request.GET.get("page", "1")
    if not page_no.isdigit() or int(page_no) < 1:
        raise ConsoleError(400, "page must be a positive integer")
    # Events are counted for the rows shown only, unless they are what the list is sorted by.
    rows = room_admin.get_room_facts_for_console(with_event_counts=sort == "events")
    if term:
        low = term.lower()
        rows = [r for r in rows if low in (r["name"] or "").lower() or low in (r["canonical_alias"] or "").lower()
                or term in r["room_id"]]  # fmt: skip
    column, largest_first = SORTS[sort]
    rows.sort(key=lambda r: (_sort_key(r, column, largest_first), r["room_id"]))
    start = (int(page_no) - 1) * PAGE_SIZE
    shown = rows[start : start + PAGE_SIZE]
    if sort != "events":
        counts = room_admin.count_room_events([r["room_id"] for r in shown])
        for row in shown:
            row["events"] = counts.get(row["room_id"], 0)
    for row in shown:
        row["old_version"] = versions.version_flag(row["version"])
    jobs = [j for j in admin_jobs.list_jobs(limit=20) if j.kind in ("delete_room", "purge_history")]
    return render_page(request, "politburo/rooms/list.html", {
        "rooms": shown, "sort": sort, "sorts": list(SORTS), "q": term, "jobs": jobs, "total": len(rows),
        "page": int(page_no), "next_page": int(page_no) + 1 if start + PAGE_SIZE < len(rows) else None,
        "prev_page": int(page_no) - 1 if int(page_no) > 1 else None,
    }, title="Rooms")  # fmt: skip


@console_page(methods=("GET",))
@_decoded
def room(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """GET /rooms/{roomId} — state, members, power levels, aliases, extremities, media and the actions."""
    page = room_admin.get_room_page(room_id)
    page["media"] = room_admin_reads.get_room_media(room_id)
    page["jobs"] = [j for j in admin_jobs.list_jobs(target=room_id, limit=10)]
    page["versions"] = sorted(KNOWN_ROOM_VERSIONS, key=int)
    page["room_id"] = room_id
    page["dag_url"] = _dag_inspector_url(room_id)
    return render_page(request, "politburo/rooms/detail.html", page, title=page["details"]["name"] or room_id)


@console_page(methods=("POST",))
@_decoded
def room_block(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """POST /rooms/{roomId}/block — block (``block=1``) or unblock."""
    block = request.POST.get("block") == "1"
    room_admin.check_set_block(room_id=room_id, block=block, actor=console_actor(request))
    target = (
        _room_url(room_id) if room_admin.get_block_status(room_id) and _known(room_id) else reverse("rooms")
    )
    return redirect_with_notice(target, "Blocked." if block else "Unblocked.")


def _dag_inspector_url(room_id: str) -> str | None:
    """The DAG inspector's page of the room (helper dag's ``dag_room``), when it is routed."""
    try:
        return reverse("dag_room") + "?" + urlencode({"room_id": room_id})
    except NoReverseMatch:
        return None


def _known(room_id: str) -> bool:
    try:
        room_admin.access_room(room_id)
    except MatrixError:
        return False
    return True


@console_page(methods=("POST",))
@_decoded
def room_make_admin(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """POST /rooms/{roomId}/make_admin — give a local user the highest local power in the room."""
    require_password_confirmation(request)  # power given in a room cannot be taken back
    user_id = form_str(request, "user_id") or request.admin.user_id
    room_admin.check_make_room_admin(room_id_or_alias=room_id, user_id=user_id, admin_user_id=request.admin.user_id,
                                     actor=console_actor(request))  # fmt: skip
    return redirect_with_notice(_room_url(room_id), f"{user_id} is now an admin of the room.")


def _delete_request(request: ConsoleRequest, room_id: str) -> room_admin.DeleteRoomRequest:
    data = request.POST if request.method == "POST" else request.GET

    def text(name: str, max_length: int) -> str:
        value = str(data.get(name, "")).strip()
        if len(value) > max_length:
            raise ConsoleError(400, f"{name} is too long (at most {max_length} characters).")
        return value

    body: dict[str, Any] = {
        "block": data.get("block") == "1",
        "purge": data.get("purge") == "1",
        "force_purge": data.get("force_purge") == "1",
    }
    new_user = text("new_room_user_id", 255)
    if new_user:
        body["new_room_user_id"] = new_user
        body["room_name"] = text("room_name", 255) or room_admin.DEFAULT_ROOM_NAME
        body["message"] = text("message", 4000) or room_admin.DEFAULT_MESSAGE
    return room_admin.parse_delete_room(room_id, body)


@console_page
@_decoded
def room_delete(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """GET /rooms/{roomId}/delete?... — what deleting the room would do (nothing changes);
    POST — kick local members, optionally block, purge, move them to a new room (a job)."""
    parsed = _delete_request(request, room_id)
    if request.method != "POST":
        preview = room_admin.get_delete_preview(parsed)
        return render_page(request, "politburo/rooms/delete_preview.html", {"room_id": room_id, "preview": preview,
                                                                             "req": parsed}, title="Delete room")  # fmt: skip
    require_password_confirmation(request)
    job = admin_jobs.do_start_job(kind="delete_room", target=room_id, params={**parsed.as_json(), "via": "console"},
                                  actor=console_actor(request))  # fmt: skip
    return redirect_with_notice(reverse("rooms"), f"Deleting {room_id}: job {job.job_id}.")


def _before(request: ConsoleRequest) -> tuple[int | None, str | None]:
    raw = (request.GET.get("before") or request.POST.get("before") or "").strip()
    if not raw:
        raise ConsoleError(400, "Give a date (2026-11-01), a duration (30d) or an event ID.")
    kind, value = purge_history.parse_before(raw)
    return (value, None) if kind == "ts" else (None, str(value))  # type: ignore[return-value]


@console_page
@_decoded
def room_purge(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """GET /rooms/{roomId}/purge?before=...&delete_local=1 — the preview (nothing changes);
    POST — run the previewed purge (its boundary) as an admin job."""
    if request.method == "POST":
        return _run_purge(request, room_id)
    before_ts, before_event = _before(request)
    preview = purge_history.get_purge_preview(
        room_id=room_id, before_ts=before_ts, before_event_id=before_event,
        delete_local_events=request.GET.get("delete_local") == "1",
    )  # fmt: skip
    purge_history.record_purge_dry_run(preview=preview, actor=console_actor(request))
    return render_page(request, "politburo/rooms/purge_preview.html", {
        "room_id": room_id, "preview": preview, "before": request.GET.get("before", ""),
        "boundary": signing.dumps(preview.boundary.as_json(), salt=PREVIEW_SALT),
    }, title="Purge history")  # fmt: skip


def _run_purge(request: ConsoleRequest, room_id: str) -> HttpResponse:
    require_password_confirmation(request)
    try:
        data = signing.loads(request.POST.get("boundary", ""), salt=PREVIEW_SALT, max_age=PREVIEW_MAX_AGE_S)
        boundary = PurgeBoundary.from_json(data)
    except (signing.BadSignature, ValueError, KeyError, TypeError):
        raise ConsoleError(
            400, "The preview is missing, altered or older than an hour: preview again."
        ) from None
    if boundary.room_id != room_id:
        raise ConsoleError(400, "The preview is of another room: preview again.")
    job = admin_jobs.do_start_job(kind="purge_history", target=room_id,
                                  params={"boundary": boundary.as_json(), "via": "console"},
                                  actor=console_actor(request))  # fmt: skip
    return redirect_with_notice(_room_url(room_id), f"Purge started: job {job.job_id}.")


@console_page(methods=("POST",))
@_decoded
def room_drop_extremities(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """POST /rooms/{roomId}/extremities — keep only the newest forward extremity."""
    require_password_confirmation(request)
    done = room_admin.check_delete_forward_extremities(room_id_or_alias=room_id, actor=console_actor(request))
    return redirect_with_notice(_room_url(room_id), f"Dropped {done['deleted']} forward extremities.")


@console_page(methods=("POST",))
@_decoded
def room_upgrade(request: ConsoleRequest, room_id: str) -> HttpResponse:
    """POST /rooms/{roomId}/upgrade — upgrade to another room version (by the most powerful local member)."""
    require_password_confirmation(request)
    plan = versions.plan_upgrade(room_id=room_id, to_version=form_str(request, "version", required=True))
    new_room = versions.check_upgrade_planned_room(plan=plan, actor=console_actor(request))
    return redirect_with_notice(_room_url(new_room), f"Upgraded: {room_id} is replaced by {new_room}.")


# --------------------------------------------------------------------------- reports


@console_page(methods=("GET",))
def reports(request: ConsoleRequest) -> HttpResponse:
    """GET /reports — event, room and user reports, unhandled first (``?kind=``, ``?all=1``)."""
    kind = request.GET.get("kind") or None
    show_all = request.GET.get("all") == "1"
    rows = room_admin_reads.get_reports_for_console(kind=kind, unresolved_only=not show_all)
    return render_page(request, "politburo/rooms/reports.html", {"reports": rows, "kind": kind or "",
                                                                  "show_all": show_all}, title="Reports")  # fmt: skip


@console_page(methods=("POST",))
def report_action(request: ConsoleRequest, report_id: int) -> HttpResponse:
    """POST /reports/{id} — ``action``: redact, remove (the sender from the room), suspend or
    deactivate (the sender's account, local senders), quarantine (the media reported), dismiss,
    delete (the report)."""
    action = request.POST.get("action", "")
    row = room_admin_reads.get_report_row(report_id)
    actor = console_actor(request)
    sender = _report_sender(row)
    if action in ("redact", "deactivate"):
        require_password_confirmation(request)  # neither can be undone
    if action == "redact":
        if not row.event_id or not row.room_id:
            raise ConsoleError(400, "Only an event report has an event to redact.")
        room_admin.check_admin_redact_event(room_id=row.room_id, event_id=row.event_id,
                                            reason=form_str(request, "reason") or "Removed by the server admins",
                                            actor=actor)  # fmt: skip
        notice = "Event redacted."
    elif action == "remove":
        if not row.room_id or not sender:
            raise ConsoleError(400, "This report names no room member to remove.")
        room_admin.check_remove_from_room(room_id=row.room_id, user_id=sender, reason=form_str(request, "reason"),
                                          actor=actor)  # fmt: skip
        notice = f"{sender} removed from the room."
    elif action == "deactivate":
        if not sender:
            raise ConsoleError(400, "This report names no user.")
        admin_users.check_deactivate(actor=actor, admin=request.admin, user_id=sender, body={"erase": False})
        notice = f"{sender} deactivated."
    elif action == "suspend":
        if not sender:
            raise ConsoleError(400, "This report names no user.")
        admin_users.check_suspend(actor=actor, admin=request.admin, user_id=sender, body={"suspend": True})
        notice = f"{sender} suspended."
    elif action == "quarantine":
        # The media the report is about: the event's files, else the room's, else the user's uploads.
        if row.event_id:
            content = room_admin_reads.fetch_event(row.event_id)["event"].get("content")
            count = media_admin.do_quarantine_event_media(actor=actor, content=content)
        elif row.room_id:
            count = media_admin.do_quarantine_room_media(actor=actor, room_id=row.room_id)
        elif sender:
            count = media_admin.do_quarantine_user_media(actor=actor, user_id=sender)
        else:
            raise ConsoleError(400, "This report names no media.")
        notice = f"{count} media item(s) quarantined."
    elif action == "dismiss":
        room_admin_reads.check_dismiss_report(report_id=report_id, actor=actor)
        notice = "Report dismissed."
    elif action == "delete":
        room_admin_reads.check_delete_event_report(report_id=str(report_id), actor=actor)
        notice = "Report deleted."
    else:
        raise ConsoleError(400, "Unknown action.")
    return redirect_with_notice(reverse("reports"), notice)


def _report_sender(row: Any) -> str | None:
    if row.reported_user_id:
        return str(row.reported_user_id)
    if row.event_id:
        try:
            return str(room_admin_reads.fetch_event(row.event_id)["event"]["sender"])
        except MatrixError:
            return None
    return None
