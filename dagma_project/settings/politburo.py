"""Settings for the Politburo process: only its own URLconf is mounted.

Its middleware is its own (``politburo.middleware``: Host check against DNS rebinding, security
headers, idle shutdown), and it alone configures Django REST framework, which only its admin
JSON API uses (Tribune and Embassy never load it).
"""

from dagma_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "politburo.urls"
DAGMA_SERVER_ROLE = "politburo"

MIDDLEWARE = [
    "politburo.middleware.PolitburoMiddleware",
    "dagma_project.middleware.ListenerUrlconfMiddleware",
]

# The admin API's views set their own classes (politburo.api.base); these only keep DRF from
# reaching for django.contrib.auth, which this project does not install.
REST_FRAMEWORK = {
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "EXCEPTION_HANDLER": "politburo.api.base.exception_handler",
}

# The console's template filters (politburo.console.filters) need no {% load %}.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],  # noqa: F405
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": [], "builtins": ["politburo.console.filters"]},
    }
]
