"""Federation lookups cached in the database, so every process shares them (DESIGN.md §1).

Remote servers' signing keys (spec: server-server API "Retrieving server keys") and
their ``/.well-known/matrix/server`` delegations (spec: "Resolving server names").
"""

from django.db import models


class RemoteServerKey(models.Model):
    """One verify key of another server, as last fetched (from the server itself or a notary).

    ``valid_until_ts`` is already capped: the lesser of the response's
    ``valid_until_ts`` and 7 days after the fetch (spec: "Servers MUST use the
    lesser of this field and 7 days into the future"); for a key listed in
    ``old_verify_keys`` it is the key's ``expired_ts``. ``key_json`` is the whole
    signed response the key came in, kept so that we can serve it as a notary.
    """

    server_name = models.CharField(max_length=255)
    key_id = models.CharField(max_length=255)
    #: Unpadded Base64 of the Ed25519 public key.
    verify_key = models.CharField(max_length=255)
    valid_until_ts = models.BigIntegerField()
    #: Set when the server lists the key under ``old_verify_keys``.
    expired_ts = models.BigIntegerField(null=True)
    #: The server that answered: the key's own server or a notary.
    from_server = models.CharField(max_length=255)
    fetched_ts = models.BigIntegerField()
    key_json = models.TextField()

    class Meta:
        db_table = "remote_server_keys"
        constraints = [
            models.UniqueConstraint(fields=["server_name", "key_id"], name="remote_server_key_unique")
        ]


class WellKnownDelegation(models.Model):
    """The cached answer of ``https://<server_name>/.well-known/matrix/server``.

    ``delegated_server`` is ``m.server``; empty when the server has no (valid)
    delegation, which is cached too (spec: "servers should cache errors").
    """

    server_name = models.CharField(max_length=255, unique=True)
    delegated_server = models.CharField(max_length=255)
    expires_ts = models.BigIntegerField()

    class Meta:
        db_table = "well_known_delegations"


class FederationDestination(models.Model):
    """Another server we send transactions to: its back-off, its lease and what it cost us.

    One row per destination, created with its first outbox row. The sender holding the
    lease (``lease_owner`` until ``lease_expires_ts``) is the only one sending to it, in
    every process; a crashed holder's lease runs out and the next sender takes over,
    sending the same transaction (``txn_id``) again.
    """

    server_name = models.CharField(max_length=255, unique=True)
    #: Not before this time (ms) is the next transaction attempted (0: now).
    next_attempt_ts = models.BigIntegerField(default=0)
    #: Failed attempts since the last success (the back-off's exponent).
    failures = models.IntegerField(default=0)
    last_success_ts = models.BigIntegerField(null=True)
    last_failure_ts = models.BigIntegerField(null=True)
    #: The first failure since the last success (Synapse's ``failure_ts``); null while it works.
    failing_since_ts = models.BigIntegerField(null=True)
    last_error = models.TextField(default="")
    #: PDUs the destination refused for good (a 4xx other than 429): kept in the outbox, counted here.
    dead_lettered = models.IntegerField(default=0)
    #: The transaction in flight: its ID stays until the destination answers 200.
    txn_id = models.CharField(max_length=64, default="")
    #: Transactions sent so far (the next transaction ID's counter).
    txn_counter = models.BigIntegerField(default=0)
    lease_owner = models.CharField(max_length=64, default="")
    lease_expires_ts = models.BigIntegerField(default=0)

    class Meta:
        db_table = "federation_destinations"


class FederationOutboxEntry(models.Model):
    """One PDU to deliver to one destination, written in the event's own transaction.

    Delivered rows are deleted; dead-lettered ones stay (``dead_letter`` says why) so an
    operator can see them. ``txn_id`` marks the rows of the transaction in flight.
    """

    destination = models.CharField(max_length=255)
    event = models.ForeignKey("dagcore.Event", on_delete=models.CASCADE, related_name="+")
    room = models.ForeignKey("dagcore.Room", on_delete=models.CASCADE, related_name="+", db_index=False)
    created_ts = models.BigIntegerField()
    txn_id = models.CharField(max_length=64, default="")
    dead_letter = models.TextField(null=True)

    class Meta:
        db_table = "federation_outbox"
        indexes = [models.Index(fields=["destination", "id"], name="federation_outbox_dest")]
        constraints = [
            models.UniqueConstraint(fields=["destination", "event"], name="federation_outbox_unique")
        ]


