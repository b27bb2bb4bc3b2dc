"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1."""

from django.urls import re_path

from politburo.api import federation, register, users
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
    # -- Federation (issue 13: destinations API; the console's Federation page) --
    re_path(r"^_synapse/admin/v1/federation/destinations$", federation.destinations),
    re_path(r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)$", federation.destination),
    re_path(
        r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)/rooms$",
        federation.destination_rooms,
    ),
    re_path(
        r"^_synapse/admin/v1/federation/destinations/(?P<destination>[^/]+)/reset_connection$",
        federation.reset_connection,
    ),
]
