"""ASGI entry for Politburo alone: `daphne dagma_project.asgi.politburo:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.politburo")

import django

django.setup()

from dagma_project.asgi.common import django_app

application = django_app()
