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
