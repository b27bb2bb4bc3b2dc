"""Federation: the self-test (our own federation tester), queue depths, failing destinations."""

from __future__ import annotations

from django.conf import settings

from dagcore.clock import now_ms
from dagcore.doctor import FAIL, OK, SKIP, WARN, Verdict
from dagcore.doctor.federation_tester import run_federation_test
from dagcore.server_keys import get_server_name
from dagcore.store import health as store
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

#: Queued federation traffic older than this: something does not send it.
QUEUE_AGE_WARN_MS = 15 * 60 * 1000
QUEUE_AGE_FAIL_MS = 24 * 3600 * 1000
#: Celery queue lengths over this: the workers do not keep up.
CELERY_QUEUE_WARN = 1000
CELERY_QUEUES = ("federation", "media", "push", "maintenance")
#: A destination failing for longer than this is worth a FAIL (others: WARN).
DESTINATION_FAIL_MS = 24 * 3600 * 1000


def check_federation() -> Verdict:
    """Our own server name through the federation tester, as another server would see it."""
    if not settings.DAGMA.federation_enabled:
        return Verdict("federation", OK, "federation_enabled: false (a private island)")
    report = run_federation_test(get_server_name())
    details = report.as_json()
    bad = [s for s in report.steps if s.status in (WARN, FAIL)]
    if not bad:
        passed = [s.name for s in report.steps if s.status != SKIP]
        return Verdict("federation", OK, f"{report.server_name}: {', '.join(passed)} pass", details=details)
    shown = "; ".join(f"{s.name}: {s.summary}" for s in bad)
    return Verdict(
        "federation", report.status, shown[:500],
        fix=f"python3 manage.py federation_test {report.server_name}  (each step's verdict)", details=details,
    )  # fmt: skip


def _celery_queue_lengths() -> dict[str, int] | None:
    url = settings.DAGMA.redis_url
    if not url:
        return None
    import redis

    prefix = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("global_keyprefix", "")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        # kombu's Redis transport: one list per queue, plus one per priority step (\x06\x16<n>).
        return {
            q: sum(
                int(client.llen(f"{prefix}{q}{suffix}"))
                for suffix in ("", "\x06\x163", "\x06\x166", "\x06\x169")
            )
            for q in CELERY_QUEUES
        }
    except redis.RedisError:
        return None
    finally:
        client.close()


def check_queues() -> Verdict:
    depth = store.outbox_depth()
    celery = _celery_queue_lengths()
    now = now_ms()
    age = now - depth.oldest_ts if depth.oldest_ts is not None else 0
    details = {
        "outbox_pdus": depth.pdus, "outbox_edus": depth.edus, "outbox_destinations": depth.destinations,
        "oldest_queued_age_ms": age, "celery": celery,
    }  # fmt: skip
    summary = f"federation outbox: {depth.pdus} PDUs, {depth.edus} EDUs for {depth.destinations} servers"
    if depth.oldest_ts is not None:
        summary += f", oldest {age // 60_000} min"
    if celery is not None:
        summary += "; celery " + ", ".join(f"{q} {n}" for q, n in celery.items())
    busy = [q for q, n in (celery or {}).items() if n > CELERY_QUEUE_WARN]
    status = OK
    if age > QUEUE_AGE_FAIL_MS:
        status = FAIL
    elif age > QUEUE_AGE_WARN_MS or busy:
        status = WARN
    if status == OK:
        return Verdict("queues", OK, summary, details=details)
    every = BEAT_SCHEDULE["federation-send-pending"][1]
    return Verdict(
        "queues", status, summary,
        fix="see `manage.py doctor` destinations and processes: the Embassy (or the federation worker) sends the "
        f"outbox, re-scanned every {every:g} s; add workers for busy queues",
        details=details,
    )  # fmt: skip


def check_destinations() -> Verdict:
    now = now_ms()
    count, rows = store.failing_destinations()
    details = {
        "failing": count,
        "destinations": [
            {"destination": r.server_name, "failing_since_ts": r.failing_since_ts, "failures": r.failures,
             "next_attempt_ts": r.next_attempt_ts, "last_error": r.last_error[:200], "queued_pdus": r.queued_pdus}
            for r in rows
        ],
    }  # fmt: skip
    if not count:
        return Verdict("destinations", OK, "no destination is failing", details=details)
    long_failing = [r for r in rows if r.failing_since_ts is not None and now - r.failing_since_ts > DESTINATION_FAIL_MS
                    and r.queued_pdus]  # fmt: skip
    shown = ", ".join(f"{r.server_name} ({r.failures} failures: {r.last_error[:60]})" for r in rows[:3])
    return Verdict(
        "destinations", FAIL if long_failing else WARN, f"{count} destination(s) failing: {shown}",
        fix="python3 manage.py federation_test <server>; once it is back: "
        "POST /_synapse/admin/v1/federation/destinations/<server>/reset_connection (or the console's Retry now)",
        details=details,
    )  # fmt: skip
