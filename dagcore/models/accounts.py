"""Local accounts, devices and tokens. Secrets at rest are hashed: passwords with
argon2, access and refresh tokens as SHA-256 digests (a token is never stored)."""

from django.db import models


class User(models.Model):
    user_id = models.CharField(max_length=255, unique=True)
    localpart = models.CharField(max_length=255, unique=True)
    password_hash = models.TextField(null=True)
    is_admin = models.BooleanField(default=False)
    is_guest = models.BooleanField(default=False)
    deactivated = models.BooleanField(default=False)
    created_ts = models.BigIntegerField()
    #: Profile of a local user (spec: client-server "Profiles").
    displayname = models.CharField(max_length=256, null=True)
    avatar_url = models.CharField(max_length=512, null=True)
    #: Operator restrictions (Synapse's admin API): a suspended account may read but not send
    #: (``M_USER_SUSPENDED``); a locked one cannot use its tokens (401 ``M_USER_LOCKED``); a
    #: shadow-banned one's sends succeed but nobody else sees them.
    suspended = models.BooleanField(default=False)
    locked = models.BooleanField(default=False)
    shadow_banned = models.BooleanField(default=False)
    #: Deactivated with ``erase``: its messages are hidden from users joining later (GDPR).
    erased = models.BooleanField(default=False)

    class Meta:
        db_table = "users"


class Device(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    device_id = models.CharField(max_length=255)
    display_name = models.CharField(max_length=512, null=True)
    created_ts = models.BigIntegerField()
    last_seen_ts = models.BigIntegerField(null=True)
    last_seen_ip = models.CharField(max_length=64, null=True)
    last_seen_user_agent = models.CharField(max_length=512, null=True)

    class Meta:
        db_table = "devices"
        constraints = [models.UniqueConstraint(fields=["user", "device_id"], name="device_unique")]


class RefreshToken(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="refresh_tokens")
    created_ts = models.BigIntegerField()
    #: Set once the token has been exchanged; reuse of a used token is refused.
    used_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "refresh_tokens"


class AccessToken(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="access_tokens")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="access_tokens", null=True)
    created_ts = models.BigIntegerField()
    #: Expiry (ms) when access tokens have a lifetime (refresh tokens in use).
    valid_until_ms = models.BigIntegerField(null=True)
    refresh_token = models.ForeignKey(RefreshToken, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        db_table = "access_tokens"


class LoginToken(models.Model):
    """A short-lived, single-use token for ``m.login.token`` (spec: ``POST /login/get_token``).

    Stored as a SHA-256 digest like every other token.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_ts = models.BigIntegerField()
    expires_ts = models.BigIntegerField()
    used_ts = models.BigIntegerField(null=True)

    class Meta:
        db_table = "login_tokens"
