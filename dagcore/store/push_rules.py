"""Push rules of users and the lazily maintained unread-notification counters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Max

from dagcore.models import PushRule, UnreadCounter
from dagcore.protocol.canonical_json import encode_canonical_json


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


def get_unread_counters(*, user_id: str, room_nids: Sequence[int]) -> dict[int, Counter]:
    if not room_nids:
        return {}
    return {
        r[0]: Counter(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))
        for r in UnreadCounter.objects.filter(user_id=user_id, room_id__in=list(room_nids)).values_list(
            "room_id",
            "from_stream",
            "upto_stream",
            "rules_version",
            "notification_count",
            "highlight_count",
            "threads",
        )
    }


def save_unread_counters(*, user_id: str, counters: Sequence[Counter]) -> None:
    """Insert or update many counters in one statement."""
    if not counters:
        return
    UnreadCounter.objects.bulk_create(
        [
            UnreadCounter(
                user_id=user_id,
                room_id=c.room_nid,
                from_stream=c.from_stream,
                upto_stream=c.upto_stream,
                rules_version=c.rules_version,
                notification_count=c.notification_count,
                highlight_count=c.highlight_count,
                threads=_encode(c.threads),
            )
            for c in counters
        ],
        update_conflicts=True,
        unique_fields=["user_id", "room"],
        update_fields=[
            "from_stream",
            "upto_stream",
            "rules_version",
            "notification_count",
            "highlight_count",
            "threads",
        ],
    )
