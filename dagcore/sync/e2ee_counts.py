"""The device's key counts (spec "End-to-end encryption: Extensions to /sync"):
``device_one_time_keys_count`` and ``device_unused_fallback_key_types``, read with the
stream positions (``SyncStart.e2e_counts``), in every answer to a sync with a device."""

from __future__ import annotations

from typing import Any


def e2ee_count_fields(e2e_counts: tuple[dict[str, int], list[str]] | None) -> dict[str, Any]:
    if e2e_counts is None:
        return {}
    counts, fallback = e2e_counts
    return {"device_one_time_keys_count": counts, "device_unused_fallback_key_types": fallback}
