"""``manage.py dag inspect EVENT_ID``: a stored event, its DAG neighbours and state."""

from __future__ import annotations

import argparse
import json

import pytest
from django.conf import settings

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import send_local_event
from dagcore.cli import inspect

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

ALICE = f"@alice:{settings.SERVER_NAME}"


def _run(capsys: pytest.CaptureFixture[str], event_id: str, *extra: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    inspect.add_arguments(parser)
    code = inspect.run(parser.parse_args([event_id, *extra]))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_shows_prev_auth_state_and_extremity_status(capsys: pytest.CaptureFixture[str]) -> None:
    room_id, sent = create_room(RoomSpec(creator=ALICE, room_version="11", preset="private_chat"))
    msg = send_local_event(
        room_id=room_id, sender=ALICE, event_type="m.room.message", content={"msgtype": "m.text", "body": "x"}
    )
    code, out, err = _run(capsys, msg.event.event_id)
    assert code == 0, err
    report = json.loads(out)
    assert report["event_id"] == msg.event.event_id
    assert report["status"]["forward_extremity"] is True
    assert report["status"]["rejected_reason"] is None
    assert [p["event_id"] for p in report["prev_events"]] == list(msg.event.prev_event_ids)
    assert all(a.get("known", True) for a in report["auth_events"])
    assert ["m.room.member", ALICE] in [s[:2] for s in report["state_before"]]
    # an older event is no longer a forward extremity and has a child
    code, out, _ = _run(capsys, sent[-1].event.event_id, "--no-state")
    older = json.loads(out)
    assert older["status"]["forward_extremity"] is False
    assert msg.event.event_id in older["children"]
    assert "state_before" not in older


def test_inspect_of_an_unknown_event_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "$nope")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "$nope" in err
