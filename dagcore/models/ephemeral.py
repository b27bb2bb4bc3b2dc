"""Ephemeral room data and presence: read receipts, typing notices, presence states.

Each row carries the position of its stream (``receipts``, ``typing``,
``presence``) at its last change, so incremental ``/sync`` reads "what changed
since position X" through an index, never by scanning rooms.
"""

from django.db import models


class Receipt(models.Model):
    """A user's latest receipt of one type (and thread) in a room.

    Spec: client-server API "Receipts". ``thread_id`` is ``""`` for an unthreaded
    receipt, ``"main"`` or a thread root's event ID otherwise.
    """

    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    receipt_type = models.CharField(max_length=64)
    thread_id = models.CharField(max_length=255, default="")
    event_id = models.CharField(max_length=255)
    #: Stream position of the receipted event (receipts only move forward; unread counts start here).
    event_stream_ordering = models.BigIntegerField()
    ts = models.BigIntegerField()
    stream_id = models.BigIntegerField()

    class Meta:
        db_table = "receipts"
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user_id", "receipt_type", "thread_id"], name="receipts_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["stream_id"], name="receipts_stream"),
            models.Index(fields=["user_id", "room"], name="receipts_user_room"),
        ]


class TypingNotice(models.Model):
    """Whether a user is typing in a room: until ``expires_ts`` (0 once stopped or expired)."""

    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    expires_ts = models.BigIntegerField()
    stream_id = models.BigIntegerField()

    class Meta:
        db_table = "typing_notices"
        constraints = [models.UniqueConstraint(fields=["room", "user_id"], name="typing_notices_unique")]
        indexes = [
            models.Index(fields=["stream_id"], name="typing_notices_stream"),
            models.Index(fields=["expires_ts"], name="typing_notices_expiry"),
        ]


class Presence(models.Model):
    """A local user's presence (spec: client-server API "Presence")."""

    user_id = models.CharField(max_length=255, unique=True)
    #: online, unavailable or offline.
    state = models.CharField(max_length=16)
    status_msg = models.TextField(null=True)
    last_active_ts = models.BigIntegerField()
    #: Last time a /sync of this user marked them online (they go offline when it gets old).
    last_sync_ts = models.BigIntegerField()
    stream_id = models.BigIntegerField()

    class Meta:
        db_table = "presence"
        indexes = [
            models.Index(fields=["stream_id"], name="presence_stream"),
            models.Index(fields=["state", "last_sync_ts"], name="presence_state_sync"),
        ]
