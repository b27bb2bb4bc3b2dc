"""The event DAG and room state (DESIGN.md §4).

Events are referenced internally by their integer ``id`` (the "nid"): state
group entries, current state and auth chains hold nids, which keeps the big
tables narrow. Edges keep the textual event ID of the target because a prev or
auth event may not be known to us yet.
"""

from django.db import models


class Event(models.Model):
    event_id = models.CharField(max_length=255, unique=True)
    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="events", db_index=False)
    type = models.CharField(max_length=255)
    state_key = models.CharField(max_length=255, null=True)
    sender = models.CharField(max_length=255)
    depth = models.BigIntegerField()
    origin_server_ts = models.BigIntegerField()
    received_ts = models.BigIntegerField()
    #: Global, monotonic position in the events stream (sync tokens). Null for
    #: outliers and rejected events, which are never shown to clients.
    stream_ordering = models.BigIntegerField(null=True, unique=True)
    #: The PDU exactly as created or received (canonical JSON text).
    json = models.TextField()
    outlier = models.BooleanField(default=False)
    rejected_reason = models.TextField(null=True)
    soft_failed = models.BooleanField(default=False)
    #: Event ID of the accepted redaction of this event, if any.
    redacted_by = models.CharField(max_length=255, null=True)
    #: For m.room.redaction: the event it targets.
    redacts = models.CharField(max_length=255, null=True)
    #: m.relates_to of the content, for /relations, threads, edits and reactions.
    relates_to = models.CharField(max_length=255, null=True)
    relation_type = models.CharField(max_length=64, null=True)
    #: State groups before and after this event (equal for non-state events).
    state_group_before = models.BigIntegerField(null=True)
    state_group = models.BigIntegerField(null=True)
    #: State events only: the nids of the event's whole auth chain, as a JSON
    #: list. Materialised on persist so state resolution's auth difference is a
    #: set operation over stored chains, never a walk of the DAG.
    auth_chain = models.TextField(null=True)

    class Meta:
        db_table = "events"
        indexes = [
            models.Index(fields=["room", "stream_ordering"], name="events_room_stream"),
            models.Index(fields=["room", "depth", "stream_ordering"], name="events_room_topo"),
            models.Index(fields=["relates_to", "relation_type"], name="events_relates_to"),
            models.Index(fields=["redacts"], name="events_redacts"),
            models.Index(fields=["room", "origin_server_ts"], name="events_room_ts"),
        ]


class EventEdge(models.Model):
    """``prev_events`` edges."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="prev_edges")
    prev_event_id = models.CharField(max_length=255)

    class Meta:
        db_table = "event_edges"
        indexes = [models.Index(fields=["prev_event_id"], name="event_edges_prev")]


class EventAuthEdge(models.Model):
    """``auth_events`` edges."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="auth_edges")
    auth_event_id = models.CharField(max_length=255)

    class Meta:
        db_table = "event_auth_edges"


class StateGroup(models.Model):
    """A room state, stored as a delta over ``prev_group`` or as a full snapshot.

    ``chain`` lists the group IDs from the nearest snapshot down to this group
    (inclusive), so any lookup is one query over at most ``MAX_STATE_CHAIN``
    groups; a new snapshot is written when a chain would grow past it.
    """

    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+", db_index=False)
    prev_group = models.BigIntegerField(null=True)
    chain = models.TextField()
    is_snapshot = models.BooleanField()

    class Meta:
        db_table = "state_groups"


class StateGroupEntry(models.Model):
    """One ``(type, state_key) -> event`` entry of a group (a delta or a snapshot row)."""

    group_id = models.BigIntegerField()
    type = models.CharField(max_length=255)
    state_key = models.CharField(max_length=255)
    event_nid = models.BigIntegerField()

    class Meta:
        db_table = "state_group_entries"
        indexes = [models.Index(fields=["group_id", "type", "state_key"], name="state_entries_lookup")]


class CurrentStateEvent(models.Model):
    """The room's current state: the resolved state after its forward extremities."""

    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="current_state")
    type = models.CharField(max_length=255)
    state_key = models.CharField(max_length=255)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "current_state_events"
        constraints = [
            models.UniqueConstraint(fields=["room", "type", "state_key"], name="current_state_unique")
        ]


class BackwardExtremity(models.Model):
    """An event the room's timeline cites as a prev event but we do not hold (in the timeline).

    Spec: server-server API "Backfilling and retrieving missing events": these are the
    ``v`` of a ``/backfill`` request. Written when an event is persisted on a state we were
    given (a remote join's send_join state, a gap ``/send`` could not fill, the oldest event
    of a backfilled batch); removed when the event arrives. ``depth`` is the depth of the
    newest event citing it, which is where a backwards ``/messages`` walk meets the gap.
    ``attempts`` / ``retry_after_ts``: peers that had nothing for it are not asked again
    on every page (a room whose history is not visible to us stays a short walk).
    """

    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+", db_index=False)
    event_id = models.CharField(max_length=255)
    depth = models.BigIntegerField()
    attempts = models.IntegerField(default=0)
    retry_after_ts = models.BigIntegerField(default=0)

    class Meta:
        db_table = "backward_extremities"
        constraints = [
            models.UniqueConstraint(fields=["room", "event_id"], name="backward_extremities_unique")
        ]
        indexes = [models.Index(fields=["room", "depth"], name="backward_extremities_depth")]
