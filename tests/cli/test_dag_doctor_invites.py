"""``dag check`` / ``dag repair`` and out-of-band memberships: an invite of our user to a room
we are not in comes without the room's DAG (spec: ``PUT /_matrix/federation/v2/invite``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from dagcore.cli import check, repair
from dagcore.store import rooms as room_store
from tests.actions.roomkit import make_user
from tests.federation.test_resident_membership import Remote, _invite_body, remote  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db]


def _run(module: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code = module.run(parser.parse_args(list(argv)))
    return code, capsys.readouterr().out


def test_an_out_of_band_invite_checks_clean_and_a_repair_keeps_it(capsys, remote: Remote) -> None:  # noqa: F811
    """Its auth events are not held (no loss) and its membership row has no member event in
    current state (no disagreement); a repair leaves the row alone."""
    user = make_user()
    room_id, event_id, body = _invite_body(remote, "10", user.user_id)
    status, answer = remote.call("PUT", f"/_matrix/federation/v2/invite/{room_id}/{event_id}", body)
    assert status == 200, answer
    code, out = _run(check, capsys, room_id, "--json")
    assert code == 0, out
    assert json.loads(out)["status"] == "ok"
    code, out = _run(repair, capsys, room_id)
    assert code == 0 and "nothing to change" in out
    _run(repair, capsys, room_id, "--apply")
    room = room_store.get_room(room_id)
    assert room is not None
    member = room_store.get_membership(room, user.user_id)
    assert member is not None and member.membership == "invite"
