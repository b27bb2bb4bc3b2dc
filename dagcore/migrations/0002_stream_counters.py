"""Create one counter row per stream, so writers only ever UPDATE them (see models.streams)."""

from django.db import migrations

STREAMS = ("events", "to_device", "account_data", "receipts", "typing", "device_lists", "presence")


def create_counters(apps, schema_editor):
    StreamCounter = apps.get_model("dagcore", "StreamCounter")
    for name in STREAMS:
        StreamCounter.objects.get_or_create(name=name, defaults={"position": 0})


class Migration(migrations.Migration):
    dependencies = [("dagcore", "0001_initial")]
    operations = [migrations.RunPython(create_counters, migrations.RunPython.noop)]
