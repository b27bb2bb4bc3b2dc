"""Queries of the admin API over accounts."""

from __future__ import annotations

from django.db.models import Q

from dagcore.models import User


def list_users(
    *, offset: int, limit: int, guests: bool, deactivated: bool, admins: bool | None, name: str | None
) -> tuple[list[User], int]:
    """A page of accounts ordered by user ID, and how many match in all (two queries)."""
    qs = User.objects.all()
    if not guests:
        qs = qs.filter(is_guest=False)
    if not deactivated:
        qs = qs.filter(deactivated=False)
    if admins is not None:
        qs = qs.filter(is_admin=admins)
    if name:
        qs = qs.filter(Q(user_id__icontains=name) | Q(displayname__icontains=name))
    return list(qs.order_by("user_id")[offset : offset + limit]), qs.count()
