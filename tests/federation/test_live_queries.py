"""Two Dagma processes over TLS answering each other's queries: remote media (authenticated
federation media, multipart), profiles, the public room directory and space hierarchies.

Each user only talks to their own server's client API; everything about the other
server's users, media and rooms comes over federation.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

V1 = "/_matrix/client/v1/media"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedq")
    ca = TestCA(root / "ca")
    made: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(
                root / name,
                federation_tls=(cert.cert_path, cert.key_path),
                redis=False,
                config={
                    "federation_custom_ca_list": [str(ca.cert_path)],
                    "ip_range_whitelist": LOOPBACK,
                    "allow_public_rooms_over_federation": True,
                },
            )
            made.append(server)
            server.start()
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (secrets.randbelow(256), 120, 30)).save(out, format="PNG")
    return out.getvalue()


def test_an_avatar_uploaded_on_a_downloads_byte_identical_through_b(pair) -> None:
    a, b = pair
    tag = secrets.token_hex(3)
    alice = MatrixClient(a.base_url).register(f"alice{tag}")
    bob = MatrixClient(b.base_url).register(f"bob{tag}")
    try:
        avatar = _png(300, 200)
        uri = alice.post(
            "/_matrix/media/v3/upload",
            content=avatar,
            headers={"Content-Type": "image/png"},
            params={"filename": "me.png"},
        ).json["content_uri"]
        alice.put(f"/profile/{q(str(alice.user_id))}/avatar_url", {"avatar_url": uri})
        alice.put(f"/profile/{q(str(alice.user_id))}/displayname", {"displayname": f"Alice {tag}"})
        media_id = uri.rsplit("/", 1)[1]

        # B's user reads A's user's profile through B.
        profile = bob.get(f"/profile/{q(str(alice.user_id))}").json
        assert profile == {"displayname": f"Alice {tag}", "avatar_url": uri}

        # ... and downloads the avatar through B (B fetches it over federation, then caches it).
        path = f"{V1}/download/{a.server_name}/{media_id}"
        first = bob.get(path).raw
        assert first.content == avatar
        assert first.headers["content-type"] == "image/png"
        assert 'filename="me.png"' in first.headers["content-disposition"]
        assert bob.get(path).raw.content == avatar
        [(server_name, cached_size)] = b.query(
            "SELECT server_name, size FROM remote_media_cache WHERE media_id = %s", (media_id,)
        )
        assert (server_name, cached_size) == (a.server_name, len(avatar))

        # A thumbnail too, rendered by B from its cached copy.
        thumb = bob.get(
            f"{V1}/thumbnail/{a.server_name}/{media_id}", params={"width": 64, "height": 64, "method": "crop"}
        )
        assert Image.open(io.BytesIO(thumb.raw.content)).size == (64, 64)

        # Unknown media of A is a 404 through B; A's media is never served unauthenticated.
        missing = bob.get(f"{V1}/download/{a.server_name}/doesNotExist{tag}", expect=404).json
        assert missing["errcode"] == "M_NOT_FOUND"
        bob.get(path, auth=False, expect=401)
    finally:
        alice.close()
        bob.close()


def test_b_lists_as_public_rooms_with_server(pair) -> None:
    a, b = pair
    tag = secrets.token_hex(3)
    alice = MatrixClient(a.base_url).register(f"alice{tag}")
    bob = MatrixClient(b.base_url).register(f"bob{tag}")
    try:
        room_id = alice.create_room(preset="public_chat", name=f"Lobby {tag}", visibility="public")
        listed = bob.get("/publicRooms", params={"server": a.server_name}).json
        assert room_id in [c["room_id"] for c in listed["chunk"]]
        found = bob.post(
            "/publicRooms", {"filter": {"generic_search_term": tag}}, params={"server": a.server_name}
        ).json
        assert [(c["room_id"], c["name"]) for c in found["chunk"]] == [(room_id, f"Lobby {tag}")]
        nothing = bob.post(
            "/publicRooms",
            {"filter": {"generic_search_term": f"nothing-{tag}"}},
            params={"server": a.server_name},
        ).json
        assert nothing["chunk"] == []
    finally:
        alice.close()
        bob.close()


def test_a_space_on_b_shows_a_child_room_only_a_is_in(pair) -> None:
    a, b = pair
    tag = secrets.token_hex(3)
    alice = MatrixClient(a.base_url).register(f"alice{tag}")
    bob = MatrixClient(b.base_url).register(f"bob{tag}")
    try:
        child = alice.create_room(preset="public_chat", name=f"A's room {tag}")
        space = bob.create_room(
            preset="public_chat", name=f"B's space {tag}", creation_content={"type": "m.space"}
        )
        bob.put(f"/rooms/{q(space)}/state/m.space.child/{q(child)}", {"via": [a.server_name]})
        rooms = bob.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy").json["rooms"]
        assert [(r["room_id"], r.get("name")) for r in rooms] == [
            (space, f"B's space {tag}"),
            (child, f"A's room {tag}"),
        ]
        assert rooms[1]["num_joined_members"] == 1 and rooms[1]["join_rule"] == "public"
    finally:
        alice.close()
        bob.close()


def test_b_summarises_a_room_only_a_is_in_for_its_signed_in_users(pair) -> None:
    """Spec v1.15 "Room summaries": B asks A (federation ``/hierarchy``) for a room B has no
    member in, by alias or by ID with ``via``; a private room stays unknown, and nothing is
    asked for a caller without an access token."""
    a, b = pair
    tag = secrets.token_hex(3)
    alice = MatrixClient(a.base_url).register(f"alice{tag}")
    bob = MatrixClient(b.base_url).register(f"bob{tag}")

    def summary(client: MatrixClient, room_id_or_alias: str, **kw: Any) -> Any:
        return client.get(f"/_matrix/client/v1/room_summary/{q(room_id_or_alias)}", **kw).json

    spec = "/room_summary/{roomIdOrAlias}"
    try:
        room = alice.create_room(
            preset="public_chat", name=f"A's lobby {tag}", topic="hello", room_alias_name=f"lobby{tag}"
        )
        secret = alice.create_room(preset="private_chat", name=f"A's secret {tag}")
        alias = f"#lobby{tag}:{a.server_name}"
        by_alias = summary(bob, alias, spec=spec)
        assert by_alias["room_id"] == room and by_alias["name"] == f"A's lobby {tag}"
        assert by_alias["topic"] == "hello" and by_alias["join_rule"] == "public"
        assert by_alias["num_joined_members"] == 1 and by_alias["membership"] == "leave"
        by_id = summary(bob, room, params={"via": a.server_name}, spec=spec)
        assert by_id["room_id"] == room and by_id["canonical_alias"] == alias
        hidden = summary(bob, secret, params={"via": a.server_name}, expect=404, spec=spec)
        assert hidden["errcode"] == "M_NOT_FOUND"
        anonymous = MatrixClient(b.base_url)
        refused = summary(anonymous, room, params={"via": a.server_name}, expect=404, auth=False)
        assert refused["errcode"] == "M_NOT_FOUND"
        # Once bob has joined, B summarises the room itself, membership included.
        bob.post(f"/join/{q(alias)}", {})
        mine = summary(bob, room, spec=spec)
        assert mine["membership"] == "join" and mine["num_joined_members"] == 2
    finally:
        alice.close()
        bob.close()
