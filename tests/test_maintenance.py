"""Beat-scheduled maintenance actions do their job and are registered with the schedule."""

from __future__ import annotations

import pytest

from dagcore.actions import maintenance
from dagcore.clock import now_ms
from dagcore.models import ClientTxn
from dagma_project.celery import BEAT_SCHEDULE, app

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def test_every_beat_entry_names_a_registered_task() -> None:
    app.loader.import_default_modules()  # what a worker does at start (task modules load lazily)
    for name, (task, every) in BEAT_SCHEDULE.items():
        assert task in app.tasks, name
        assert every > 0


def _txn(txn_id: str, created_ts: int) -> ClientTxn:
    return ClientTxn.objects.create(
        user_id="@alice:test",
        device_key="DEV",
        scope="send",
        txn_id=txn_id,
        event_id=f"${txn_id}",
        created_ts=created_ts,
    )


def test_old_client_transaction_ids_are_forgotten_and_recent_ones_kept() -> None:
    now = now_ms()
    old = _txn("old", now - maintenance.CLIENT_TXN_LIFETIME_MS - 1000)
    recent = _txn("recent", now - 1000)
    assert maintenance.do_expire_client_txns() == 1
    assert not ClientTxn.objects.filter(id=old.id).exists()
    assert ClientTxn.objects.filter(id=recent.id).exists()


def test_expired_login_tokens_are_purged_and_live_ones_kept() -> None:
    from dagcore.store import accounts

    user = accounts.insert_user(user_id="@lt:test", localpart="lt", password_hash=None)
    live = accounts.create_login_token(user, lifetime_ms=60_000)
    accounts.create_login_token(user, lifetime_ms=-1)  # already expired
    assert maintenance.do_expire_login_tokens() == 1
    assert accounts.consume_login_token(live) == user
    assert accounts.consume_login_token(live) is None  # single use


def test_without_a_broker_each_server_runs_its_own_beat_jobs() -> None:
    """Embassy runs the federation jobs, Tribune the rest (push, media, maintenance), `all` both:
    a stopped Embassy stops no push, and Tribune never sends federation traffic."""
    from dagcore.taskqueue.schedule import BEAT_SCHEDULE, beat_jobs_for_role

    embassy, tribune = beat_jobs_for_role("embassy"), beat_jobs_for_role("tribune")
    assert beat_jobs_for_role("all") == BEAT_SCHEDULE
    assert embassy.keys() | tribune.keys() == BEAT_SCHEDULE.keys() and not embassy.keys() & tribune.keys()
    assert "federation-send-pending" in embassy and "push-all" in tribune
    assert all(task.startswith("embassy.") for task, _ in embassy.values())


def test_tribunes_runner_runs_tasks_off_the_request_but_starts_no_federation_sender(settings) -> None:
    import threading

    from dagcore.federation.outbox import sends_in_this_process
    from dagcore.taskqueue import runner
    from dagcore.taskqueue.schedule import beat_jobs_for_role

    settings.CELERY_BROKER_URL = ""
    assert not runner.is_running()
    runner.start_in_process_runner(jobs=beat_jobs_for_role("tribune"), sends_federation=False)
    try:
        assert not sends_in_this_process()
        ran: list[str] = []
        done = threading.Event()

        def task() -> None:
            ran.append(threading.current_thread().name)
            done.set()

        runner.submit(task)
        assert done.wait(10)
        assert ran[0].startswith("dagma-task")  # on the runner's thread, not the caller's
    finally:
        runner.stop_in_process_runner()
    assert not runner.is_running() and not sends_in_this_process()


def test_inbound_to_device_message_ids_are_forgotten_after_a_week() -> None:
    """The dedupe of ``m.direct_to_device`` ``message_id``s (server-server API "Send-to-device
    messaging") keeps a week of IDs: an older resend cannot come, and the table stays bounded."""
    from dagcore.actions.to_device import RECEIVED_MESSAGE_ID_LIFETIME_MS, do_expire_received_message_ids
    from dagcore.store.to_device import record_received_message_id

    now = now_ms()
    old = now - RECEIVED_MESSAGE_ID_LIFETIME_MS - 1000
    recent = now - RECEIVED_MESSAGE_ID_LIFETIME_MS + 60_000
    assert record_received_message_id(origin="remote.test", message_id="old", now=old)
    assert record_received_message_id(origin="remote.test", message_id="recent", now=recent)
    assert do_expire_received_message_ids(now=now) == 1
    # A resend of the recent one is still recognised; the forgotten one would be taken again.
    assert not record_received_message_id(origin="remote.test", message_id="recent", now=now)
    assert record_received_message_id(origin="remote.test", message_id="old", now=now)
    assert do_expire_received_message_ids(now=now) == 0
    assert "dagcore.tasks.maintenance.expire_received_to_device_ids" in {t for t, _ in BEAT_SCHEDULE.values()}
