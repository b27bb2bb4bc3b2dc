"""GDPR erasure (Synapse's ``deactivate`` with ``erase``): an erased user's events stay readable
for the people who were in the room when they were sent, and reach everyone else pruned, as
redacted — through ``/messages``, ``/event``, ``/context`` and a later joiner's ``/sync``."""

from __future__ import annotations

from tests.politburo.conftest import Console
from tests.support.client import q


def test_an_erased_users_messages_are_pruned_for_those_who_join_later(console: Console) -> None:
    alice, carol, dave = console.register(), console.register(), console.register()
    try:
        room_id = alice.create_room(preset="public_chat", name="erasure")  # history: shared
        carol.join(room_id)
        said = alice.send(room_id, "my secret words")
        erased = console.api(
            "POST", f"/_synapse/admin/v1/deactivate/{q(str(alice.user_id))}", json={"erase": True}
        )
        assert erased.status_code == 200, erased.text
        dave.join(room_id)

        def body_for(client: object, via: str) -> object:
            assert hasattr(client, "get")
            if via == "event":
                return client.get(f"/rooms/{q(room_id)}/event/{q(said)}").json["content"]
            if via == "context":
                return client.get(f"/rooms/{q(room_id)}/context/{q(said)}").json["event"]["content"]
            chunk = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "50"}).json[
                "chunk"
            ]
            return next(e["content"] for e in chunk if e["event_id"] == said)

        for via in ("messages", "event", "context"):
            # Carol was there: she keeps what she saw. Dave joined after: pruned.
            assert body_for(carol, via) == {"msgtype": "m.text", "body": "my secret words"}, via
            assert body_for(dave, via) == {}, via
        timeline = dave.sync()["rooms"]["join"][room_id]["timeline"]["events"]
        assert [e["content"] for e in timeline if e["event_id"] == said] in ([{}], [])
        assert "my secret words" not in repr(timeline)
    finally:
        for client in (carol, dave):
            client.close()
