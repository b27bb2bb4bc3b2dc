"""What ``/sync`` reports about a device's end-to-end keys (spec: "Extensions to /sync" of E2EE)."""

from __future__ import annotations

from django.db.models import Count

from dagcore.models import FallbackKey, OneTimeKey

#: Clients (matrix-js-sdk, nio) expect this algorithm to be present, even at 0.
DEFAULT_ALGORITHMS = ("signed_curve25519",)


def get_one_time_key_counts(*, user_id: str, device_id: str) -> dict[str, int]:
    """``device_one_time_keys_count``: unclaimed one-time keys per algorithm (one query)."""
    counts = dict.fromkeys(DEFAULT_ALGORITHMS, 0)
    for algorithm, n in (
        OneTimeKey.objects.filter(user_id=user_id, device_id=device_id)
        .values_list("algorithm")
        .annotate(n=Count("id"))
        .values_list("algorithm", "n")
    ):
        counts[algorithm] = int(n)
    return counts


def get_unused_fallback_key_types(*, user_id: str, device_id: str) -> list[str]:
    """``device_unused_fallback_key_types``: algorithms with a fallback key not yet used (one query)."""
    return sorted(
        FallbackKey.objects.filter(user_id=user_id, device_id=device_id, used=False).values_list(
            "algorithm", flat=True
        )
    )
