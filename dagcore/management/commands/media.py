"""``manage.py media <action> ...``: one item or a room's or user's media, by hand
(``dagcore.actions.media_admin``, as the admin API and the console). Purges: ``purge_media``.

    media info MXC                    facts of one item (local, or a cached copy of another server's)
    media quarantine MXC              never served again (404); the same bytes elsewhere too
    media unquarantine MXC
    media protect MEDIA_ID            never quarantined in bulk nor purged
    media unprotect MEDIA_ID
    media delete MXC [--dry-run]      local media: rows, thumbnails, files no other row uses
    media quarantine-room ROOM_ID     every item the room's events point at (protected spared)
    media quarantine-user USER_ID     every item the user uploaded (protected spared)
    media usage [--search TERM]       items and bytes per local user, largest first
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import media_admin as actions
from dagcore.actions.audit import Actor
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name

_ONE = ("info", "quarantine", "unquarantine", "delete")


def _mxc(value: str) -> tuple[str, str]:
    server, _, media_id = value.removeprefix("mxc://").partition("/")
    if not server or not media_id:
        raise CommandError(f"{value!r} is not mxc://server/media_id", returncode=2)
    return server, media_id


class Command(BaseCommand):
    help = "Quarantine, protect, delete or look up media; usage per user (purges: purge_media)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name in _ONE:
            p = sub.add_parser(name)
            p.add_argument("mxc", help="mxc://server/media_id")
            if name == "delete":
                p.add_argument("--dry-run", action="store_true")
            p.add_argument("--json", action="store_true")
        for name in ("protect", "unprotect"):
            p = sub.add_parser(name)
            p.add_argument("media_id")
            p.add_argument("--json", action="store_true")
        for name, arg in (("quarantine-room", "room_id"), ("quarantine-user", "user_id")):
            p = sub.add_parser(name)
            p.add_argument(arg)
            p.add_argument("--json", action="store_true")
        p = sub.add_parser("usage")
        p.add_argument("--search")
        p.add_argument("--limit", default="100")
        p.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            out, text = self._run(options)
        except MatrixError as exc:
            raise CommandError(exc.error, returncode=2) from None
        self.stdout.write(json.dumps(out, sort_keys=True) if options["json"] else text)

    def _run(self, o: dict[str, Any]) -> tuple[Any, str]:
        actor, action = Actor.cli(), o["action"]
        if action == "info":
            info = actions.media_info(server_name=_mxc(o["mxc"])[0], media_id=_mxc(o["mxc"])[1])
            return info, "\n".join(f"{k}: {v}" for k, v in sorted(info["media_info"].items()))
        if action == "quarantine":
            server, media_id = _mxc(o["mxc"])
            n = actions.do_quarantine_one(actor=actor, server_name=server, media_id=media_id)
            return {"num_quarantined": n}, f"{n} item(s) quarantined (0: unknown, protected or already)"
        if action == "unquarantine":
            server, media_id = _mxc(o["mxc"])
            done = actions.do_unquarantine_one(actor=actor, server_name=server, media_id=media_id)
            return {"unquarantined": done}, "released" if done else "unknown media: nothing changed"
        if action == "delete":
            server, media_id = _mxc(o["mxc"])
            if o["dry_run"]:
                actions.check_location(server_name=server, media_id=media_id)
                if server != get_server_name():
                    raise CommandError("Can only delete local media", returncode=2)
                result = actions.do_delete_local_media(actor=actor, media_ids=[media_id], dry_run=True)
            else:
                result = actions.check_delete_one(actor=actor, server_name=server, media_id=media_id)
            verb = "would free" if result.dry_run else "freed"
            return result.counts() | {"dry_run": result.dry_run}, (
                f"{result.local_media} item(s); {verb} {result.files} file(s), {result.bytes} bytes"
            )
        if action in ("protect", "unprotect"):
            actions.do_protect(actor=actor, media_id=o["media_id"], protected=action == "protect")
            return {}, f"{action}ed {o['media_id']}"
        if action == "quarantine-room":
            n = actions.do_quarantine_room_media(actor=actor, room_id=o["room_id"])
            return {"num_quarantined": n}, f"{n} item(s) quarantined"
        if action == "quarantine-user":
            n = actions.do_quarantine_user_media(actor=actor, user_id=o["user_id"])
            return {"num_quarantined": n}, f"{n} item(s) quarantined"
        query = {"order_by": "media_length", "dir": "b", "limit": o["limit"]}
        if o["search"]:
            query["search_term"] = o["search"]
        usage = actions.media_usage(query)
        lines = [
            f"{u['user_id']}  {u['media_count']} item(s)  {u['media_length']} bytes" for u in usage["users"]
        ]
        return usage, "\n".join(lines) or "no uploads"
