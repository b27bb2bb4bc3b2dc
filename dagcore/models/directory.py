"""The room directory: local room aliases, and reports of abusive content.

Spec: client-server API "Room aliases" / "Room Directory"
(https://spec.matrix.org/v1.19/client-server-api/#room-aliases) and "Reporting content"
(https://spec.matrix.org/v1.19/client-server-api/#reporting-content).
Whether a room is *published* in the public directory is ``Room.is_public``.
"""

from django.db import models


class RoomAlias(models.Model):
    """``#localpart:our_server -> !room``. Only aliases of this server are stored here."""

    alias = models.CharField(max_length=255, unique=True)
    room_id = models.CharField(max_length=255)
    #: Who created the alias: they may delete it again (besides room admins and server admins).
    creator = models.CharField(max_length=255)
    created_ts = models.BigIntegerField()

    class Meta:
        db_table = "room_aliases"
        indexes = [models.Index(fields=["room_id"], name="room_aliases_room")]


class ContentReport(models.Model):
    """A user's report of an event, a whole room (``event_id`` null) or a user (``reported_user_id``), kept for admins."""

    room_id = models.CharField(max_length=255, null=True)
    event_id = models.CharField(max_length=255, null=True)
    reported_user_id = models.CharField(max_length=255, null=True)
    reporter = models.CharField(max_length=255)
    reason = models.TextField(null=True)
    #: Deprecated in the spec (-100 most offensive .. 0 inoffensive), kept when given.
    score = models.IntegerField(null=True)
    received_ts = models.BigIntegerField()
    #: Set by an admin once handled.
    resolved_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "content_reports"
        indexes = [models.Index(fields=["received_ts"], name="content_reports_ts")]
