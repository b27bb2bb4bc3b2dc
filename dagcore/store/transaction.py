"""Transaction boundaries for code outside the store layer.

Only the store touches the database, but an action decides where its change begins
and ends (``atomic``) and what may run once it is committed (``on_commit``): those
are re-exported here, with the two database errors an action may have to answer
(a unique row written concurrently, a value the database refuses), and a way to hand
a connection back before a long wait.
"""

from __future__ import annotations

from django.db import DataError, IntegrityError, close_old_connections, connection, connections
from django.db.transaction import atomic, on_commit

__all__ = [
    "DataError",
    "IntegrityError",
    "atomic",
    "close_old_connections",
    "on_commit",
    "release_all_connections",
    "release_connection",
]


def release_connection() -> None:
    """Give this thread's connection back (to the pool): a long-poll must not hold one while it waits."""
    connection.close()


def release_all_connections() -> None:
    connections.close_all()


#: Connections a forked child inherited: kept referenced, never closed or collected there —
#: closing (or a finaliser) would send the server a Terminate and end the *parent's* session.
_INHERITED: list[object] = []


def forget_inherited_connections() -> None:
    """In a process forked from one that had used the database (Celery's embedded beat, ``-B``):
    drop the parent's connections and pool so this process opens its own."""
    wrappers = list(connections.all(initialized_only=True))
    for wrapper in wrappers:
        if wrapper.connection is not None:
            _INHERITED.append(wrapper.connection)
            wrapper.connection = None
    for cls in {type(w) for w in wrappers}:
        pools = getattr(cls, "_connection_pools", None)
        if pools:
            _INHERITED.extend(pools.values())
            pools.clear()
