"""Rooms and who is in them."""

from django.db import models


class Room(models.Model):
    room_id = models.CharField(max_length=255, unique=True)
    room_version = models.CharField(max_length=32)
    creator = models.CharField(max_length=255)
    #: Published in this server's public room directory.
    is_public = models.BooleanField(default=False)
    created_ts = models.BigIntegerField()
    #: State group of the room's current state (the resolved state after its
    #: forward extremities); the "state before" of the next local event.
    current_state_group = models.BigIntegerField(null=True)
    #: The forward extremities (events with no known children: the prev_events of
    #: the next event), deepest first, as JSON ``[[nid, event_id, depth, state_group], ...]``.
    #: They change with every event. Kept on the room row, one in-place update per event
    #: (a HOT update in PostgreSQL) leaves no dead index entries behind, where a table
    #: of extremities churned an insert and a delete per event and slowed every later
    #: read until vacuumed.
    forward_extremities = models.TextField(default="[]")
    #: Operators watch this: many extremities means state resolution works hard.
    forward_extremity_count = models.IntegerField(default=0)

    class Meta:
        db_table = "rooms"


class RoomMembership(models.Model):
    """Current membership of every user (local or remote) in every room we know.

    Maintained from current state, so ``/sync`` and "which servers are in the
    room" never scan member events.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user_id = models.CharField(max_length=255)
    membership = models.CharField(max_length=16)
    event = models.ForeignKey("dagcore.Event", on_delete=models.CASCADE, related_name="+")
    #: Stream position of the membership event (the sync token that changed it).
    stream_ordering = models.BigIntegerField()
    is_local = models.BooleanField()
    displayname = models.CharField(max_length=512, null=True)
    avatar_url = models.CharField(max_length=512, null=True)

    class Meta:
        db_table = "room_memberships"
        constraints = [models.UniqueConstraint(fields=["room", "user_id"], name="room_membership_unique")]
        indexes = [
            models.Index(fields=["user_id", "membership"], name="room_membership_user"),
            models.Index(fields=["room", "membership"], name="room_membership_room"),
        ]


class RoomServer(models.Model):
    """Servers with at least one joined member: the destinations of new events."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="servers")
    server_name = models.CharField(max_length=255)
    joined_count = models.IntegerField(default=0)

    class Meta:
        db_table = "room_servers"
        constraints = [models.UniqueConstraint(fields=["room", "server_name"], name="room_server_unique")]


class ForgottenRoom(models.Model):
    """A user forgot a room they had left (spec: ``POST /rooms/{roomId}/forget``).

    The room stays forgotten while the user's membership is the one they forgot
    (its stream position is at most ``membership_stream``); any later membership
    change (a new invite or join) brings the room back.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    membership_stream = models.BigIntegerField()

    class Meta:
        db_table = "forgotten_rooms"
        constraints = [models.UniqueConstraint(fields=["room", "user_id"], name="forgotten_room_unique")]
        indexes = [models.Index(fields=["user_id"], name="forgotten_rooms_user")]


class BlockedRoom(models.Model):
    """A room local users may not join (Synapse's Block Room API): blocked by a server admin,
    possibly before this server knows the room."""

    room_id = models.CharField(max_length=255, unique=True)
    #: The admin who blocked it.
    user_id = models.CharField(max_length=255)
    blocked_ts = models.BigIntegerField()

    class Meta:
        db_table = "blocked_rooms"
