from django.apps import AppConfig


class DagcoreConfig(AppConfig):
    name = "dagcore"
    label = "dagcore"
    verbose_name = "Dagma core storage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The subscribers of the event pipeline's after-commit seam that every process
        # which persists events needs, whatever it serves (DESIGN.md §3 step 5). Imported
        # here, not at module level: app modules load before the models they use exist.
        from dagcore import events_persisted, notifier
        from dagcore.actions import pushers
        from dagcore.federation import outbox

        events_persisted.subscribe("sync", notifier.on_events_persisted)
        events_persisted.subscribe("push", pushers.on_events_persisted)
        # The outbox rows are written with the event; the nudge only hurries the sender.
        events_persisted.record_with("federation_outbox", outbox.record_outbox)
        events_persisted.subscribe("federation_sender", outbox.nudge_senders)
