"""Stream positions (DESIGN.md §5): one counter row per stream.

Writers bump the counter as the *last* statement of their transaction
(``UPDATE ... SET position = position + 1``). The row lock is held until commit,
so positions commit in order: once position N is visible, every row with a
position <= N is visible too. That is what makes "everything after token X"
queries safe with several writer processes.
"""

from django.db import models


class StreamCounter(models.Model):
    name = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0)

    class Meta:
        db_table = "stream_counters"
