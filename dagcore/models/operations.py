"""What operators and their tools leave behind: the audit trail, admin jobs, process
heartbeats, check results and scheduled-job runs (issues 13 and 14).

Shared by Politburo, the ``manage.py`` operation commands and beat; written only through
``dagcore.store.operations``.
"""

from django.db import models


class AuditEntry(models.Model):
    """One change made by an operator: who, through what, what, on what, with what result.

    ``params`` never holds secrets (``dagcore.actions.audit`` drops them before writing).
    """

    ts = models.BigIntegerField(db_index=True)
    #: ``@user:server`` for the console and the admin API, ``cli:<unix user>`` for commands.
    actor = models.CharField(max_length=255, db_index=True)
    #: ``console``, ``api``, ``cli`` or ``beat``.
    via = models.CharField(max_length=16)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=512, default="")
    params = models.JSONField(default=dict)
    counts = models.JSONField(default=dict)
    #: ``ok``, ``dry-run`` or ``failed``.
    result = models.CharField(max_length=16)
    error = models.TextField(default="")
    ip = models.CharField(max_length=64, default="")

    class Meta:
        db_table = "audit_log"


class AdminJob(models.Model):
    """Long admin work (a room delete, a history purge, a media purge): started by the console,
    the admin API or a command, run by a task, followed on a status page or by polling."""

    job_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=64)
    target = models.CharField(max_length=512, default="")
    params = models.JSONField(default=dict)
    #: ``scheduled``, ``active``, ``complete`` or ``failed`` (Synapse's delete_status words).
    status = models.CharField(max_length=16, default="scheduled")
    progress = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    error = models.TextField(default="")
    created_by = models.CharField(max_length=255)
    created_ts = models.BigIntegerField()
    started_ts = models.BigIntegerField(null=True)
    finished_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "admin_jobs"
        indexes = [models.Index(fields=["kind", "target"], name="admin_jobs_kind_target")]


class ProcessHeartbeat(models.Model):
    """A running server process or worker, refreshed while it lives (the dashboard's and
    ``doctor``'s "processes alive")."""

    role = models.CharField(max_length=32)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    version = models.CharField(max_length=64)
    started_ts = models.BigIntegerField()
    last_seen_ts = models.BigIntegerField(db_index=True)

    class Meta:
        db_table = "process_heartbeats"
        constraints = [
            models.UniqueConstraint(fields=["role", "host", "pid"], name="process_heartbeat_unique")
        ]


class CheckResult(models.Model):
    """The outcome of a check or verification run (``doctor``'s checks, ``backup verify``,
    ``dag check``), kept for the dashboard, ``doctor`` and metrics."""

    name = models.CharField(max_length=128)
    #: ``ok``, ``warn`` or ``fail``.
    status = models.CharField(max_length=8)
    summary = models.TextField(default="")
    details = models.JSONField(default=dict)
    ts = models.BigIntegerField()

    class Meta:
        db_table = "check_results"
        indexes = [models.Index(fields=["name", "-ts"], name="check_results_name_ts")]


class ScheduledJobRun(models.Model):
    """The last run of one beat job (``BEAT_SCHEDULE`` name): when, and how it went."""

    name = models.CharField(max_length=128, unique=True)
    last_started_ts = models.BigIntegerField(null=True)
    last_finished_ts = models.BigIntegerField(null=True)
    #: ``ok`` or ``failed``; empty before the first run.
    outcome = models.CharField(max_length=16, default="")
    message = models.TextField(default="")
    last_success_ts = models.BigIntegerField(null=True)
    #: Who runs (or was sent) the job now, until when: a second beat (two ``celery beat``
    #: processes, two in-process runners of one homeserver) finds the lease taken and skips
    #: the job; a crashed runner's lease simply expires.
    lease_owner = models.CharField(max_length=255, default="")
    lease_until_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "scheduled_job_runs"


class DagRepair(models.Model):
    """One applied ``manage.py dag repair``: what it changed and the values it replaced, so
    ``dag repair --undo ID`` can put them back (events it fetched or sent stay: events are
    never deleted)."""

    room_id = models.CharField(max_length=255, db_index=True)
    actor = models.CharField(max_length=255)
    created_ts = models.BigIntegerField()
    #: The plan that was carried out, as ``dag repair --json`` prints it.
    plan = models.JSONField(default=dict)
    #: The previous values: event state groups and rejections, the room's head, current-state
    #: rows, membership rows, room server counts, the gaps added.
    undo = models.JSONField(default=dict)
    undone_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "dag_repairs"
