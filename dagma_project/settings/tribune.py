"""Settings for the Tribune process: only its own URLconf is mounted."""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "tribune.urls"
DAGMA_SERVER_ROLE = "tribune"
