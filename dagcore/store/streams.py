"""Stream positions (see ``dagcore.models.streams`` for why this is safe across processes)."""

from __future__ import annotations

from django.db import connection

from dagcore.models import StreamCounter

#: Every stream a sync token carries a position for (DESIGN.md §5).
STREAMS = ("events", "to_device", "account_data", "receipts", "typing", "device_lists", "presence")


def advance_stream(name: str, by: int = 1) -> int:
    """Reserve the next ``by`` positions of stream ``name``; returns the last one.

    Call it as late as possible in the transaction: the counter row stays locked
    until commit, which is what orders commits by position.
    """
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE stream_counters SET position = position + %s WHERE name = %s RETURNING position",
            [by, name],
        )
        row = cur.fetchone()
        if row is None:
            StreamCounter.objects.get_or_create(name=name, defaults={"position": 0})
            cur.execute(
                "UPDATE stream_counters SET position = position + %s WHERE name = %s RETURNING position",
                [by, name],
            )
            row = cur.fetchone()
    assert row is not None
    return int(row[0])


def get_stream_position(name: str) -> int:
    value = StreamCounter.objects.filter(name=name).values_list("position", flat=True).first()
    return int(value or 0)


def get_stream_positions() -> dict[str, int]:
    positions = dict.fromkeys(STREAMS, 0)
    positions.update({n: int(p) for n, p in StreamCounter.objects.values_list("name", "position")})
    return positions
