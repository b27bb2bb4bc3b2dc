"""A real client library (matrix-nio) stays in sync with Dagma: invites, joins, messages,
typing notices and read receipts arrive through ``/sync`` as nio expects them."""

from __future__ import annotations

import asyncio
import secrets

import nio

PASSWORD = "correct horse battery"


def _client(base_url: str) -> nio.AsyncClient:
    config = nio.AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    return nio.AsyncClient(base_url, "", config=config)


async def _sync_until(client: nio.AsyncClient, predicate, rounds: int = 10) -> nio.SyncResponse:
    for _ in range(rounds):
        response = await client.sync(timeout=3000)
        assert isinstance(response, nio.SyncResponse), response
        if predicate(response):
            return response
    raise AssertionError("the expected change never arrived through /sync")


async def _journey(base_url: str) -> None:
    alice, bob = _client(base_url), _client(base_url)
    try:
        for client, name in ((alice, "nioa"), (bob, "niob")):
            registered = await client.register(f"{name}{secrets.token_hex(4)}", PASSWORD, device_name=name)
            assert isinstance(registered, nio.RegisterResponse), registered
        assert isinstance(await alice.sync(timeout=0), nio.SyncResponse)
        assert isinstance(await bob.sync(timeout=0, full_state=True), nio.SyncResponse)

        created = await alice.room_create(name="nio sync room", invite=[bob.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id

        # Bob sees the invite (stripped state carries the room name), joins, and sees the room.
        await _sync_until(bob, lambda r: room_id in r.rooms.invite)
        assert bob.invited_rooms[room_id].name == "nio sync room"
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        await _sync_until(bob, lambda r: room_id in r.rooms.join)
        assert bob.rooms[room_id].display_name == "nio sync room"
        await _sync_until(
            alice, lambda r: room_id in r.rooms.join and bob.user_id in alice.rooms[room_id].users
        )

        # A message sent by one arrives at the other, as a RoomMessageText.
        received: list[nio.RoomMessageText] = []
        bob.add_event_callback(lambda room, event: received.append(event), nio.RoomMessageText)
        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"}
        )
        assert isinstance(sent, nio.RoomSendResponse), sent
        await _sync_until(bob, lambda r: any(e.body == "hello from nio" for e in received))
        message = next(e for e in received if e.body == "hello from nio")
        assert message.sender == alice.user_id and message.event_id == sent.event_id

        # Typing: nio keeps the room's typing users from the ephemeral events.
        typing = await alice.room_typing(room_id, typing_state=True, timeout=30000)
        assert isinstance(typing, nio.RoomTypingResponse), typing
        await _sync_until(bob, lambda r: bob.rooms[room_id].typing_users == [alice.user_id])
        await alice.room_typing(room_id, typing_state=False)
        await _sync_until(bob, lambda r: bob.rooms[room_id].typing_users == [])

        # Read receipts: bob reads the message, alice sees the receipt.
        receipts: list[nio.Receipt] = []
        alice.add_ephemeral_callback(
            lambda room, event: receipts.extend(event.receipts),
            nio.ReceiptEvent,
        )
        marked = await bob.update_receipt_marker(room_id, sent.event_id)
        assert isinstance(marked, nio.UpdateReceiptMarkerResponse), marked
        await _sync_until(alice, lambda r: any(x.user_id == bob.user_id for x in receipts))
        receipt = next(x for x in receipts if x.user_id == bob.user_id)
        assert receipt.event_id == sent.event_id and receipt.receipt_type == "m.read"

        # Read markers: fully read moves bob's room account data.
        markers = await bob.room_read_markers(
            room_id, fully_read_event=sent.event_id, read_event=sent.event_id
        )
        assert isinstance(markers, nio.RoomReadMarkersResponse), markers
        await _sync_until(
            bob,
            lambda r: (
                room_id in r.rooms.join
                and any(
                    isinstance(e, nio.FullyReadEvent) and e.event_id == sent.event_id
                    for e in r.rooms.join[room_id].account_data
                )
            ),
        )
    finally:
        await alice.close()
        await bob.close()


def test_two_nio_clients_stay_in_sync_messages_typing_and_receipts(dagma_server) -> None:
    asyncio.run(_journey(dagma_server.base_url))
