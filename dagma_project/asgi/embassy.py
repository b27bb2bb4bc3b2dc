"""ASGI entry for Embassy alone: `daphne dagma_project.asgi.embassy:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.embassy")

import django

django.setup()

from dagma_project.asgi.common import django_app

application = django_app()
