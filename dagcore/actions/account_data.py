"""Account data and room tags (spec: client-server API "Client Config" and "Room Tagging").

Every change moves the ``account_data`` stream and wakes the user's ``/sync``.
Room tags are the room's ``m.tag`` account data (``{"tags": {tag: {...}}}``),
changed under a row lock so concurrent tag edits never lose each other.
"""

from __future__ import annotations

from typing import Any

from dagcore.notifier import Change, notify
from dagcore.store import account_data as store
from dagcore.store import transaction
from dagcore.store.streams import advance_stream
from dagcore.store.transaction import IntegrityError

#: Spec: "Servers MUST reject setting account data for event types that the server manages.
#: Currently, this only includes m.fully_read and m.push_rules."
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
TAG_TYPE = "m.tag"
GLOBAL = store.GLOBAL


def _publish(user_id: str, data_type: str, room_id: str) -> int:
    stream_id = advance_stream("account_data")
    store.set_account_data_stream_id(
        user_id=user_id, room_id=room_id, data_type=data_type, stream_id=stream_id
    )
    notify(
        Change(
            stream="account_data",
            position=stream_id,
            user_ids=(user_id,),
            extra={"type": data_type, "room_id": room_id or None},
        )
    )
    return stream_id


def do_set_account_data(*, user_id: str, room_id: str | None, data_type: str, content: dict[str, Any]) -> int:
    """Store an entry (global when ``room_id`` is None); returns its stream position."""
    scope = room_id or GLOBAL
    with transaction.atomic():
        store.write_account_data(user_id=user_id, room_id=scope, data_type=data_type, content=content)
        return _publish(user_id, data_type, scope)


def get_account_data(*, user_id: str, room_id: str | None, data_type: str) -> dict[str, Any] | None:
    return store.get_account_data(user_id=user_id, room_id=room_id or GLOBAL, data_type=data_type)


def get_ignored_users(*, user_id: str) -> frozenset[str]:
    """The users in the user's ``m.ignored_user_list`` (spec "Ignoring Users")."""
    content = get_account_data(user_id=user_id, room_id=None, data_type="m.ignored_user_list") or {}
    users = content.get("ignored_users")
    return frozenset(u for u in users if isinstance(u, str)) if isinstance(users, dict) else frozenset()


def get_room_tags(*, user_id: str, room_id: str) -> dict[str, Any]:
    content = store.get_account_data(user_id=user_id, room_id=room_id, data_type=TAG_TYPE) or {}
    tags = content.get("tags")
    return dict(tags) if isinstance(tags, dict) else {}


def _change_tags(user_id: str, room_id: str, change: str, tag: str, content: dict[str, Any] | None) -> None:
    for attempt in range(2):
        try:
            with transaction.atomic():
                current = store.lock_account_data(user_id=user_id, room_id=room_id, data_type=TAG_TYPE) or {}
                tags = current.get("tags")
                tags = dict(tags) if isinstance(tags, dict) else {}
                if change == "add":
                    tags[tag] = content or {}
                elif tag in tags:
                    del tags[tag]
                else:
                    return  # removing an absent tag changes nothing
                store.write_account_data(
                    user_id=user_id, room_id=room_id, data_type=TAG_TYPE, content={"tags": tags}
                )
                _publish(user_id, TAG_TYPE, room_id)
                return
        except IntegrityError:
            if attempt:
                raise


def do_add_room_tag(*, user_id: str, room_id: str, tag: str, content: dict[str, Any]) -> None:
    _change_tags(user_id, room_id, "add", tag, content)


def do_remove_room_tag(*, user_id: str, room_id: str, tag: str) -> None:
    _change_tags(user_id, room_id, "remove", tag, None)
