"""Settings for the Politburo process: only its own URLconf is mounted."""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "politburo.urls"
DAGMA_SERVER_ROLE = "politburo"
