"""Politburo's URLconf: the admin console. Only ever served on 127.0.0.1."""

from django.urls import re_path

from politburo.console import pages

urlpatterns = [
    re_path(r"^$", pages.dashboard),
    re_path(r"^health$", pages.health),
]
