# A device-list change may be for one viewer only: a user who signed another user's master
# key (their devices re-query that user; spec "Cross-signing": user-signing signatures are
# visible only to their signer).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dagcore", "0008_ephemeral_federation"),
    ]

    operations = [
        migrations.AddField(
            model_name="devicelistchange",
            name="visible_to",
            field=models.CharField(default="", max_length=255),
        ),
    ]
