"""Console pages over accounts and registration tokens: the same actions as the admin API
(``dagcore.actions.admin_users``), audited ``via="console"``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.http import HttpResponse, HttpResponseBase

from dagcore.actions import admin_users as actions
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

PAGE_SIZE = 50
#: The list's filters, as admin API query parameters.
FILTERS: dict[str, dict[str, str]] = {
    "active": {},
    "all": {"deactivated": "true", "locked": "true"},
    "admins": {"admins": "true", "locked": "true"},
    "deactivated": {"deactivated": "true", "locked": "true", "_only_deactivated": "1"},
    "locked": {"locked": "true"},
    "suspended": {"suspended": "true", "locked": "true"},
    "shadow_banned": {"shadow_banned": "true", "locked": "true"},
}
ORDERS = {
    "name": "User ID",
    "creation_ts": "Created",
    "last_seen_ts": "Last seen",
    "displayname": "Display name",
}


def user_url(user_id: str) -> str:
    return "/users/" + quote(user_id, safe="")


@console_page(methods=("GET",))
def users(request: ConsoleRequest) -> HttpResponse:
    """GET /users — search, filter, sort and page the accounts."""
    q = request.GET.get("q", "").strip()[:255]
    flt = request.GET.get("filter", "active")
    if flt not in FILTERS:
        flt = "active"
    order = request.GET.get("order", "name")
    if order not in ORDERS:
        order = "name"
    direction = "b" if request.GET.get("dir") == "b" else "f"
    query = {k: v for k, v in FILTERS[flt].items() if not k.startswith("_")}
    query.update(
        {"from": request.GET.get("from", "0"), "limit": str(PAGE_SIZE), "order_by": order, "dir": direction}
    )
    if q:
        query["name"] = q
    page = actions.list_users(query, v3="_only_deactivated" in FILTERS[flt], only_locked=flt == "locked")
    base = {"q": q, "filter": flt, "order": order, "dir": direction}
    prev_from = max(0, page.offset - PAGE_SIZE)
    return render_page(
        request,
        "politburo/users/list.html",
        {
            "page": page,
            "q": q,
            "filter": flt,
            "filters": list(FILTERS),
            "order": order,
            "orders": ORDERS,
            "dir": direction,
            "next_url": f"/users?{urlencode({**base, 'from': page.next_token})}" if page.next_token else "",
            "prev_url": f"/users?{urlencode({**base, 'from': prev_from})}" if page.offset > 0 else "",
            "rows": [(u, user_url(u["name"])) for u in page.users],
        },
        title="Users",
    )


@console_page
def create_user(request: ConsoleRequest) -> HttpResponseBase:
    """GET /users/new — the form; POST: create the account."""
    if request.method == "POST":
        user = actions.check_create_user(
            actor=console_actor(request),
            localpart=form_str(request, "localpart", max_length=255, required=True),
            password=str(request.POST.get("password", "")),
            displayname=form_str(request, "displayname", max_length=256) or None,
            admin=request.POST.get("admin") == "on",
        )
        return redirect_with_notice(user_url(user.user_id), f"Created {user.user_id}.")
    return render_page(request, "politburo/users/new.html", {}, title="New user")


@console_page(methods=("GET",))
def user_detail(request: ConsoleRequest, user_id: str) -> HttpResponse:
    """GET /users/{userId} — the account, its devices, sessions, rooms, media and pushers."""
    user = actions.access_user(user_id)
    memberships = actions.get_memberships(user_id=user.user_id)
    return render_page(
        request,
        "politburo/users/detail.html",
        {
            "u": actions.get_user_json(user),
            "url": user_url(user.user_id),
            "devices": actions.list_devices_json(user=user)["devices"],
            "memberships": sorted(memberships.items()),
            "media": actions.list_media_json(user=user, query={"limit": "20"}),
            "pushers": actions.pushers_json(user=user)["pushers"],
            "ratelimit": actions.get_ratelimit_json(user=user),
            "logout_preview": actions.preview_logout_all(user=user),
            "deactivate_preview": actions.preview_deactivate(user=user),
            "is_self": user.user_id == request.admin.user_id,
        },
        title=user.user_id,
    )


def _not_more_than_previewed(request: ConsoleRequest, current: dict[str, int]) -> None:
    """A destructive action never ends more than its preview showed: if devices or tokens
    were added since the page was drawn, the admin looks again."""
    for key in ("devices", "access_tokens"):
        shown = request.POST.get(f"expected_{key}")
        if shown is None or not shown.isdigit():
            raise ConsoleError(400, "The preview counts are missing; open the user's page again.")
        if current[key] > int(shown):
            raise ConsoleError(
                409, f"The user has more {key.replace('_', ' ')} ({current[key]}) than the preview showed "
                f"({shown}); review the page again."
            )  # fmt: skip


@console_page(methods=("POST",))
def user_action(request: ConsoleRequest, user_id: str) -> HttpResponseBase:
    """POST /users/{userId}/action — one change (``action`` field), audited."""
    user = actions.access_user(user_id)
    actor, admin, what = console_actor(request), request.admin, request.POST.get("action", "")
    url = user_url(user.user_id)
    if what == "reset_password":
        counts = actions.check_reset_password(
            actor=actor,
            user_id=user.user_id,
            body={"new_password": str(request.POST.get("new_password", "")),
                  "logout_devices": request.POST.get("logout_devices") == "on"},
        )  # fmt: skip
        return redirect_with_notice(url, f"Password reset; logged out {counts.get('devices', 0)} devices.")
    if what == "logout_all":
        _not_more_than_previewed(request, actions.preview_logout_all(user=user))
        counts = actions.do_logout_everywhere(actor=actor, user=user)
        return redirect_with_notice(
            url,
            f"Logged out everywhere: {counts['devices']} devices, {counts['access_tokens']} access tokens.",
        )
    if what == "deactivate":
        require_password_confirmation(request)
        _not_more_than_previewed(request, actions.preview_deactivate(user=user))
        erase = request.POST.get("erase") == "on"
        actions.do_deactivate(actor=actor, admin=admin, user=user, erase=erase)
        return redirect_with_notice(url, "Deactivated" + (" and erased." if erase else "."))
    if what in ("make_admin", "unmake_admin"):
        require_password_confirmation(request)
        actions.do_set_admin(actor=actor, admin=admin, user=user, make_admin=what == "make_admin")
        return redirect_with_notice(
            url, "Admin rights granted." if what == "make_admin" else "Admin rights removed."
        )
    flags = {
        "suspend": ("suspended", True), "unsuspend": ("suspended", False),
        "shadow_ban": ("shadow_banned", True), "unshadow_ban": ("shadow_banned", False),
        "lock": ("locked", True), "unlock": ("locked", False),
    }  # fmt: skip
    if what in flags:
        flag, value = flags[what]
        actions.do_set_flag(actor=actor, admin=admin, user=user, flag=flag, value=value)
        return redirect_with_notice(
            url, f"{flag.replace('_', '-').capitalize()}: {'yes' if value else 'no'}."
        )
    if what == "delete_device":
        device_id = form_str(request, "device_id", max_length=255, required=True)
        deleted = actions.check_delete_devices(actor=actor, user=user, device_ids=[device_id])
        return redirect_with_notice(url, f"Deleted {deleted} device.")
    raise ConsoleError(400, "Unknown action.")


# --------------------------------------------------------------------------- registration tokens


def _expiry_from_form(value: str) -> int | None:
    """``<input type=datetime-local>`` (UTC) as ms, or None when empty."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(400, "The expiry is not a date and time.") from None
    return int(parsed.timestamp() * 1000)


