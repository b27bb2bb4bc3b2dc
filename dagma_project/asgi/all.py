"""ASGI entry for the quick start: Tribune + Embassy in one process."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.all")

import django

django.setup()

from dagma_project.asgi.common import django_app

application = django_app()
