"""The console's Media page: usage per user, look-up and preview, quarantine, protection,
deletion and purges. Every button calls the same ``dagcore.actions.media_admin`` action as the
admin API and ``manage.py purge_media``; purges show the dry run's counts first and delete at
most what they showed."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from django.urls import reverse

from dagcore.actions import media_admin as actions
from dagcore.cli.when import parse_point_in_time, parse_size
from dagcore.clock import now_ms
from dagcore.media.filestore import get_file_store
from dagcore.media.ids import is_valid_media_id
from dagcore.server_keys import get_server_name
from dagcore.store import media as media_store
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

#: Types the console previews inline (decoded by the browser as images, never as documents:
#: no SVG, which may carry script).
PREVIEW_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _mxc_parts(value: str) -> tuple[str, str]:
    value = value.strip().removeprefix("mxc://")
    server, _, media_id = value.partition("/")
    if not server or not media_id:
        raise ConsoleError(400, "Give an mxc:// URI such as mxc://example.org/AbCdEf, or server/media ID.")
    actions.check_location(server_name=server, media_id=media_id)
    return server, media_id


@console_page(methods=("GET",))
def media(request: ConsoleRequest) -> HttpResponse:
    """GET /media — usage per user (searchable), look-up, bulk quarantine and purge forms."""
    term = request.GET.get("q", "").strip()[:255]
    query: dict[str, Any] = {"order_by": "media_length", "dir": "b", "limit": "50"}
    if term:
        query["search_term"] = term
    usage = actions.media_usage(query)
    return render_page(request, "politburo/media/index.html", {"usage": usage, "q": term}, title="Media")


@console_page(methods=("GET",))
def media_view(request: ConsoleRequest) -> HttpResponse:
    """GET /media/view?mxc=... — one item: its facts, a preview, its buttons."""
    server, media_id = _mxc_parts(request.GET.get("mxc", ""))
    info = actions.media_info(server_name=server, media_id=media_id)["media_info"]
    local = server == get_server_name()
    previewable = local and info["media_type"] in PREVIEW_TYPES and not info["quarantined_by"]
    return render_page(
        request,
        "politburo/media/view.html",
        {"info": info, "mxc": f"mxc://{server}/{media_id}", "local": local, "previewable": previewable},
        title=f"Media {media_id}",
    )


@console_page(methods=("GET",))
def media_raw(request: ConsoleRequest, media_id: str) -> HttpResponseBase:
    """GET /media/raw/{mediaId} — the bytes of a local image for the preview (Politburo serves
    them itself: the public server may be elsewhere). Quarantined media is not shown."""
    if not is_valid_media_id(media_id):
        raise Http404
    row = media_store.get_local_media(media_id)
    if row is None or row.sha256 is None or row.quarantined or row.content_type not in PREVIEW_TYPES:
        raise Http404
    path = get_file_store().blob_path(row.sha256)
    if not path.is_file():
        raise Http404
    response = FileResponse(open(path, "rb"), content_type=row.content_type)  # noqa: SIM115 - closed by Django
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "no-store"
    return response


def _item_action(request: ConsoleRequest, action: str) -> str:
    server, media_id = _mxc_parts(form_str(request, "mxc", required=True))
    actor = console_actor(request)
    if action == "quarantine":
        n = actions.do_quarantine_one(actor=actor, server_name=server, media_id=media_id)
        return f"Quarantined ({n} item(s) with these bytes)." if n else "Nothing quarantined (protected?)."
    if action == "unquarantine":
        actions.do_unquarantine_one(actor=actor, server_name=server, media_id=media_id)
        return "Released from quarantine."
    if action in ("protect", "unprotect"):
        if server != get_server_name():
            raise ConsoleError(400, "Only local media can be protected.")
        actions.do_protect(actor=actor, media_id=media_id, protected=action == "protect")
        return "Protected." if action == "protect" else "Protection lifted."
    if action == "delete":
        require_password_confirmation(request)
        result = actions.check_delete_one(actor=actor, server_name=server, media_id=media_id)
        return f"Deleted: {result.files} file(s), {result.bytes} bytes freed."
    raise ConsoleError(400, "Unknown action.")


@console_page(methods=("POST",))
def media_item(request: ConsoleRequest) -> HttpResponseBase:
    """POST /media/item — quarantine, unquarantine, protect, unprotect or delete one item."""
    action = form_str(request, "action", required=True)
    notice = _item_action(request, action)
    if action == "delete":
        return redirect_with_notice(reverse("media"), notice)
    return redirect_with_notice(reverse("media_view") + "?mxc=" + form_str(request, "mxc"), notice)


@console_page(methods=("POST",))
def media_bulk_quarantine(request: ConsoleRequest) -> HttpResponseBase:
    """POST /media/quarantine — all media of a room, or all a user uploaded (protected spared)."""
    actor = console_actor(request)
    room_id, user_id = (
        form_str(request, "room_id", max_length=255),
        form_str(request, "user_id", max_length=255),
    )
    if bool(room_id) == bool(user_id):
        raise ConsoleError(400, "Give a room ID or a user ID.")
    require_password_confirmation(request)
    if room_id:
        n = actions.do_quarantine_room_media(actor=actor, room_id=room_id)
        return redirect_with_notice(reverse("media"), f"Quarantined {n} item(s) of {room_id}.")
    n = actions.do_quarantine_user_media(actor=actor, user_id=user_id)
    return redirect_with_notice(reverse("media"), f"Quarantined {n} item(s) uploaded by {user_id}.")


def _purge_params(request: ConsoleRequest) -> dict[str, Any]:
    kind = form_str(request, "kind", required=True)
    if kind not in ("local", "remote"):
        raise ConsoleError(400, "kind must be local or remote.")
    try:
        before_ts = int(form_str(request, "before_ts")) if form_str(request, "before_ts") else None
        if before_ts is None:
            before_ts = parse_point_in_time(
                form_str(request, "before", required=True, max_length=64), now=now_ms()
            )
        size_gt = parse_size(form_str(request, "size_gt", max_length=32) or "0") if kind == "local" else 0
    except ValueError as exc:
        raise ConsoleError(400, str(exc)) from None
    return {
        "local": kind == "local",
        "remote": kind == "remote",
        "before_ts": before_ts,
        "size_gt": size_gt,
        "keep_profiles": kind == "local" and request.POST.get("keep_profiles") == "on",
    }


@console_page(methods=("POST",))
def media_purge(request: ConsoleRequest) -> HttpResponseBase:
    """POST /media/purge — ``step=preview``: the dry run's counts and a confirm form;
    ``step=run``: the purge, refused if more items match than the preview showed."""
    params = _purge_params(request)
    actor = console_actor(request)
    if form_str(request, "step") != "run":
        preview = actions.do_purge_media(actor=actor, dry_run=True, **params)
        return render_page(
            request, "politburo/media/purge.html", {"params": params, "result": preview}, title="Purge media"
        )
    require_password_confirmation(request)
    try:
        at_most = int(form_str(request, "at_most", required=True))
    except ValueError:
        raise ConsoleError(400, "at_most must be a number.") from None
    done = actions.do_purge_media(actor=actor, at_most=at_most, **params)
    return redirect_with_notice(
        reverse("media"),
        f"Purged {done.local_media} local and {done.remote_media} remote item(s): "
        f"{done.files} file(s), {done.bytes} bytes freed.",
    )