class FederationOutboxEdu(models.Model):
    """One durable EDU to deliver to one destination (to-device messages, device-list and
    cross-signing updates), written in the transaction of the change it reports.

    Sent in the same per-destination transactions as the PDUs (at most 100 per
    transaction, spec "Transactions"), deleted on a 200, dead-lettered like PDUs.
    """

    destination = models.CharField(max_length=255)
    edu_type = models.CharField(max_length=255)
    #: The EDU's ``content`` as canonical JSON.
    content = models.TextField()
    created_ts = models.BigIntegerField()
    txn_id = models.CharField(max_length=64, default="")
    dead_letter = models.TextField(null=True)

    class Meta:
        db_table = "federation_outbox_edus"
        indexes = [models.Index(fields=["destination", "id"], name="federation_outbox_edu_dest")]


class FederationEphemeralEdu(models.Model):
    """The latest typing notice, receipt or presence of one of our users for one destination.

    Issue 11: "typing is sent and expires, never queued across an outage"; "receipts and
    presence coalesce (the latest wins)". One row per (destination, type, ``key``) — the
    key names what a newer update replaces (a room and user for typing, a room, user,
    receipt type and thread for receipts, a user for presence) — upserted by the change,
    taken into the destination's next transaction and deleted on its 200 unless a newer
    update (another ``revision``) replaced it meanwhile. Typing rows carry an
    ``expires_ts``: one not sent by then (the destination is down) is dropped, never sent late.
    """

    destination = models.CharField(max_length=255)
    edu_type = models.CharField(max_length=64)
    key = models.CharField(max_length=1100)
    #: The update as canonical JSON (its shape per type: ``dagcore.federation.ephemeral``).
    content = models.TextField()
    #: Changed by every update: a transaction deletes only the revision it sent.
    revision = models.BigIntegerField()
    #: Not sent after this time (ms); 0: kept until sent (receipts, presence).
    expires_ts = models.BigIntegerField(default=0)
    created_ts = models.BigIntegerField()
    txn_id = models.CharField(max_length=64, default="")

    class Meta:
        db_table = "federation_outbox_ephemeral"
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "edu_type", "key"], name="federation_outbox_ephemeral_unique"
            )
        ]
        indexes = [models.Index(fields=["destination", "id"], name="federation_outbox_eph_dest")]


class ReceivedTransaction(models.Model):
    """A ``/send`` transaction from another server, kept so a retry of it is answered, not redone.

    Spec: server-server API "Transactions" — the transaction ID is unique per origin. The
    row is written with the staged PDUs in one commit; ``response`` is the answer given.
    """

    origin = models.CharField(max_length=255)
    txn_id = models.CharField(max_length=255)
    received_ts = models.BigIntegerField()
    #: The 200 answer (``{"pdus": {...}}``) as JSON text.
    response = models.TextField()
    edu_count = models.IntegerField(default=0)

    class Meta:
        db_table = "federation_received_txns"
        constraints = [
            models.UniqueConstraint(fields=["origin", "txn_id"], name="federation_received_txn_unique")
        ]


class InboundPdu(models.Model):
    """A received PDU that passed the inline checks, staged until a worker persists it.

    Processed in ``id`` order per room; the row is deleted once the event is stored (or
    refused, which is logged).
    """

    origin = models.CharField(max_length=255)
    room_id = models.CharField(max_length=255)
    event_id = models.CharField(max_length=255)
    #: The PDU as received (JSON text), checked again when processed.
    pdu = models.TextField()
    received_ts = models.BigIntegerField()
    lease_owner = models.CharField(max_length=64, default="")
    lease_expires_ts = models.BigIntegerField(default=0)
    attempts = models.IntegerField(default=0)

    class Meta:
        db_table = "federation_inbound_pdus"
        indexes = [models.Index(fields=["room_id", "id"], name="federation_inbound_room")]


class ServerSigningKey(models.Model):
    """One of *our* Ed25519 keys: the current one (``expired_ts`` null) and the old ones.

    Shared by every process (Tribune, Embassy, workers, Politburo) through the database, so a
    rotation reaches them all without a restart (``dagcore.server_keys`` re-reads this table
    every few seconds). The configured key file seeds the table on first use. Old keys stay
    published under ``old_verify_keys`` with their ``expired_ts`` (spec: server-server API
    "Publishing Keys"), so other servers can still check what we signed before.
    """

    key_id = models.CharField(max_length=255, unique=True)
    #: Unpadded Base64 of the public key.
    verify_key = models.CharField(max_length=64)
    #: Unpadded Base64 of the 32-byte seed; null for a key whose private half is lost (only its
    #: public half is published, synapse#11373) or that came from ``old_signing_keys``.
    seed = models.CharField(max_length=64, null=True)
    created_ts = models.BigIntegerField()
    #: Null while the key signs; afterwards the time after which nothing it signed is valid.
    expired_ts = models.BigIntegerField(null=True)
    #: Where the key came from: ``file`` (seeded), ``rotate``, ``import``, ``lost``, ``compromised``.
    origin = models.CharField(max_length=16)

    class Meta:
        db_table = "server_signing_keys"
