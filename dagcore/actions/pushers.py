"""Pushers: registering them (``/pushers/set``) and pushing notifications to push gateways.

Spec: client-server API "Push Notifications" (``GET /pushers``, ``POST /pushers/set``)
and the Push Gateway API (``POST /_matrix/push/v1/notify``).

Delivery is driven by the event stream: each pusher remembers the stream position
up to which events were considered. After an event commits, the local users with
pushers in its room get a ``push`` task; the beat schedule runs every pusher as a
safety net. A worker claims a user's pushers (so two workers never push the same
event twice), evaluates the user's push rules on the events after the pusher's
position and POSTs one notification per event that notifies, then records the new
position. A gateway that fails keeps its position and is retried with back-off (half
the time it has been failing, 1 s to 10 min: the next nudge or beat after that); after
``GIVE_UP_AFTER_MS`` of failures its backlog is dropped, as Synapse does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dagcore.actions.account_data import get_ignored_users
from dagcore.actions.push_rules import RoomRef, get_ruleset, get_unread_counts, load_room_contexts
from dagcore.clock import now_ms
from dagcore.events_persisted import EventsPersisted
from dagcore.http.errors import MatrixError
from dagcore.net.outbound import OutboundError, post_json
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import push_rules as rules
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.store import events as event_store
from dagcore.store import pushers as store
from dagcore.store import streams as stream_store
from dagcore.store import sync as sync_store
from dagcore.store import transaction
from dagcore.store.events import StoredEvent
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("dagma.push")

#: The path every HTTP pusher's URL must have (spec "Push Gateway API").
NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
MAX_TEXT_CHARS = 255
MAX_DATA_BYTES = 4096
#: Pushers one user may have (each is an outbound request per notifying event).
MAX_PUSHERS_PER_USER = 32
#: Events considered per room and run (a backlog beyond it is not pushed).
MAX_EVENTS_PER_ROOM = 50
#: How long a worker holds a user's pushers.
CLAIM_MS = 120_000
#: A gateway failing this long loses its backlog (delivery resumes with new events).
GIVE_UP_AFTER_MS = 24 * 3600 * 1000
GATEWAY_TIMEOUT_S = 10.0
MIN_BACK_OFF_MS = 1_000
MAX_BACK_OFF_MS = 600_000


# --------------------------------------------------------------------------- /pushers


def get_pushers(*, user_id: str) -> list[dict[str, Any]]:
    """``GET /pushers``: the user's pushers in the spec's shape."""
    out = []
    for row in store.get_pushers(user_id):
        pusher: dict[str, Any] = {
            "pushkey": row.pushkey,
            "kind": row.kind,
            "app_id": row.app_id,
            "app_display_name": row.app_display_name,
            "device_display_name": row.device_display_name,
            "lang": row.lang,
            "data": json.loads(row.data),
        }
        if row.profile_tag is not None:
            pusher["profile_tag"] = row.profile_tag
        out.append(pusher)
    return out


@dataclass(frozen=True)
class PusherSettings:
    """What an ``http`` pusher is set to (``data`` checked: its ``url`` is a push gateway's)."""

    kind: str
    append: bool
    data: dict[str, Any]
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str


@dataclass(frozen=True)
class SetPusherRequest:
    """A ``POST /pushers/set`` body (``tribune.inputs.parse_set_pusher``)."""

    app_id: str
    pushkey: str
    #: None: ``kind: null``, delete the pusher.
    settings: PusherSettings | None


def check_set_pusher(*, user_id: str, device_key: int | None, request: SetPusherRequest) -> None:
    """``POST /pushers/set``: create, update or (no settings) delete a pusher."""
    app_id, pushkey, settings = request.app_id, request.pushkey, request.settings
    if settings is None:
        store.delete_pusher(user_id=user_id, app_id=app_id, pushkey=pushkey)
        return
    fields = {
        "kind": settings.kind,
        "app_id": app_id,
        "pushkey": pushkey,
        "pushkey_ts": now_ms(),
        "app_display_name": settings.app_display_name,
        "device_display_name": settings.device_display_name,
        "profile_tag": settings.profile_tag,
        "lang": settings.lang,
        "data": encode_canonical_json(settings.data).decode(),
    }
    with transaction.atomic():
        existing = store.get_pushers(user_id)
        is_new = not any(p.app_id == app_id and p.pushkey == pushkey for p in existing)
        if is_new and len(existing) >= MAX_PUSHERS_PER_USER:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"At most {MAX_PUSHERS_PER_USER} pushers per user: delete one first"
            )
        if not settings.append:
            store.delete_pushers_of_others(user_id=user_id, app_id=app_id, pushkey=pushkey)
        store.upsert_pusher(
            user_id=user_id,
            device_key=device_key,
            fields=fields,
            start_stream_ordering=stream_store.get_stream_position("events"),
        )
    _pushers_exist.set(True)


