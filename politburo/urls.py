"""Politburo's URLconf: the admin console and admin API. Only ever served on 127.0.0.1."""

from django.urls import re_path

from politburo.api import register
from politburo.console import pages

urlpatterns = [
    re_path(r"^$", pages.dashboard),
    re_path(r"^health$", pages.health),
    re_path(r"^_synapse/admin/v1/register$", register.register),
]
