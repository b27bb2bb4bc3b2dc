"""Send-to-device messages waiting for a device (spec: client-server API "Send-to-Device messaging").

A message stays until the device acknowledges it by syncing with a token past
its ``stream_id`` (the spec's "deleted only after the client confirms receipt").
"""

from django.db import models


class ToDeviceMessage(models.Model):
    user_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=255)
    stream_id = models.BigIntegerField()
    sender = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    #: Canonical JSON of the content.
    content = models.TextField()

    class Meta:
        db_table = "to_device_messages"
        indexes = [models.Index(fields=["user_id", "device_id", "stream_id"], name="to_device_inbox")]


class ReceivedToDeviceMessage(models.Model):
    """An ``m.direct_to_device`` EDU delivered to our users, by its ``message_id`` (spec:
    server-server API "Send-to-device messaging": the ID deduplicates a resent EDU)."""

    origin = models.CharField(max_length=255)
    message_id = models.CharField(max_length=255)
    received_ts = models.BigIntegerField()

    class Meta:
        db_table = "to_device_received_ids"
        constraints = [
            models.UniqueConstraint(fields=["origin", "message_id"], name="to_device_received_unique")
        ]
        #: The expiry beat deletes by age (``do_expire_received_message_ids``).
        indexes = [models.Index(fields=["received_ts"], name="to_device_received_ts")]
