"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1."""

from django.urls import re_path

from politburo.api import media, register, users
from politburo.console import pages

urlpatterns = [
    re_path(r"^$", pages.dashboard),
    re_path(r"^health$", pages.health),
    re_path(r"^_synapse/admin/v1/register$", register.register),
    re_path(r"^_synapse/admin/v1/server_version$", users.server_version),
    re_path(r"^_synapse/admin/v2/users$", users.users),
    re_path(r"^_synapse/admin/v2/users/(?P<user_id>[^/]+)$", users.user),
    re_path(r"^_synapse/admin/v1/reset_password/(?P<user_id>[^/]+)$", users.reset_password),
    re_path(r"^_synapse/admin/v1/deactivate/(?P<user_id>[^/]+)$", users.deactivate),
    # --- media administration (helper mediakeys): Synapse's media admin API ---
    re_path(r"^_synapse/admin/v1/media/delete$", media.delete_before),
    re_path(r"^_synapse/admin/v1/media/quarantine/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$", media.quarantine),
    re_path(r"^_synapse/admin/v1/media/unquarantine/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$", media.unquarantine),
    re_path(r"^_synapse/admin/v1/media/protect/(?P<media_id>[^/]+)$", media.protect),
    re_path(r"^_synapse/admin/v1/media/unprotect/(?P<media_id>[^/]+)$", media.unprotect),
    re_path(r"^_synapse/admin/v1/media/(?P<server_name>[^/]+)/delete$", media.delete_before),
    re_path(r"^_synapse/admin/v1/media/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)$", media.media),
    re_path(r"^_synapse/admin/v1/purge_media_cache$", media.purge_media_cache),
    re_path(r"^_synapse/admin/v1/room/(?P<room_id>[^/]+)/media/quarantine$", media.quarantine_room),
    re_path(r"^_synapse/admin/v1/quarantine_media/(?P<room_id>[^/]+)$", media.quarantine_room),
    re_path(r"^_synapse/admin/v1/user/(?P<user_id>[^/]+)/media/quarantine$", media.quarantine_user),
    re_path(r"^_synapse/admin/v1/statistics/users/media$", media.usage),
    re_path(r"^_synapse/admin/v1/users/(?P<user_id>[^/]+)/media$", media.user_media),
    # --- end media administration ---
]