def _uses_from_form(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 9:
        raise ConsoleError(400, "Uses allowed must be a whole number.")
    return int(value)


@console_page
def registration_tokens(request: ConsoleRequest) -> HttpResponseBase:
    """GET /registration-tokens — the tokens; POST: create, edit or revoke one."""
    if request.method == "POST":
        actor, what = console_actor(request), request.POST.get("action")
        token = form_str(request, "token", max_length=64)
        body: dict[str, Any] = {
            "uses_allowed": _uses_from_form(form_str(request, "uses_allowed", max_length=10)),
            "expiry_time": _expiry_from_form(form_str(request, "expiry", max_length=32)),
        }
        if what == "create":
            row = actions.check_create_registration_token(
                actor=actor, body={**body, **({"token": token} if token else {})}
            )
            return redirect_with_notice("/registration-tokens", f"Created token {row.token}.")
        if what == "edit":
            actions.check_update_registration_token(actor=actor, token=token, body=body)
            return redirect_with_notice("/registration-tokens", f"Updated token {token}.")
        if what == "revoke":
            actions.do_delete_registration_token(actor=actor, token=token)
            return redirect_with_notice("/registration-tokens", f"Revoked token {token}.")
        raise ConsoleError(400, "Unknown action.")
    valid = {"valid": True, "invalid": False}.get(request.GET.get("show", ""))
    rows = actions.list_registration_tokens(valid=valid)
    return render_page(
        request,
        "politburo/users/registration_tokens.html",
        {"tokens": [actions.registration_token_json(t) for t in rows], "show": request.GET.get("show", "")},
        title="Registration tokens",
    )
