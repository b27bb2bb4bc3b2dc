"""Dagma and a real Synapse answering each other's queries: media (authenticated federation
media, multipart answers both ways), profiles and the public room directory, each side asked
through its own client API."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer
from tests.support.synapse import SynapsePeer

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer

V1 = "/_matrix/client/v1/media"


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca,
        tmp_path_factory.mktemp("dagma-synq") / "d",
        stem="dagma-q",
        config={"allow_public_rooms_over_federation": True},
        redis=False,
    )
    with running(server):
        yield server


def _client(base_url: str, login: dict[str, Any]) -> MatrixClient:
    client = MatrixClient(base_url, login["access_token"], timeout=120)
    client.user_id = login["user_id"]
    return client


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (secrets.randbelow(256), 40, 200)).save(out, format="PNG")
    return out.getvalue()


def _avatar(client: MatrixClient, name: str) -> tuple[bytes, str]:
    """Upload a fresh PNG as the user's avatar and set a display name; (bytes, mxc URI)."""
    data = _png()
    uri = client.post(
        "/_matrix/media/v3/upload",
        content=data,
        headers={"Content-Type": "image/png"},
        params={"filename": "a.png"},
    ).json["content_uri"]
    client.put(f"/profile/{q(str(client.user_id))}/avatar_url", {"avatar_url": uri})
    client.put(f"/profile/{q(str(client.user_id))}/displayname", {"displayname": name})
    return data, uri


def _media_path(uri: str) -> str:
    server, media_id = uri[len("mxc://") :].split("/", 1)
    return f"{server}/{media_id}"


def test_media_and_profiles_resolve_both_ways(dagma: LiveServer, synapse_peer: SynapsePeer) -> None:
    tag = secrets.token_hex(3)
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    try:
        sam_png, sam_uri = _avatar(sam, f"Sam {tag}")
        dan_png, dan_uri = _avatar(dan, f"Dan {tag}")

        # Dagma asks Synapse (query/profile, then media/download: Synapse's multipart answer).
        assert dan.get(f"/profile/{q(str(sam.user_id))}").json == {
            "displayname": f"Sam {tag}",
            "avatar_url": sam_uri,
        }
        assert dan.get(f"{V1}/download/{_media_path(sam_uri)}").raw.content == sam_png
        thumb = dan.get(
            f"{V1}/thumbnail/{_media_path(sam_uri)}", params={"width": 32, "height": 32, "method": "crop"}
        )
        assert Image.open(io.BytesIO(thumb.raw.content)).size == (32, 32)

        # Synapse asks Dagma (our query/profile and our multipart media/download).
        profile = sam.get(f"/profile/{q(str(dan.user_id))}").json
        assert profile["displayname"] == f"Dan {tag}" and profile["avatar_url"] == dan_uri
        assert sam.get(f"{V1}/download/{_media_path(dan_uri)}").raw.content == dan_png
        thumb = sam.get(
            f"{V1}/thumbnail/{_media_path(dan_uri)}", params={"width": 32, "height": 32, "method": "crop"}
        )
        assert Image.open(io.BytesIO(thumb.raw.content)).size[0] <= 120
    finally:
        sam.close()
        dan.close()


def _listed(client: MatrixClient, server: str, room_id: str) -> dict[str, Any]:
    """The room's entry in ``server``'s directory as ``client``'s server fetches it. Polled with a
    deadline: Synapse lists a published room once its room statistics have caught up."""
    deadline = time.monotonic() + 60
    while True:
        chunk = client.get("/publicRooms", params={"server": server}, expect=200).json["chunk"]
        found = [c for c in chunk if c["room_id"] == room_id]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"{room_id} never listed by {server}: {chunk}"
        time.sleep(0.5)  # Synapse's background stats update: polled, with a deadline


def test_public_rooms_of_the_other_server_are_listed_both_ways(
    dagma: LiveServer, synapse_peer: SynapsePeer
) -> None:
    """``GET /publicRooms?server=`` asks the other server over federation (both sides run with
    ``allow_public_rooms_over_federation: true``): a public room of each shows on the other."""
    tag = secrets.token_hex(3)
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    try:
        sam_room = sam.create_room(preset="public_chat", name=f"Sam's lobby {tag}", visibility="public")
        dan_room = dan.create_room(preset="public_chat", name=f"Dan's lobby {tag}", visibility="public")

        on_dagma = _listed(dan, synapse_peer.server_name, sam_room)
        assert on_dagma["name"] == f"Sam's lobby {tag}" and on_dagma["num_joined_members"] == 1
        on_synapse = _listed(sam, dagma.server_name, dan_room)
        assert on_synapse["name"] == f"Dan's lobby {tag}" and on_synapse["num_joined_members"] == 1
        # A search term goes along (POST with a filter), each side answering only what matches.
        found = dan.post(
            "/publicRooms", {"filter": {"generic_search_term": f"lobby {tag}"}},
            params={"server": synapse_peer.server_name},
        ).json["chunk"]  # fmt: skip
        assert [c["room_id"] for c in found] == [sam_room]
        found = sam.post(
            "/publicRooms", {"filter": {"generic_search_term": f"lobby {tag}"}},
            params={"server": dagma.server_name},
        ).json["chunk"]  # fmt: skip
        assert [c["room_id"] for c in found] == [dan_room]
    finally:
        sam.close()
        dan.close()


def test_room_summaries_of_the_other_server_both_ways(dagma: LiveServer, synapse_peer: SynapsePeer) -> None:
    """Spec v1.15 "Room summaries": each side summarises the other's public room for its own
    user, by alias (federation ``query/directory``, then ``/hierarchy``)."""
    tag = secrets.token_hex(3)
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    try:
        sam.create_room(preset="public_chat", name=f"Sam's cafe {tag}", room_alias_name=f"cafe{tag}")
        dan_room = dan.create_room(
            preset="public_chat", name=f"Dan's cafe {tag}", room_alias_name=f"dcafe{tag}"
        )
        sam_alias = f"#cafe{tag}:{synapse_peer.server_name}"
        told = dan.get(
            f"/_matrix/client/v1/room_summary/{q(sam_alias)}", spec="/room_summary/{roomIdOrAlias}"
        ).json
        assert told["name"] == f"Sam's cafe {tag}" and told["join_rule"] == "public"
        assert told["num_joined_members"] == 1 and told["membership"] == "leave"
        dan_alias = f"#dcafe{tag}:{dagma.server_name}"
        seen = sam.get(f"/_matrix/client/v1/room_summary/{q(dan_alias)}").json
        assert seen["room_id"] == dan_room and seen["name"] == f"Dan's cafe {tag}"
        assert seen["join_rule"] == "public" and seen["num_joined_members"] == 1
    finally:
        sam.close()
        dan.close()
