"""Client transaction IDs: what makes ``PUT .../send/{type}/{txnId}`` idempotent.

Spec: https://spec.matrix.org/v1.19/client-server-api/#transaction-identifiers —
"the scope of a transaction ID is ... a single device" (v1.7+; an access token
without a device is its own scope), and a retried request must answer what the
first one did. ``scope`` names the endpoint and its path (room, event type), so
the same txnId on another endpoint or room is a new request, as in Synapse.
"""

from django.db import models


class ClientTxn(models.Model):
    user_id = models.CharField(max_length=255)
    #: The device ID, or ``token:<id>`` for an access token without a device.
    device_key = models.CharField(max_length=255)
    scope = models.CharField(max_length=600)
    txn_id = models.CharField(max_length=255)
    event_id = models.CharField(max_length=255)
    created_ts = models.BigIntegerField()

    class Meta:
        db_table = "client_txns"
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "device_key", "scope", "txn_id"], name="client_txn_unique"
            )
        ]
        indexes = [
            models.Index(fields=["event_id"], name="client_txns_event"),
            models.Index(fields=["created_ts"], name="client_txns_ts"),
        ]