# --------------------------------------------------------------------------- nudging


class _Flag:
    """Whether any pusher exists, re-read at most every ``ttl`` seconds (saves a task per event)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: bool | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> bool:
        with self._lock:
            if self._value is None or time.monotonic() - self._read_at > self.ttl:
                self._value = store.any_pushers()
                self._read_at = time.monotonic()
            return self._value

    def set(self, value: bool) -> None:
        with self._lock:
            self._value, self._read_at = value, time.monotonic()


_pushers_exist = _Flag(ttl=10.0)


def on_events_persisted(batch: EventsPersisted) -> None:
    """The pipeline's seam (after commit): push the room's new events, if anyone has pushers.

    A server where nobody registered a pusher pays one cached check, no task. A pusher
    registered through another process is seen within the flag's TTL; the beat
    schedule covers anything a lost nudge leaves behind (positions live per pusher).
    """
    if _pushers_exist.get():
        enqueue("dagcore.tasks.push.push_room", batch.room_nid)


# --------------------------------------------------------------------------- delivery


def ip_policy() -> IpPolicy:
    """Push gateways are chosen by users: the federation address policy applies to them."""
    return IpPolicy.from_config(settings.DAGMA.ip_range_blacklist, settings.DAGMA.ip_range_whitelist)


def do_push_room(*, room_nid: int) -> int:
    """Run the pushers of the room's local members; returns the number of notifications sent."""
    return sum(do_push_user(user_id=u) for u in store.user_ids_with_pushers_in_room(room_nid))


def do_push_all() -> int:
    """Beat: run every pusher (catches what a lost nudge or a failing gateway left)."""
    return sum(do_push_user(user_id=u) for u in store.user_ids_with_pushers())


def do_push_user(*, user_id: str) -> int:
    """Push the user's notifying events after each pusher's position; returns notifications sent."""
    sent = 0
    for _ in range(3):  # events committed while pushing are picked up by another round
        now = now_ms()
        pushers = store.claim_pushers(user_id=user_id, now=now, until=now + CLAIM_MS)
        if not pushers:
            return sent
        upto = stream_store.get_stream_position("events")
        behind = [p for p in pushers if p.last_stream_ordering < upto]
        for p in pushers:
            if p not in behind:
                store.release_pusher(p.id, last_stream_ordering=None, failing_since=p.failing_since)
        try:
            if behind:
                sent += _push(user_id, behind, upto)  # releases each pusher with its new position
        except Exception:
            for p in behind:
                store.release_pusher(p.id, last_stream_ordering=None, failing_since=p.failing_since)
            raise
        if not behind or stream_store.get_stream_position("events") == upto:
            return sent
    return sent


def _notifying_events(
    user_id: str, since: int, upto: int, ignored: frozenset[str]
) -> tuple[list[tuple[StoredEvent, rules.PushResult]], list[sync_store.MembershipInfo]]:
    """The events in ``(since, upto]`` that notify the user, oldest first, and their joined rooms."""
    memberships = sync_store.get_user_memberships(user_id)
    joined = [m for m in memberships if m.membership == "join"]
    starts = {m.room_nid: max(since, m.stream_ordering) for m in joined}
    per_room = sync_store.get_events_for_counting(starts, upto=upto, limit=MAX_EVENTS_PER_ROOM)
    candidates = [e for events in per_room.values() for e in events]
    invites = [m for m in memberships if m.membership == "invite" and since < m.stream_ordering <= upto]
    if invites:
        candidates += event_store.get_events_by_nids([m.event_nid for m in invites]).values()
    if not candidates:
        return [], joined
    ruleset = get_ruleset(user_id=user_id)
    contexts = load_room_contexts(user_id=user_id, room_nids=sorted({e.room_nid for e in candidates}))
    found = []
    for stored in sorted(candidates, key=lambda e: e.stream_ordering or 0):
        if stored.event.sender == user_id or stored.event.sender in ignored:
            continue
        result = rules.evaluate(
            ruleset, stored.event.pdu, contexts.context_for(stored.room_nid, stored.event.sender)
        )
        if result.notify:
            found.append((stored, result))
    return found, joined


