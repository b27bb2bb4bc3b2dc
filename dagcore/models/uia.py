"""User-interactive authentication sessions and registration tokens.

Spec: client-server API "User-Interactive Authentication API"
(https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api)
and "Token-authenticated registration"
(https://spec.matrix.org/v1.19/client-server-api/#token-authenticated-registration).
Sessions live in the database, not in a process, because the stages of one
session may reach different Tribune processes.
"""

from django.db import models


class UiaSession(models.Model):
    session_id = models.CharField(max_length=64, unique=True)
    #: The request the session was started for ("POST /_matrix/client/v3/register");
    #: a session cannot be used to authorise a different operation.
    operation = models.CharField(max_length=512)
    #: The authenticated user who started it (None for /register).
    user_id = models.CharField(max_length=255, null=True)
    #: Digest of the request parameters that must not change between stages
    #: (e.g. the devices to delete), or "" when the operation binds none.
    binding = models.CharField(max_length=64, default="")
    #: Stage types completed so far, in order (a JSON list of strings).
    completed = models.JSONField(default=list)
    #: What completed stages established, e.g. the registration token reserved.
    data = models.JSONField(default=dict)
    created_ts = models.BigIntegerField()
    expires_ts = models.BigIntegerField()

    class Meta:
        db_table = "uia_sessions"
        indexes = [models.Index(fields=["expires_ts"], name="uia_sessions_expiry")]


class RegistrationToken(models.Model):
    """A token that allows registration when ``registration_requires_token`` is set.

    ``pending`` counts sessions that passed the token stage but have not finished
    registering yet; they hold a use, so ``pending + completed`` never exceeds
    ``uses_allowed``.
    """

    token = models.CharField(max_length=64, unique=True)
    #: None: unlimited.
    uses_allowed = models.IntegerField(null=True)
    pending = models.IntegerField(default=0)
    completed = models.IntegerField(default=0)
    #: Expiry in ms since the epoch; None: never expires.
    expiry_time = models.BigIntegerField(null=True)

    class Meta:
        db_table = "registration_tokens"
