"""Periodic clean-ups run by beat (``dagcore.tasks.operations``), each a preview (``dry_run``)
and an action over the same selection, with an audit entry (actor ``beat:<job>``).

Message retention follows Synapse (docs/message_retention_policies.md, MSC1763): a room's
``m.room.retention`` state, or the config's ``retention.default_policy``, gives ``max_lifetime``,
clamped to ``allowed_lifetime_min``/``allowed_lifetime_max``; messages older than that lose their
content. State events are never touched (policies do not apply to them, and the room's current
state must stay whole), nor the forward extremities, nor the room's newest message (Synapse
keeps at least one). The event keeps its redacted form (spec: "Redactions"), so its ID, hashes
and signatures still verify and the DAG stays intact for other servers and state resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import duration_ms, now_ms
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import get_room_version
from dagcore.store import accounts as account_store
from dagcore.store import retention as store
from dagcore.store import scheduled_jobs as job_store
from dagcore.store import transaction

#: Synapse's purge jobs when the config names none.
DEFAULT_PURGE_JOBS = [
    {"longest_max_lifetime": "3d", "interval": "12h"},
    {"shortest_max_lifetime": "3d", "interval": "1d"},
]
_BATCH = 500


def _ms(value: Any) -> int | None:
    return None if value is None else duration_ms(value)


@dataclass(frozen=True)
class RetentionSettings:
    enabled: bool
    default_max: int | None
    allowed_min: int | None
    allowed_max: int | None
    purge_jobs: list[dict[str, Any]]

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None = None) -> RetentionSettings:
        raw = raw if raw is not None else settings.DAGMA.retention
        return cls(
            enabled=bool(raw.get("enabled")),
            default_max=_ms((raw.get("default_policy") or {}).get("max_lifetime")),
            allowed_min=_ms(raw.get("allowed_lifetime_min")),
            allowed_max=_ms(raw.get("allowed_lifetime_max")),
            purge_jobs=list(raw.get("purge_jobs") or DEFAULT_PURGE_JOBS),
        )

    def max_lifetime(self, policy: dict[str, Any] | None) -> int | None:
        """The room's effective ``max_lifetime`` in ms (None: keep forever)."""
        value: int | None = self.default_max
        if policy is not None:
            room_max = policy.get("max_lifetime")
            # A room's policy without a (valid) max_lifetime keeps messages forever, as in Synapse.
            value = (
                room_max
                if isinstance(room_max, int) and not isinstance(room_max, bool) and room_max > 0
                else None
            )
        if value is None:
            return None
        if self.allowed_min is not None:
            value = max(value, self.allowed_min)
        if self.allowed_max is not None:
            value = min(value, self.allowed_max)
        return value


@dataclass
class RetentionOutcome:
    dry_run: bool
    rooms: int = 0
    events: int = 0
    per_room: dict[str, int] = field(default_factory=dict)


def _in_job(job: dict[str, Any] | None, lifetime: int) -> bool:
    """Synapse's purge job ranges: shortest < max_lifetime <= longest."""
    if job is None:
        return True
    shortest, longest = _ms(job.get("shortest_max_lifetime")), _ms(job.get("longest_max_lifetime"))
    return (shortest is None or lifetime > shortest) and (longest is None or lifetime <= longest)


