from django.apps import AppConfig


class DagcoreConfig(AppConfig):
    name = "dagcore"
    label = "dagcore"
    verbose_name = "Dagma core storage"
    default_auto_field = "django.db.models.BigAutoField"
