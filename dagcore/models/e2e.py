"""End-to-end encryption keys as far as ``/sync`` needs them, and the device-list change stream.

``OneTimeKey``/``FallbackKey`` are the tables the E2EE key endpoints
(``/keys/upload``, ``/keys/claim``) fill; ``/sync`` only counts them
(``device_one_time_keys_count``, ``device_unused_fallback_key_types``).
"""

from django.db import models


class OneTimeKey(models.Model):
    user_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=255)
    algorithm = models.CharField(max_length=64)
    key_id = models.CharField(max_length=255)
    #: Canonical JSON of the key (a string or a signed key object).
    key_json = models.TextField()

    class Meta:
        db_table = "e2e_one_time_keys"
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "device_id", "algorithm", "key_id"], name="e2e_one_time_keys_unique"
            )
        ]


class FallbackKey(models.Model):
    """At most one fallback key per device and algorithm; ``used`` once claimed."""

    user_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=255)
    algorithm = models.CharField(max_length=64)
    key_id = models.CharField(max_length=255)
    key_json = models.TextField()
    used = models.BooleanField(default=False)

    class Meta:
        db_table = "e2e_fallback_keys"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "device_id", "algorithm"], name="e2e_fallback_keys_unique")
        ]


class DeviceListChange(models.Model):
    """A user's devices or cross-signing keys changed at ``stream_id`` (the ``device_lists`` stream)."""

    user_id = models.CharField(max_length=255)
    stream_id = models.BigIntegerField()

    class Meta:
        db_table = "device_list_changes"
        indexes = [
            models.Index(fields=["stream_id"], name="device_list_changes_stream"),
            models.Index(fields=["user_id", "stream_id"], name="device_list_changes_user"),
        ]
