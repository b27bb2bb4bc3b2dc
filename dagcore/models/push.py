"""Push rules and the lazily maintained unread-notification counters.

Spec: client-server API "Push Notifications". A user's ruleset is the spec's
server-default rules (built in code, ``dagcore.protocol.push_rules``) merged
with their ``PushRule`` rows: user-defined rules, and for server-default rules
only the user's changes to ``enabled``/``actions`` (``is_default``).
"""

from django.db import models


class PushRule(models.Model):
    user_id = models.CharField(max_length=255)
    #: override, content, room, sender or underride.
    kind = models.CharField(max_length=16)
    rule_id = models.CharField(max_length=255)
    #: Higher is more important within the kind (user-defined rules only).
    priority = models.IntegerField(default=0)
    #: JSON list (override/underride rules).
    conditions = models.TextField(default="[]")
    #: JSON list; null on a default-rule row that does not change the actions.
    actions = models.TextField(null=True)
    #: Content rules: the glob pattern.
    pattern = models.TextField(null=True)
    #: Null on a default-rule row that does not change ``enabled``.
    enabled = models.BooleanField(null=True)
    #: True: this row only records the user's changes to a server-default rule.
    is_default = models.BooleanField(default=False)

    class Meta:
        db_table = "push_rules"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "kind", "rule_id"], name="push_rules_unique")
        ]


class UnreadCounter(models.Model):
    """Cached unread counts of a user in a room, computed lazily by ``/sync`` (never at send time).

    Valid while the user's read position is still ``from_stream`` and their push
    rules are still at ``rules_version``; events after ``upto_stream`` are
    evaluated and added on the next sync that needs the counts.
    """

    user_id = models.CharField(max_length=255)
    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+")
    from_stream = models.BigIntegerField()
    upto_stream = models.BigIntegerField()
    rules_version = models.BigIntegerField()
    notification_count = models.IntegerField()
    highlight_count = models.IntegerField()
    #: JSON {thread root event ID: [notifications, highlights]} (unread_thread_notifications).
    threads = models.TextField(default="{}")

    class Meta:
        db_table = "unread_counters"
        constraints = [models.UniqueConstraint(fields=["user_id", "room"], name="unread_counters_unique")]


class Pusher(models.Model):
    """Where a user's notifications are pushed (spec: client-server API "Pushers").

    Tied to the device that registered it: deleting the device (logout, device
    deletion, deactivation) deletes its pushers, as the spec says of the access token.
    ``last_stream_ordering`` is how far delivery got: the outbox is the event stream
    itself, so a lost task or a restart delays pushes but never loses or repeats one.
    """

    user_id = models.CharField(max_length=255)
    device = models.ForeignKey("dagcore.Device", on_delete=models.CASCADE, related_name="+", null=True)
    kind = models.CharField(max_length=16)
    app_id = models.CharField(max_length=64)
    pushkey = models.CharField(max_length=512)
    pushkey_ts = models.BigIntegerField()
    app_display_name = models.CharField(max_length=255)
    device_display_name = models.CharField(max_length=255)
    profile_tag = models.CharField(max_length=255, null=True)
    lang = models.CharField(max_length=64)
    #: JSON object; for ``http`` pushers it holds ``url`` (and maybe ``format``).
    data = models.TextField()
    #: Events at or before this stream position have been considered for pushing.
    last_stream_ordering = models.BigIntegerField()
    #: Set while a gateway keeps failing; delivery retries from ``last_stream_ordering``.
    failing_since = models.BigIntegerField(null=True)
    #: A worker holds this pusher until then (claimed by a conditional update, on any database).
    claimed_until = models.BigIntegerField(null=True)

    class Meta:
        db_table = "pushers"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "app_id", "pushkey"], name="pushers_unique")
        ]
        indexes = [models.Index(fields=["app_id", "pushkey"], name="pushers_app_pushkey")]
