"""Settings for Celery workers and beat: no URLconf, no listeners."""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "dagma_project.urls_empty"
DAGMA_SERVER_ROLE = "worker"
