"""Settings shared by every Dagma process.

Defaults live in code; the operator's ``dagma.yaml`` (see ``dagma_project.config``)
is read once here and mapped onto Django settings. Each server has its own module
(tribune, embassy, politburo, worker, all, test) that only picks its URLconf.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from dagma_project.config import DagmaConfig, load_config
from dagma_project.logging import formatter_settings

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DAGMA: DagmaConfig = load_config()

SECRET_KEY = DAGMA.form_secret or "dagma-insecure-default-" + DAGMA.server_name
DEBUG = False
ALLOWED_HOSTS = ["*"]  # the reverse proxy and server_name decide; Matrix clients use arbitrary hosts
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APPEND_SLASH = False  # Matrix paths are exact; /pushrules/ and /pushrules differ
DATA_UPLOAD_MAX_MEMORY_SIZE = None  # per-endpoint limits are enforced by our views
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024

INSTALLED_APPS = [
    "dagcore",
    "channels",
]

MIDDLEWARE: list[str] = [
    # First: it sees every request Django answers, preflights included (route for the metrics).
    "dagma_project.middleware.RouteMiddleware",
    "dagma_project.middleware.CorsMiddleware",
    "dagma_project.middleware.ListenerUrlconfMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": []},
    }
]


def _databases(config: DagmaConfig) -> dict[str, Any]:
    db = config.database
    if db["name"] == "sqlite3":
        path = config.resolve_path(db["args"]["database"])
        return {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(path),
                "OPTIONS": {
                    # IMMEDIATE: writers take the lock at BEGIN, so two writers never
                    # deadlock upgrading read locks; WAL lets /sync read while we write.
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
                "TEST": {"NAME": str(path.with_suffix(".test.db"))},
            }
        }
    args = db["args"]
    return {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": args.get("database") or args.get("dbname") or "dagma",
            "USER": args.get("user", ""),
            "PASSWORD": args.get("password", ""),
            "HOST": args.get("host", ""),
            "PORT": str(args.get("port", "")),
            "OPTIONS": {
                # Parameters bound by the server, and statements a connection has run twice
                # prepared there: the hot paths run the same few statements on every request,
                # and PostgreSQL spent more CPU planning them than running them (the token
                # owner's join: 1.4 ms to plan, 0.1 ms to run). Measured in issue #12: the
                # database's CPU in the sustained fan-out fell from 2.4 s to 0.9 s.
                # ``prepared_statements: false`` for a pooler that cannot keep them (PgBouncer
                # in transaction mode before 1.21).
                "server_side_binding": True,
                "prepare_threshold": 2 if args.get("prepared_statements", True) else None,
                "pool": {
                    "min_size": int(args.get("cp_min", 2)),
                    "max_size": int(args.get("cp_max", 20)),
                    "timeout": 30,
                },
                **({"sslmode": args["sslmode"]} if "sslmode" in args else {}),
            },
        }
    }


DATABASES = _databases(DAGMA)

REDIS_URL = DAGMA.redis_url
# Processes sharing one database are one homeserver: they share this prefix for
# Redis keys and channels, and two homeservers on one Redis never see each other's.
_db_identity = repr(sorted((k, str(v)) for k, v in DATABASES["default"].items()))
REDIS_KEY_PREFIX = "dagma-" + hashlib.sha256(_db_identity.encode()).hexdigest()[:12]

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_KEY_PREFIX},
        }
    }
    CELERY_BROKER_URL: str | None = REDIS_URL
    # The same for task queues: a worker takes only its own homeserver's tasks.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX + ":"}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = None  # tasks run in-process (dagcore.taskqueue.runner)

CELERY_TASK_ROUTES = {
    "embassy.*": {"queue": "federation"},
    "dagcore.tasks.media.*": {"queue": "media"},
    "dagcore.tasks.push.*": {"queue": "push"},
    "dagcore.tasks.*": {"queue": "maintenance"},
    "politburo.*": {"queue": "maintenance"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None

SERVER_NAME = DAGMA.server_name
#: Behind a reverse proxy (a listener with x_forwarded: true), the client address
#: comes from X-Forwarded-For; otherwise that header is ignored (it is spoofable).
DAGMA_TRUST_X_FORWARDED_FOR = any(listener["x_forwarded"] for listener in DAGMA.listeners)
MEDIA_STORE_PATH = DAGMA.resolve_path(DAGMA.media_store_path)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # log_format: json (default) or text; under journald each line carries its priority.
    "formatters": {"dagma": formatter_settings(DAGMA.log_format)},
    "handlers": {
        "stdout": {
            "class": "dagma_project.logging.BufferedStreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "dagma",
        }
    },
    "root": {"handlers": ["stdout"], "level": os.environ.get("DAGMA_LOG_LEVEL", DAGMA.log_level)},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}
