"""Per-user data a client stores on the server: account data (incl. room tags) and sync filters.

Spec: client-server API "Client Config" (account data), "Room Tagging" and "Filtering".
"""

from django.db import models


class AccountData(models.Model):
    """One ``type -> content`` entry of a user's global (``room_id == ""``) or per-room account data.

    ``stream_id`` is the ``account_data`` stream position of the last change, so
    incremental ``/sync`` finds changes with one index range scan. Room tags live
    here as the ``m.tag`` entry of the room; ``m.fully_read`` markers too. The
    ``m.push_rules`` entry is only a change marker: its content is computed from
    the ``PushRule`` rows whenever it is served.
    """

    user_id = models.CharField(max_length=255)
    room_id = models.CharField(max_length=255, default="")
    type = models.CharField(max_length=255)
    #: Canonical JSON of the content object.
    content = models.TextField()
    stream_id = models.BigIntegerField()

    class Meta:
        db_table = "account_data"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "room_id", "type"], name="account_data_unique"),
        ]
        indexes = [models.Index(fields=["user_id", "stream_id"], name="account_data_user_stream")]


class UserFilter(models.Model):
    """A filter uploaded with ``POST /user/{userId}/filter``; its ID is the row ID."""

    user_id = models.CharField(max_length=255)
    #: Canonical JSON of the validated filter definition.
    definition = models.TextField()
    created_ts = models.BigIntegerField()

    class Meta:
        db_table = "user_filters"
        indexes = [models.Index(fields=["user_id"], name="user_filters_user")]


class RemoteProfileCache(models.Model):
    """Another server's answer to ``GET /_matrix/federation/v1/query/profile`` for one user,
    kept briefly so a client rendering a member list does not ask the same server per row."""

    user_id = models.CharField(max_length=255, unique=True)
    displayname = models.TextField(null=True)
    avatar_url = models.TextField(null=True)
    fetched_ts = models.BigIntegerField()

    class Meta:
        db_table = "remote_profile_cache"