def _push(user_id: str, pushers: Sequence[store.PusherRow], upto: int) -> int:
    since = min(p.last_stream_ordering for p in pushers)
    ignored = get_ignored_users(user_id=user_id)
    found, joined = _notifying_events(user_id, since, upto, ignored)
    badge = 0
    if found:
        counts = get_unread_counts(
            user_id=user_id,
            rooms=[
                RoomRef(room_nid=m.room_nid, room_id=m.room_id, joined_at=m.stream_ordering) for m in joined
            ],
            upto=upto,
            ignored_users=ignored,
        )
        # Synapse's default: the badge counts rooms with unread notifications.
        badge = sum(1 for c in counts.values() if c.notification_count > 0)
    details = _event_details([s for s, _ in found]) if found else {}
    sent = 0
    for pusher in pushers:
        position: int | None = upto
        failing_since = None
        for stored, result in found:
            if (stored.stream_ordering or 0) <= pusher.last_stream_ordering:
                continue
            body = notification_for(pusher, stored, result, user_id=user_id, badge=badge, details=details)
            outcome = _send(pusher, body, user_id=user_id)
            if outcome == "rejected":
                position = None  # the pusher is gone
                break
            if outcome == "failed":
                failing_since = pusher.failing_since or now_ms()
                if now_ms() - failing_since < GIVE_UP_AFTER_MS:
                    position = (stored.stream_ordering or 1) - 1  # retry from this event
                else:
                    logger.warning("push gateway of %s failing for a day: dropping its backlog", user_id)
                    failing_since = None
                break
            sent += 1
        if position is not None or failing_since is not None:
            store.release_pusher(
                pusher.id,
                last_stream_ordering=position,
                failing_since=failing_since,
                hold_until=_back_off_until(failing_since),
            )
    return sent


def _back_off_until(failing_since: int | None) -> int | None:
    """A failing gateway is tried again after half as long as it has been failing (1 s to 10 min)."""
    if failing_since is None:
        return None
    now = now_ms()
    return now + min(MAX_BACK_OFF_MS, max(MIN_BACK_OFF_MS, (now - failing_since) // 2))


_NAME_KEY = ("m.room.name", "")
_ALIAS_KEY = ("m.room.canonical_alias", "")


def _event_details(events: Sequence[StoredEvent]) -> dict[str, dict[str, Any]]:
    """Per event ID: the sender's display name, the room's name and alias (one state query)."""
    room_nids = sorted({e.room_nid for e in events})
    keys = [_NAME_KEY, _ALIAS_KEY, *sorted({("m.room.member", e.event.sender) for e in events})]
    state = sync_store.get_current_state_for_rooms(room_nids, keys)
    out: dict[str, dict[str, Any]] = {}
    for stored in events:
        room_state = state.get(stored.room_nid, {})
        extra: dict[str, Any] = {}
        member = room_state.get(("m.room.member", stored.event.sender))
        if member is not None and isinstance(member.content.get("displayname"), str):
            extra["sender_display_name"] = member.content["displayname"]
        name = room_state.get(_NAME_KEY)
        if name is not None and isinstance(name.content.get("name"), str) and name.content["name"]:
            extra["room_name"] = name.content["name"]
        alias = room_state.get(_ALIAS_KEY)
        if alias is not None and isinstance(alias.content.get("alias"), str):
            extra["room_alias"] = alias.content["alias"]
        out[stored.event.event_id] = extra
    return out


def notification_for(
    pusher: store.PusherRow,
    stored: StoredEvent,
    result: rules.PushResult,
    *,
    user_id: str,
    badge: int,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The Push Gateway API body for one event and one pusher."""
    tweaks: dict[str, Any] = {}
    for action in result.actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            tweaks[action["set_tweak"]] = action.get("value", True)
    data = {k: v for k, v in json.loads(pusher.data).items() if k != "url"}
    event = stored.event
    high = bool(tweaks.get("sound")) or tweaks.get("highlight") is True or event.type == "m.room.encrypted"
    notification: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "prio": "high" if high else "low",
        "counts": {"unread": badge},
        "devices": [
            {
                "app_id": pusher.app_id,
                "pushkey": pusher.pushkey,
                "pushkey_ts": pusher.pushkey_ts // 1000,  # seconds, per the Push Gateway API
                "data": data,
                "tweaks": tweaks,
            }
        ],
    }
    if data.get("format") != "event_id_only":
        notification.update(
            type=event.type,
            sender=event.sender,
            content=dict(event.content),
            user_is_target=event.type == "m.room.member" and event.state_key == user_id,
            **details.get(event.event_id, {}),
        )
    return {"notification": notification}


def _send(pusher: store.PusherRow, body: dict[str, Any], *, user_id: str) -> str:
    """POST one notification: "sent", "rejected" (pusher deleted) or "failed" (retry later)."""
    url = json.loads(pusher.data).get("url", "")
    try:
        answer = post_json(url, body, policy=ip_policy(), timeout=GATEWAY_TIMEOUT_S)
    except OutboundError as exc:
        logger.warning("push to %s's gateway failed: %s", user_id, exc)
        return "failed"
    if not 200 <= answer.status < 300:
        logger.warning("push gateway of %s answered HTTP %s", user_id, answer.status)
        return "failed"
    rejected = answer.body.get("rejected") if answer.body else None
    if isinstance(rejected, list) and pusher.pushkey in rejected:
        # Spec: the homeserver should stop pushing to pushkeys the gateway rejects.
        store.delete_pushers_by_pushkey(
            app_id=pusher.app_id, pushkeys=[pusher.pushkey], pusher_ids=[pusher.id]
        )
        return "rejected"
    return "sent"
