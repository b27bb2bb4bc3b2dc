"""Politburo's console accounts state: browser sessions of server admins, their TOTP second
factor, and per-user rate-limit overrides (Synapse's ``override_ratelimit``).

Written only through ``dagcore.store.console``.
"""

from django.db import models

from dagcore.models.accounts import User


class ConsoleSession(models.Model):
    """One logged-in browser of a server admin.

    The cookie holds a random secret; only its SHA-256 digest is stored, so a database dump
    logs nobody in. ``password_stamp`` is a digest of the password hash at login: a password
    change anywhere (console, admin API, client API) ends every console session.
    """

    secret_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_ts = models.BigIntegerField()
    last_seen_ts = models.BigIntegerField()
    password_stamp = models.CharField(max_length=64)
    ip = models.CharField(max_length=64, default="")
    user_agent = models.CharField(max_length=512, default="")

    class Meta:
        db_table = "console_sessions"


class AdminTotp(models.Model):
    """A server admin's TOTP second factor (RFC 6238) for the console login.

    ``confirmed`` once a code from the authenticator app was entered; until then login does
    not ask for one. ``last_step`` is the last time step accepted: a code is never used twice.
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="+")
    secret = models.CharField(max_length=64)
    confirmed = models.BooleanField(default=False)
    created_ts = models.BigIntegerField()
    last_step = models.BigIntegerField(default=0)

    class Meta:
        db_table = "admin_totp"


class RatelimitOverride(models.Model):
    """Synapse's ``/_synapse/admin/v1/users/{userId}/override_ratelimit``: a user's own
    message rate limit (0/0 = not limited)."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="+")
    messages_per_second = models.IntegerField()
    burst_count = models.IntegerField()

    class Meta:
        db_table = "ratelimit_overrides"
