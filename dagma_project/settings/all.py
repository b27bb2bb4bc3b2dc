"""Settings for the quick-start process (Tribune + Embassy) and for management commands."""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "dagma_project.urls_all"
DAGMA_SERVER_ROLE = "all"
