"""Push rules of users and the lazily maintained unread-notification counters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Max

from dagcore.models import PushRule
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.store.sql import fetch_rows, in_list


def _encode(value: Any) -> str:
    return encode_canonical_json(value).decode()


@dataclass(frozen=True, slots=True)
class PushRuleRow:
    kind: str
    rule_id: str
    priority: int
    conditions: list[Any]
    actions: list[Any] | None
    pattern: str | None
    enabled: bool | None
    is_default: bool


def get_push_rule_rows(user_id: str) -> list[PushRuleRow]:
    """All of a user's rows, user rules most important first within a kind (one query)."""
    rows = PushRule.objects.filter(user_id=user_id).order_by("kind", "-priority", "id")
    return [
        PushRuleRow(
            r.kind,
            r.rule_id,
            r.priority,
            json.loads(r.conditions),
            json.loads(r.actions) if r.actions is not None else None,
            r.pattern,
            r.enabled,
            r.is_default,
        )
        for r in rows
    ]


def lock_user_rules(*, user_id: str, kind: str) -> list[tuple[int, str, int]]:
    """``(row id, rule_id, priority)`` of the user's own rules of a kind, locked, most important first."""
    return [
        (int(i), rid, int(p))
        for i, rid, p in PushRule.objects.select_for_update()
        .filter(user_id=user_id, kind=kind, is_default=False)
        .order_by("-priority", "id")
        .values_list("id", "rule_id", "priority")
    ]


def upsert_user_rule(
    *,
    user_id: str,
    kind: str,
    rule_id: str,
    conditions: list[Any],
    actions: list[Any],
    pattern: str | None,
    priority: int,
) -> None:
    """Create or replace a user-defined rule (a new rule is enabled: spec "setPushRule")."""
    updated = PushRule.objects.filter(user_id=user_id, kind=kind, rule_id=rule_id, is_default=False).update(
        conditions=_encode(conditions), actions=_encode(actions), pattern=pattern, priority=priority
    )
    if not updated:
        PushRule.objects.create(
            user_id=user_id,
            kind=kind,
            rule_id=rule_id,
            conditions=_encode(conditions),
            actions=_encode(actions),
            pattern=pattern,
            priority=priority,
            enabled=True,
            is_default=False,
        )


def set_priorities(*, row_priorities: Sequence[tuple[int, int]]) -> None:
    rows = [PushRule(id=i, priority=p) for i, p in row_priorities]
    if rows:
        PushRule.objects.bulk_update(rows, ["priority"])


def max_priority(*, user_id: str, kind: str) -> int:
    value = PushRule.objects.filter(user_id=user_id, kind=kind, is_default=False).aggregate(
        m=Max("priority")
    )["m"]
    return int(value or 0)


def delete_user_rule(*, user_id: str, kind: str, rule_id: str) -> bool:
    deleted, _ = PushRule.objects.filter(
        user_id=user_id, kind=kind, rule_id=rule_id, is_default=False
    ).delete()
    return deleted > 0


def set_rule_enabled(*, user_id: str, kind: str, rule_id: str, enabled: bool, is_default: bool) -> None:
    if PushRule.objects.filter(user_id=user_id, kind=kind, rule_id=rule_id).update(enabled=enabled):
        return
    if is_default:
        PushRule.objects.create(user_id=user_id, kind=kind, rule_id=rule_id, enabled=enabled, is_default=True)


def set_rule_actions(*, user_id: str, kind: str, rule_id: str, actions: list[Any], is_default: bool) -> None:
    if PushRule.objects.filter(user_id=user_id, kind=kind, rule_id=rule_id).update(actions=_encode(actions)):
        return
    if is_default:
        PushRule.objects.create(
            user_id=user_id, kind=kind, rule_id=rule_id, actions=_encode(actions), is_default=True
        )


# --------------------------------------------------------------------------- unread counters


@dataclass
class Counter:
    room_nid: int
    from_stream: int
    upto_stream: int
    rules_version: int
    notification_count: int
    highlight_count: int
    #: thread root -> [notifications, highlights]
    threads: dict[str, list[int]]


def get_unread_inputs(
    *, user_id: str, room_nids: Sequence[int], receipt_types: Sequence[str]
) -> tuple[dict[int, Counter], list[tuple[int, str, str, int, int]]]:
    """The user's counters in these rooms, and their receipts of ``receipt_types`` there as
    ``(room nid, receipt type, thread ID, event stream ordering, receipt stream ID)``.

    One round trip (``UNION ALL`` of both tables, ``kind`` telling the rows apart): every
    ``/sync`` with news needs both.
    """
    if not room_nids:
        return {}, []
    params: list[Any] = [user_id]
    counters_cond = in_list("room_id", room_nids, params)
    params.append(user_id)
    receipts_cond = in_list("room_id", room_nids, params)
    types_cond = in_list("receipt_type", receipt_types, params)
    counters: dict[int, Counter] = {}
    receipts: list[tuple[int, str, str, int, int]] = []
    for kind, nid, a, b, c, d, e, text1, text2 in fetch_rows(
        "SELECT 'c', room_id, from_stream, upto_stream, rules_version, notification_count, "
        f"highlight_count, threads, NULL FROM unread_counters WHERE user_id = %s AND {counters_cond} "
        "UNION ALL SELECT 'r', room_id, event_stream_ordering, stream_id, NULL, NULL, NULL, receipt_type, "
        f"thread_id FROM receipts WHERE user_id = %s AND {receipts_cond} AND {types_cond}",
        params,
    ):
        if kind == "c":
            counters[nid] = Counter(nid, int(a), int(b), int(c), int(d), int(e), json.loads(text1))
        else:
            receipts.append((nid, text1, text2, int(a), int(b)))
    return counters, receipts


def save_unread_counters(*, user_id: str, counters: Sequence[Counter]) -> None:
    """Insert or update many counters in one statement."""
    if not counters:
        return
    params: list[Any] = []
    for c in counters:
        params += [
            user_id,
            c.room_nid,
            c.from_stream,
            c.upto_stream,
            c.rules_version,
            c.notification_count,
            c.highlight_count,
            _encode(c.threads),
        ]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(counters))
    with connection.cursor() as cur:
        # Raw SQL (one upsert, valid on PostgreSQL and SQLite): this runs on most syncs with news.
        cur.execute(
            "INSERT INTO unread_counters (user_id, room_id, from_stream, upto_stream, rules_version, "
            f"notification_count, highlight_count, threads) VALUES {values} "
            "ON CONFLICT (user_id, room_id) DO UPDATE SET from_stream = excluded.from_stream, "
            "upto_stream = excluded.upto_stream, rules_version = excluded.rules_version, "
            "notification_count = excluded.notification_count, "
            "highlight_count = excluded.highlight_count, threads = excluded.threads",
            params,
        )
