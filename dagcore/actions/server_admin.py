"""Synapse admin API answers about the server itself: background updates, scheduled tasks,
experimental features (issue 13: "``background_updates/*``
answered truthfully; ``scheduled_tasks``").

Dagma has no background database updates: every schema change is a migration applied
before a process starts (``serve`` refuses to start with pending ones). So the status lists
none, and the jobs Synapse can start are either done continuously here or refused by name.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dagcore.actions import admin_jobs
from dagcore.http.errors import MatrixError
from dagcore.models import User

# Synapse: "This won't persist over restarts" — a flag of the answering process.
_enabled = True
_enabled_lock = threading.Lock()

#: Synapse's ``start_job`` names, and why Dagma has nothing to start for each.
BACKGROUND_JOBS = {
    # Room statistics are read from the live tables (``dagcore.store.rooms``), never a copy.
    "populate_stats_process_rooms": None,
    # The user directory is a query over profiles and memberships, never a stale table.
    "regenerate_directory": None,
    "event_resign": "Dagma does not re-sign stored events; rotate keys with `manage.py signing_key rotate`",
}

#: Per-user experimental features Dagma offers (none: its MSCs are on for everyone or off).
EXPERIMENTAL_FEATURES: dict[str, str] = {}


def background_updates_status() -> dict[str, Any]:
    return {"enabled": background_updates_enabled(), "current_updates": {}}


def background_updates_enabled() -> bool:
    with _enabled_lock:
        return _enabled


def set_background_updates_enabled(body: Mapping[str, Any]) -> bool:
    global _enabled
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise MatrixError(400, "M_INVALID_PARAM", "'enabled' must be a boolean")
    with _enabled_lock:
        _enabled = enabled
        return _enabled


def check_start_background_job(body: Mapping[str, Any]) -> None:
    name = body.get("job_name")
    if not isinstance(name, str):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing job_name")
    if name not in BACKGROUND_JOBS:
        raise MatrixError(400, "M_UNKNOWN", f"Unknown job_name {name[:100]!r}")
    refused = BACKGROUND_JOBS[name]
    if refused is not None:
        raise MatrixError(400, "M_UNRECOGNIZED", refused)


def scheduled_tasks(query: Mapping[str, str]) -> list[dict[str, Any]]:
    """Admin jobs in Synapse's ``scheduled_tasks`` shape (filters: ``action_name``,
    ``resource_id``, ``status``, ``max_timestamp``)."""
    max_ts = query.get("max_timestamp")
    if max_ts is not None and not max_ts.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "max_timestamp must be an integer")
    out = []
    for job in admin_jobs.list_jobs(kind=query.get("action_name") or None, target=query.get("resource_id") or None,
                                    limit=1000):  # fmt: skip
        timestamp = job.finished_ts or job.started_ts or job.created_ts
        if query.get("status") and job.status != query["status"]:
            continue
        if max_ts is not None and timestamp >= int(max_ts):
            continue
        out.append({
            "id": job.job_id, "action": job.kind, "status": job.status, "timestamp_ms": timestamp,
            "resource_id": job.target or None, "result": job.result or None, "error": job.error or None,
        })  # fmt: skip
    return out


def experimental_features(user: User) -> dict[str, Any]:
    return {"features": {name: False for name in EXPERIMENTAL_FEATURES}}


def check_set_experimental_features(user: User, body: Mapping[str, Any]) -> None:
    features = body.get("features")
    if not isinstance(features, dict):
        raise MatrixError(400, "M_INVALID_PARAM", "'features' must be an object")
    for name in features:
        if name not in EXPERIMENTAL_FEATURES:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name[:100]!r} is not recognised by Dagma")
