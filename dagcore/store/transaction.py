"""Transaction boundaries for code outside the store layer.

Only the store touches the database, but an action decides where its change begins
and ends (``atomic``) and what may run once it is committed (``on_commit``): those
are re-exported here, with the two database errors an action may have to answer
(a unique row written concurrently, a value the database refuses).
"""

from __future__ import annotations

from django.db import DataError, IntegrityError, close_old_connections
from django.db.transaction import atomic, on_commit

__all__ = ["DataError", "IntegrityError", "atomic", "close_old_connections", "on_commit"]
