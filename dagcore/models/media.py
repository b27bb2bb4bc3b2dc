"""The content repository: local media, their thumbnails and cached URL previews.

Spec: client-server API "Content repository"
(https://spec.matrix.org/v1.19/client-server-api/#content-repository). The bytes
live on disk in a content-addressed store (``dagcore.media.filestore``, keyed by
SHA-256, so identical uploads share one file); these rows hold the metadata.
Times are integer milliseconds, as in the other tables.
"""

from django.db import models


class LocalMedia(models.Model):
    """One ``mxc://<our server>/<media_id>``.

    A row created by ``POST /_matrix/media/v1/create`` is *pending* (``sha256`` null)
    until its content arrives with ``PUT /_matrix/media/v3/upload/...``.
    """

    media_id = models.CharField(max_length=255, unique=True)
    #: User ID of the uploader (the only one allowed to complete a pending upload).
    uploader = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    #: The ``filename`` given at upload, repeated in ``Content-Disposition`` on download.
    upload_name = models.CharField(max_length=255, null=True)
    size = models.BigIntegerField(null=True)
    #: Hex SHA-256 of the bytes: the file's name in the store. Null while pending.
    sha256 = models.CharField(max_length=64, null=True)
    created_ts = models.BigIntegerField()
    uploaded_ts = models.BigIntegerField(null=True)
    #: Deadline of a pending upload (spec: ``unused_expires_at``); null once uploaded.
    unused_expires_ts = models.BigIntegerField(null=True)
    #: Last download/thumbnail (coarse: refreshed at most every few minutes); drives media_retention.
    last_access_ts = models.BigIntegerField()
    #: Uploaded while authenticated media was enforced: not served by the legacy
    #: unauthenticated ``/_matrix/media/v3`` download/thumbnail endpoints (spec v1.11 "freeze").
    authenticated = models.BooleanField(default=True)
    #: Quarantined media is never served (admins: Politburo).
    quarantined = models.BooleanField(default=False)
    quarantined_by = models.CharField(max_length=255, null=True)
    #: Protected by an admin (Synapse's ``safe_from_quarantine``): never quarantined in bulk
    #: (a room's or a user's media) and never deleted by a date/size purge or retention.
    safe_from_quarantine = models.BooleanField(default=False)
    #: Pixel size of images (probed at upload), for URL previews' og:image:width/height.
    width = models.IntegerField(null=True)
    height = models.IntegerField(null=True)

    class Meta:
        db_table = "local_media"
        indexes = [
            models.Index(fields=["sha256"], name="local_media_sha256"),
            models.Index(fields=["uploader", "unused_expires_ts"], name="local_media_pending"),
            models.Index(fields=["last_access_ts"], name="local_media_last_access"),
        ]


class MediaThumbnail(models.Model):
    """A thumbnail of a local image, for one requested size and method."""

    media = models.ForeignKey(LocalMedia, on_delete=models.CASCADE, related_name="thumbnails")
    #: The bounds asked for (``width``/``height`` query parameters after clamping).
    target_width = models.IntegerField()
    target_height = models.IntegerField()
    method = models.CharField(max_length=8)  # "scale" or "crop"
    animated = models.BooleanField(default=False)
    #: The thumbnail's own pixel size and bytes.
    width = models.IntegerField()
    height = models.IntegerField()
    content_type = models.CharField(max_length=32)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_ts = models.BigIntegerField()

    class Meta:
        db_table = "media_thumbnails"
        constraints = [
            models.UniqueConstraint(
                fields=["media", "target_width", "target_height", "method", "animated"],
                name="media_thumbnail_unique",
            )
        ]
        indexes = [models.Index(fields=["sha256"], name="media_thumbnails_sha256")]


class UrlPreview(models.Model):
    """A cached ``/preview_url`` answer (OpenGraph dict), shared by all users for a while."""

    #: Hex SHA-256 of the URL (URLs may be longer than an index allows).
    url_hash = models.CharField(max_length=64)
    url = models.TextField()
    og = models.JSONField()
    created_ts = models.BigIntegerField()
    expires_ts = models.BigIntegerField()

    class Meta:
        db_table = "url_previews"
        indexes = [models.Index(fields=["url_hash", "expires_ts"], name="url_previews_lookup")]


class RemoteMedia(models.Model):
    """A cached copy of another server's ``mxc://<server_name>/<media_id>``.

    Fetched over federation (``GET /_matrix/federation/v1/media/download/{mediaId}``) the
    first time one of our users asks for it; the bytes join the same content-addressed
    store as local media. Purged when not read within ``media_retention.remote_media_lifetime``.
    """

    server_name = models.CharField(max_length=255)
    media_id = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    upload_name = models.CharField(max_length=255, null=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    #: When we fetched it.
    created_ts = models.BigIntegerField()
    #: Last download/thumbnail by one of our users (coarse, as ``LocalMedia``); drives retention.
    last_access_ts = models.BigIntegerField()
    quarantined = models.BooleanField(default=False)
    quarantined_by = models.CharField(max_length=255, null=True)

    class Meta:
        db_table = "remote_media_cache"
        constraints = [
            models.UniqueConstraint(fields=["server_name", "media_id"], name="remote_media_unique"),
        ]
        indexes = [
            models.Index(fields=["sha256"], name="remote_media_sha256"),
            models.Index(fields=["last_access_ts"], name="remote_media_last_access"),
        ]


class RemoteMediaThumbnail(models.Model):
    """A thumbnail we rendered from a cached remote original (same columns as ``MediaThumbnail``)."""

    media = models.ForeignKey(RemoteMedia, on_delete=models.CASCADE, related_name="thumbnails")
    target_width = models.IntegerField()
    target_height = models.IntegerField()
    method = models.CharField(max_length=8)
    animated = models.BooleanField(default=False)
    width = models.IntegerField()
    height = models.IntegerField()
    content_type = models.CharField(max_length=32)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_ts = models.BigIntegerField()

    class Meta:
        db_table = "remote_media_thumbnails"
        constraints = [
            models.UniqueConstraint(
                fields=["media", "target_width", "target_height", "method", "animated"],
                name="remote_media_thumbnail_unique",
            )
        ]
        indexes = [models.Index(fields=["sha256"], name="remote_media_thumbnails_sha256")]
