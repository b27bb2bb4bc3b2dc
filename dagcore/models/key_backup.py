"""Server-side key backups (spec: client-server API "Server-side key backups",
https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups).

The server stores what the client encrypted (``session_data``) and the metadata
it needs to pick between two copies of one session's key; it cannot read either.
"""

from django.db import models


class KeyBackupVersion(models.Model):
    """One backup of a user. Versions count up per user and are never reused: a
    deleted version stays as a tombstone (``deleted``) so deleting it again succeeds
    and its number is not handed out twice."""

    user_id = models.CharField(max_length=255)
    version = models.BigIntegerField()
    algorithm = models.CharField(max_length=255)
    #: Canonical JSON of ``auth_data``.
    auth_data = models.TextField()
    #: Bumped whenever the backup's keys change (the answers' ``etag``).
    etag = models.BigIntegerField(default=0)
    deleted = models.BooleanField(default=False)

    class Meta:
        db_table = "e2e_room_keys_versions"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "version"], name="e2e_room_keys_versions_unique")
        ]


class KeyBackupSession(models.Model):
    """The backed-up key of one Megolm session in one room."""

    backup = models.ForeignKey(KeyBackupVersion, on_delete=models.CASCADE, related_name="sessions")
    room_id = models.CharField(max_length=255)
    session_id = models.CharField(max_length=255)
    first_message_index = models.BigIntegerField()
    forwarded_count = models.BigIntegerField()
    is_verified = models.BooleanField()
    #: Canonical JSON of ``session_data`` (encrypted by the client).
    session_data = models.TextField()

    class Meta:
        db_table = "e2e_room_keys"
        constraints = [
            models.UniqueConstraint(fields=["backup", "room_id", "session_id"], name="e2e_room_keys_unique")
        ]
