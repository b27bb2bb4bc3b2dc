"""The operations beat jobs, each over its action: retention, registration tokens, stale
devices, certificate and key expiry, scheduled backups."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import override_settings

from dagcore.actions import backup, expiry_checks, retention
from dagcore.actions.audit import Actor
from dagcore.clock import now_ms
from dagcore.models import AuditEntry, CurrentStateEvent, Device, Event, RegistrationToken
from dagcore.store import accounts as account_store
from dagcore.store import operations
from dagcore.store import uia as uia_store
from dagcore.taskqueue.dispatch import resolve_task
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from tests.actions.roomkit import dagma_with, make_room, make_user, say, set_state

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]
DAY = 86_400_000
BEAT = Actor.beat("test")


def test_every_operations_job_is_scheduled_and_resolves() -> None:
    for name in ("purge-expired-events", "expire-registration-tokens", "delete-stale-devices", "check-expiry",
                 "backup-nightly", "backup-verify-weekly"):  # fmt: skip
        task, every = BEAT_SCHEDULE[name]
        assert resolve_task(task).run and every > 0


# --------------------------------------------------------------------------- retention


def content_of(event_id: str) -> dict:
    return json.loads(Event.objects.get(event_id=event_id).json)["content"]


def test_retention_erases_expired_messages_but_never_state_extremities_or_the_newest_message() -> None:
    alice = make_user()
    plain = make_room(alice, name="default policy")
    short = make_room(alice, name="short policy")
    forever = make_room(alice, name="policy without max_lifetime")
    set_state(alice, short, "m.room.retention", {"max_lifetime": 3_600_000})  # 1 h, clamped up to 1 d
    set_state(alice, forever, "m.room.retention", {"min_lifetime": 1000})
    old = {room: [say(alice, room, f"{room} {i}") for i in range(3)] for room in (plain, short, forever)}
    state_before = sorted(CurrentStateEvent.objects.values_list("event__event_id", flat=True))
    config = retention.RetentionSettings.from_config(
        {"enabled": True, "default_policy": {"max_lifetime": "2d"}, "allowed_lifetime_min": "1d"}
    )

    # 1.5 days on: the short room's 1 h policy is clamped to the 1-day minimum, the default is 2 days.
    preview = retention.do_purge_expired_events(
        now=now_ms() + 36 * 3_600_000, dry_run=True, actor=BEAT, config=config
    )
    assert (preview.rooms, preview.events, preview.per_room) == (1, 2, {short: 2})
    assert all("body" in content_of(e) for e in old[short])  # a preview changes nothing
    done = retention.do_purge_expired_events(
        now=now_ms() + 36 * 3_600_000, dry_run=False, actor=BEAT, config=config
    )
    assert (done.rooms, done.events) == (preview.rooms, preview.events)
    assert [content_of(e) for e in old[short]] == [{}, {}, {"msgtype": "m.text", "body": f"{short} 2"}]

    later = retention.do_purge_expired_events(
        now=now_ms() + 3 * DAY, dry_run=False, actor=BEAT, config=config
    )
    assert later.per_room == {plain: 2}  # the short room is done; "forever" keeps everything
    assert all("body" in content_of(e) for e in old[forever])
    # State is never touched; the event keeps its ID, type and DAG links (the redacted form).
    assert sorted(CurrentStateEvent.objects.values_list("event__event_id", flat=True)) == state_before
    purged = json.loads(Event.objects.get(event_id=old[plain][0]).json)
    assert purged["type"] == "m.room.message" and purged["prev_events"] and purged["hashes"]
    again = retention.do_purge_expired_events(
        now=now_ms() + 3 * DAY, dry_run=False, actor=BEAT, config=config
    )
    assert again.events == 0  # idempotent
    results = list(
        AuditEntry.objects.filter(action="retention.purge").values_list("result", flat=True).order_by("id")
    )
    assert results == ["dry-run", "ok", "ok"]


def test_retention_does_nothing_unless_enabled_and_purge_jobs_pick_rooms_by_lifetime() -> None:
    alice = make_user()
    room = make_room(alice)
    say(alice, room, "one")
    say(alice, room, "two")
    off = retention.RetentionSettings.from_config(
        {"enabled": False, "default_policy": {"max_lifetime": "1d"}}
    )
    assert (
        retention.do_purge_expired_events(now=now_ms() + 9 * DAY, dry_run=True, actor=BEAT, config=off).events
        == 0
    )
    on = retention.RetentionSettings.from_config({"enabled": True, "default_policy": {"max_lifetime": "5d"}})
    short_job = {"longest_max_lifetime": "3d", "interval": "12h"}
    long_job = {"shortest_max_lifetime": "3d", "interval": "1d"}
    assert (
        retention.do_purge_expired_events(
            now=now_ms() + 9 * DAY, dry_run=True, actor=BEAT, config=on, job=short_job
        ).events
        == 0
    )
    assert (
        retention.do_purge_expired_events(
            now=now_ms() + 9 * DAY, dry_run=True, actor=BEAT, config=on, job=long_job
        ).events
        == 1
    )


def test_the_retention_beat_job_runs_each_purge_job_once_per_interval() -> None:
    raw = {"enabled": True, "default_policy": {"max_lifetime": "1d"}, "purge_jobs": [{"interval": "12h"}]}
    alice = make_user()
    room = make_room(alice)
    first = say(alice, room, "old")
    say(alice, room, "new")
    with override_settings(DAGMA=dagma_with(retention=raw)):
        now = now_ms() + 2 * DAY
        assert retention.do_run_retention_purge_jobs(now=now, actor=BEAT, owner="t") == {
            "retention-purge-0": 1
        }
        assert (
            retention.do_run_retention_purge_jobs(now=now + 3_600_000, actor=BEAT, owner="t") == {}
        )  # not due
        assert content_of(first) == {}


# --------------------------------------------------------------------------- tokens, devices


def test_expired_registration_tokens_go_unless_a_registration_holds_them() -> None:
    now = now_ms()
    uia_store.create_registration_token(token="expired", expiry_time=now - 1)
    held = uia_store.create_registration_token(token="held", expiry_time=now - 1)
    RegistrationToken.objects.filter(id=held.id).update(pending=1)
    uia_store.create_registration_token(token="live", expiry_time=now + DAY)
    uia_store.create_registration_token(token="forever")
    assert retention.do_delete_expired_registration_tokens(now=now, dry_run=True, actor=BEAT) == 1
    assert RegistrationToken.objects.count() == 4
    assert retention.do_delete_expired_registration_tokens(now=now, dry_run=False, actor=BEAT) == 1
    assert sorted(RegistrationToken.objects.values_list("token", flat=True)) == ["forever", "held", "live"]
    assert AuditEntry.objects.filter(action="registration_tokens.expire", via="beat").count() == 1


def test_devices_unseen_for_delete_stale_devices_after_are_deleted_with_their_tokens() -> None:
    user = make_user()
    now = now_ms()
    stale = account_store.upsert_device(user, "STALE", None)
    fresh = account_store.upsert_device(user, "FRESH", None)
    account_store.create_access_token(user, stale)
    Device.objects.filter(id=stale.id).update(created_ts=now - 400 * DAY, last_seen_ts=now - 366 * DAY)
    Device.objects.filter(id=fresh.id).update(created_ts=now - 400 * DAY, last_seen_ts=now - DAY)
    assert retention.do_delete_stale_devices(now=now, dry_run=True, actor=BEAT) == 0  # option unset: never
    with override_settings(DAGMA=dagma_with(delete_stale_devices_after="1y")):
        assert retention.do_delete_stale_devices(now=now, dry_run=True, actor=BEAT) == 1
        assert retention.do_delete_stale_devices(now=now, dry_run=False, actor=BEAT) == 1
    assert [d.device_id for d in account_store.get_devices(user)] == ["FRESH"]
    assert not user.access_tokens.exists()


# --------------------------------------------------------------------------- expiry checks


def certificate(tmp_path: Path, days: float) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp_path / f"cert-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(("days", "status"), [(90, "ok"), (10, "warn"), (-1, "fail")])
def test_the_certificate_expiry_check_warns_three_weeks_ahead_and_fails_once_expired(
    tmp_path: Path, days: float, status: str
) -> None:
    with override_settings(DAGMA=dagma_with(tls_certificate_path=str(certificate(tmp_path, days)))):
        assert expiry_checks.do_check_expiry(now=now_ms()) == {
            "tls_certificate_expiry": status,
            "signing_keys": "ok",
        }
    [result] = operations.latest_check_results(["tls_certificate_expiry"])
    assert result.status == status


# --------------------------------------------------------------------------- scheduled backups


def test_scheduled_backups_keep_the_newest_n_and_the_weekly_verify_checks_the_newest(tmp_path: Path) -> None:
    schedule = {"dir": str(tmp_path / "backups"), "keep": 2, "media": True, "verify": True}
    with override_settings(
        DAGMA=dagma_with(backup_schedule={"dir": None, "keep": 7, "media": True, "verify": True})
    ):
        assert "not set" in backup.do_scheduled_backup(now=now_ms(), actor=BEAT)
    with override_settings(DAGMA=dagma_with(backup_schedule=schedule)):
        (tmp_path / "backups" / "dagma-19990101T000000Z").mkdir(parents=True)  # a run that died half-way
        for day in range(3):
            backup.do_scheduled_backup(now=now_ms() + day * DAY, actor=BEAT)
        kept = backup.list_scheduled_backups(tmp_path / "backups")
        assert len(kept) == 2 and sorted(p.name for p in (tmp_path / "backups").iterdir()) == [
            p.name for p in kept
        ]
        assert backup.do_scheduled_verify(now=now_ms()).startswith(kept[-1].name)
    [result] = operations.latest_check_results([backup.CHECK_NAME])
    assert result.details["backup"] == str(kept[-1])
    assert result.status in ("ok", "warn"), result.summary  # warn: the test server runs without a config file


def test_doctor_is_told_when_the_last_verified_backup_is_older_than_35_days() -> None:
    now = now_ms()
    assert backup.backup_verify_age(now=now)[0] == "warn"  # never verified
    operations.insert_check_result(
        name=backup.CHECK_NAME, status="ok", summary="", details={}, ts=now - 36 * DAY
    )
    status, message = backup.backup_verify_age(now=now)
    assert status == "warn" and "36 days old" in message
    operations.insert_check_result(name=backup.CHECK_NAME, status="ok", summary="", details={}, ts=now - DAY)
    assert backup.backup_verify_age(now=now)[0] == "ok"
    operations.insert_check_result(
        name=backup.CHECK_NAME, status="fail", summary="media: lost", details={}, ts=now
    )
    assert backup.backup_verify_age(now=now) == (
        "fail",
        "the last backup verification failed 0 days ago: media: lost",
    )