def do_purge_expired_events(
    *,
    now: int,
    dry_run: bool,
    actor: Actor,
    job: dict[str, Any] | None = None,
    config: RetentionSettings | None = None,
) -> RetentionOutcome:
    """Erase the content of messages past their room's ``max_lifetime`` (``job``: only rooms
    whose lifetime is in that purge job's range). ``dry_run`` counts without changing."""
    config = config or RetentionSettings.from_config()
    outcome = RetentionOutcome(dry_run=dry_run)
    if not config.enabled:
        return outcome
    for room in store.list_room_retention():
        lifetime = config.max_lifetime(room.policy)
        if lifetime is None or not _in_job(job, lifetime):
            continue
        version = get_room_version(room.room_version, require_supported=False)
        changed = 0
        after = 0
        while True:
            batch = store.expired_messages(
                room_nid=room.room_nid,
                before_ts=now - lifetime,
                keep=room.extremities,
                after_nid=after,
                limit=_BATCH,
            )
            if not batch:
                break
            with transaction.atomic():
                for nid, raw in batch:
                    text = encode_canonical_json(redact_pdu(json.loads(raw), version)).decode()
                    if text != raw:  # already purged: nothing to do (runs are idempotent)
                        changed += 1
                        if not dry_run:
                            store.replace_event_json(nid, text)
            after = batch[-1][0]
        if changed:
            outcome.rooms += 1
            outcome.events += changed
            outcome.per_room[room.room_id] = changed
    if outcome.events:
        record_audit(actor=actor, action="retention.purge", target=str(job or "all rooms"),
                     params={"job": job or {}}, counts={"rooms": outcome.rooms, "events": outcome.events},
                     result="dry-run" if dry_run else "ok")  # fmt: skip
    return outcome


def do_run_retention_purge_jobs(*, now: int, actor: Actor, owner: str) -> dict[str, int]:
    """Run each configured purge job whose ``interval`` has passed since its last run (each
    job's runs are leased and recorded like beat jobs, as ``retention-purge-<i>``)."""
    config = RetentionSettings.from_config()
    if not config.enabled:
        return {}
    out: dict[str, int] = {}
    for i, job in enumerate(config.purge_jobs):
        name = f"retention-purge-{i}"
        interval = _ms(job.get("interval")) or 86_400_000
        if not job_store.claim_job_lease(
            name, owner=owner, now=now, lease_ms=3_600_000, min_interval_ms=interval
        ):
            continue
        try:
            outcome = do_purge_expired_events(now=now, dry_run=False, actor=actor, job=job, config=config)
        except Exception as exc:
            job_store.finish_job(name, now=now_ms(), ok=False, message=repr(exc), owner=owner)
            raise
        job_store.finish_job(name, now=now_ms(), ok=True, message=f"{outcome.events} events", owner=owner)
        out[name] = outcome.events
    return out


# --------------------------------------------------------------------------- registration tokens


def do_delete_expired_registration_tokens(*, now: int, dry_run: bool, actor: Actor) -> int:
    """Registration tokens past ``expiry_time`` (none held by a registration in progress)."""
    tokens = store.expired_registration_tokens(now=now)
    if dry_run or not tokens:
        return len(tokens)
    deleted = store.delete_registration_tokens(tokens=tokens, now=now)
    record_audit(actor=actor, action="registration_tokens.expire", counts={"deleted": deleted})
    return deleted


# --------------------------------------------------------------------------- stale devices


def stale_device_cutoff(*, now: int) -> int | None:
    after = _ms(settings.DAGMA.delete_stale_devices_after)
    return None if after is None else now - after


def do_delete_stale_devices(*, now: int, dry_run: bool, actor: Actor) -> int:
    """Devices not seen for ``delete_stale_devices_after`` (as Synapse), with their tokens and keys."""
    from dagcore.actions.accounts import do_delete_devices

    cutoff = stale_device_cutoff(now=now)
    if cutoff is None:
        return 0
    stale = store.stale_devices(seen_before=cutoff)
    if dry_run or not stale:
        return len(stale)
    by_user: dict[str, list[str]] = {}
    for user_id, device_id in stale:
        by_user.setdefault(user_id, []).append(device_id)
    deleted = 0
    for user_id, device_ids in by_user.items():
        user = account_store.get_user(user_id)
        if user is not None:
            deleted += do_delete_devices(user=user, device_ids=device_ids)
    record_audit(
        actor=actor, action="devices.delete_stale", counts={"deleted": deleted, "users": len(by_user)}
    )
    return deleted
