"""End-to-end encryption keys the server stores and routes (it never sees plaintext),
and the device-list change stream.

Spec: client-server API "End-to-End Encryption"
(https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption).
``OneTimeKey``/``FallbackKey`` are filled by ``/keys/upload`` and emptied by
``/keys/claim``; ``/sync`` counts them (``device_one_time_keys_count``,
``device_unused_fallback_key_types``). ``DeviceKeys``, ``CrossSigningKey`` and
``CrossSigningSignature`` are what ``/keys/query`` answers from. Key JSON is
stored as the canonical JSON the client sent, so signatures over it still verify.
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
            models.UniqueConstraint(
                fields=["user_id", "device_id", "algorithm"], name="e2e_fallback_keys_unique"
            )
        ]


class DeviceListChange(models.Model):
    """A user's devices or cross-signing keys changed at ``stream_id`` (the ``device_lists`` stream).

    ``device_id`` names the device that changed, for a local user's device change: those
    positions are the ``stream_id`` / ``prev_id`` chain of the ``m.device_list_update``
    EDUs we send (spec: server-server API "Device Management"). Empty for a change of
    cross-signing keys (sent as ``m.signing_key_update``) and for remote users' changes.
    """

    user_id = models.CharField(max_length=255)
    stream_id = models.BigIntegerField()
    device_id = models.CharField(max_length=255, default="")
    #: Empty: everyone sharing a room with ``user_id`` re-queries them. Else the one user who
    #: signed ``user_id``'s master key (spec "Cross-signing": a signature by a user-signing
    #: key is visible only to its signer, so only the signer's devices re-query).
    visible_to = models.CharField(max_length=255, default="")

    class Meta:
        db_table = "device_list_changes"
        indexes = [
            models.Index(fields=["stream_id"], name="device_list_changes_stream"),
            models.Index(fields=["user_id", "stream_id"], name="device_list_changes_user"),
        ]


class DeviceKeys(models.Model):
    """A device's identity keys as uploaded (``/keys/upload`` ``device_keys``), with its self-signature.

    Written once per device: a device's identity keys never change (a new key
    pair is a new device), so a different upload for the same device is refused.
    """

    user_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=255)
    key_json = models.TextField()

    class Meta:
        db_table = "e2e_device_keys"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "device_id"], name="e2e_device_keys_unique")
        ]


class CrossSigningKey(models.Model):
    """A user's current master, self-signing or user-signing key (``/keys/device_signing/upload``).

    One row per user and usage: uploading a new key replaces the old one.
    """

    user_id = models.CharField(max_length=255)
    #: "master", "self_signing" or "user_signing".
    usage = models.CharField(max_length=16)
    #: Unpadded Base64 of the Ed25519 public key (the key ID is ``ed25519:<public_key>``).
    public_key = models.CharField(max_length=64)
    key_json = models.TextField()
    added_ts = models.BigIntegerField()

    class Meta:
        db_table = "e2e_cross_signing_keys"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "usage"], name="e2e_cross_signing_keys_unique")
        ]


class CrossSigningSignature(models.Model):
    """A signature uploaded with ``/keys/signatures/upload``: ``signer_key_id`` of
    ``signer_user_id`` over the key ``target_key_id`` (a device ID or a master key's
    public key) of ``target_user_id``."""

    signer_user_id = models.CharField(max_length=255)
    signer_key_id = models.CharField(max_length=255)
    target_user_id = models.CharField(max_length=255)
    target_key_id = models.CharField(max_length=255)
    signature = models.CharField(max_length=255)

    class Meta:
        db_table = "e2e_cross_signing_signatures"
        constraints = [
            models.UniqueConstraint(
                fields=["target_user_id", "target_key_id", "signer_user_id", "signer_key_id"],
                name="e2e_cross_signing_signatures_unique",
            )
        ]
        indexes = [models.Index(fields=["signer_user_id", "signer_key_id"], name="e2e_signatures_signer")]


class RemoteDeviceList(models.Model):
    """What we know of a remote user's device list (spec: server-server API "Device Management").

    Kept for users who share a room with one of ours: their server sends
    ``m.device_list_update`` EDUs to us. ``stream_id`` is the last update applied (or the
    ``stream_id`` of the ``/user/devices`` answer); ``stale`` says an update was missed (a
    gap in ``prev_id``) and the list must be fetched again before it is served.
    """

    user_id = models.CharField(max_length=255, unique=True)
    stream_id = models.BigIntegerField()
    stale = models.BooleanField(default=False)
    updated_ts = models.BigIntegerField()

    class Meta:
        db_table = "e2e_remote_device_lists"


class RemoteDevice(models.Model):
    """One device of a remote user, as its server published it (``keys`` may be absent)."""

    user_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=255)
    #: Canonical JSON of the device keys (signed by the device), or null before the device uploads any.
    key_json = models.TextField(null=True)
    display_name = models.CharField(max_length=255, null=True)

    class Meta:
        db_table = "e2e_remote_devices"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "device_id"], name="e2e_remote_devices_unique")
        ]


class RemoteCrossSigningKey(models.Model):
    """A remote user's master or self-signing key (``m.signing_key_update``, ``/user/devices``)."""

    user_id = models.CharField(max_length=255)
    #: "master" or "self_signing" (a user-signing key is never shown to other users).
    usage = models.CharField(max_length=16)
    key_json = models.TextField()

    class Meta:
        db_table = "e2e_remote_cross_signing_keys"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "usage"], name="e2e_remote_cross_signing_unique")
        ]
