from __future__ import annotations

from typing import Any

import pytest

from dagcore.protocol.auth_rules import AuthError, check_event_auth
from dagcore.protocol.events import Event

from .builder import State


def rejection(event: Event, state: State) -> Any:
    """None when the event is allowed, else the AuthError's reason (typed Any for `in` checks)."""
    try:
        check_event_auth(event, state)
    except AuthError as exc:
        return exc.reason
    return None


@pytest.fixture
def reason_for():
    return rejection
