"""Raw SQL helpers of the store modules: parameter lists, reads, pipelined reads.

Hot paths (every send, sync and pagination) skip the ORM's query compilation, which
costs more than the query itself for small lookups; these are the pieces they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

from dagcore.store.dialect import is_postgres


def in_list(column: str, values: Sequence[Any], params: list[Any]) -> str:
    """SQL for ``column IN values``, appending the parameters to ``params`` (in text order).

    PostgreSQL gets one array parameter (``= ANY``), so the statement text does not
    depend on the number of values; SQLite gets one placeholder per value.
    """
    if is_postgres():
        params.append(list(values))
        return f"{column} = ANY(%s)"
    params.extend(values)
    return f"{column} IN ({', '.join(['%s'] * len(values))})"


def fetch_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows


def fetch_many(*queries: tuple[str, Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
    """The rows of several independent reads, in one round trip on PostgreSQL (pipeline mode).

    Each statement still runs on its own, in order (outside a transaction, each sees what
    was committed when it starts). SQLite runs them one by one.
    """
    if not is_postgres() or len(queries) < 2:
        return [fetch_rows(sql, params) for sql, params in queries]
    connection.ensure_connection()
    cursors = []
    try:
        with connection.connection.pipeline():
            for sql, params in queries:
                cur = connection.cursor()
                cursors.append(cur)
                cur.execute(sql, params)
            return [cur.fetchall() for cur in cursors]
    finally:
        for cur in cursors:
            cur.close()
