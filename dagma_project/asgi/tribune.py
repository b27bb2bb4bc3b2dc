"""ASGI entry for Tribune alone: `daphne dagma_project.asgi.tribune:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.tribune")

import django

django.setup()

from dagma_project.asgi.common import django_app

application = django_app()
