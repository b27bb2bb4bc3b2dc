"""Settings for the Embassy process: only its own URLconf is mounted."""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "embassy.urls"
DAGMA_SERVER_ROLE = "embassy"
