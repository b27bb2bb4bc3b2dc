import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("dagcore", "0002_stream_counters"),
    ]

    operations = [
        migrations.CreateModel(
            name="ClientTxn",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("user_id", models.CharField(max_length=255)),
                ("device_key", models.CharField(max_length=255)),
                ("scope", models.CharField(max_length=600)),
                ("txn_id", models.CharField(max_length=255)),
                ("event_id", models.CharField(max_length=255)),
                ("created_ts", models.BigIntegerField()),
            ],
            options={
                "db_table": "client_txns",
                "indexes": [
                    models.Index(fields=["event_id"], name="client_txns_event"),
                    models.Index(fields=["created_ts"], name="client_txns_ts"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user_id", "device_key", "scope", "txn_id"), name="client_txn_unique"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ContentReport",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("room_id", models.CharField(max_length=255, null=True)),
                ("event_id", models.CharField(max_length=255, null=True)),
                ("reported_user_id", models.CharField(max_length=255, null=True)),
                ("reporter", models.CharField(max_length=255)),
                ("reason", models.TextField(null=True)),
                ("score", models.IntegerField(null=True)),
                ("received_ts", models.BigIntegerField()),
                ("resolved_ts", models.BigIntegerField(null=True)),
            ],
            options={
                "db_table": "content_reports",
                "indexes": [models.Index(fields=["received_ts"], name="content_reports_ts")],
            },
        ),
        migrations.CreateModel(
            name="RoomAlias",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("alias", models.CharField(max_length=255, unique=True)),
                ("room_id", models.CharField(max_length=255)),
                ("creator", models.CharField(max_length=255)),
                ("created_ts", models.BigIntegerField()),
            ],
            options={
                "db_table": "room_aliases",
                "indexes": [models.Index(fields=["room_id"], name="room_aliases_room")],
            },
        ),
        migrations.CreateModel(
            name="ForgottenRoom",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("user_id", models.CharField(max_length=255)),
                ("membership_stream", models.BigIntegerField()),
                (
                    "room",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="dagcore.room"
                    ),
                ),
            ],
            options={
                "db_table": "forgotten_rooms",
                "indexes": [models.Index(fields=["user_id"], name="forgotten_rooms_user")],
                "constraints": [
                    models.UniqueConstraint(fields=("room", "user_id"), name="forgotten_room_unique")
                ],
            },
        ),
    ]
