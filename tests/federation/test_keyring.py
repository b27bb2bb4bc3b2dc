"""The keyring: cache, then notaries, then the server itself; validity capped at seven days."""

from __future__ import annotations

import pytest

from dagcore.federation.keyring import (
    MAX_KEY_VALIDITY_MS,
    KeyRequest,
    Keyring,
    TrustedKeyServer,
)
from dagcore.protocol import signing
from dagcore.store import server_keys as key_store
from tests.federation.fakes import Clock, FakeFederation, FakeKeyServer

# The quick start federates on SQLite too: the key cache's upserts must work there.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

HOUR = 3600 * 1000
DAY = 24 * HOUR


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net(clock: Clock) -> FakeFederation:
    return FakeFederation(clock)


def keyring(net: FakeFederation, clock: Clock, notaries: list[TrustedKeyServer] | None = None) -> Keyring:
    us = FakeKeyServer("us.test", [signing.generate_signing_key()])
    return Keyring(
        transport=net,
        trusted_key_servers=notaries or [],
        our_server_name="us.test",
        our_key_response=us.response,
        clock=clock,
    )


def kid(server: FakeKeyServer, i: int = 0) -> str:
    return signing.key_id(server.keys[i])


def b64(key: signing.VerifyKey | signing.SigningKey) -> str:
    return signing.encode_verify_key_base64(key)


def test_keys_are_fetched_from_the_server_once_then_served_from_the_cache(net, clock) -> None:
    remote = net.add("remote.test")
    ring = keyring(net, clock)
    key = ring.get_verify_key("remote.test", kid(remote), clock.now)
    assert key is not None and b64(key) == b64(remote.keys[0])
    assert ring.get_verify_key("remote.test", kid(remote), clock.now + HOUR) is not None
    assert net.calls == [("GET", "remote.test", "/_matrix/key/v2/server")]


def test_a_cached_key_is_fetched_again_once_its_validity_ends(net, clock) -> None:
    remote = net.add("remote.test", valid_for_ms=HOUR)
    ring = keyring(net, clock)
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is not None
    clock.now += HOUR  # exactly at valid_until_ts: still valid
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is not None
    assert len(net.calls) == 1
    clock.now += 1
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is not None
    assert len(net.calls) == 2


def test_validity_is_capped_at_seven_days_after_the_fetch(net, clock) -> None:
    remote = net.add("remote.test", valid_for_ms=30 * DAY)
    ring = keyring(net, clock)
    fetched_at = clock.now
    ring.get_verify_key("remote.test", kid(remote), clock.now)
    stored = key_store.get_server_keys(keys=[("remote.test", kid(remote))])[("remote.test", kid(remote))]
    assert stored.valid_until_ts == fetched_at + MAX_KEY_VALIDITY_MS
    clock.now = fetched_at + MAX_KEY_VALIDITY_MS + 1
    ring.get_verify_key("remote.test", kid(remote), clock.now)
    assert len(net.calls) == 2


def test_a_key_not_valid_long_enough_is_refetched_and_refused_if_still_too_short(net, clock) -> None:
    remote = net.add("remote.test", valid_for_ms=HOUR)
    ring = keyring(net, clock)
    assert ring.get_verify_key("remote.test", kid(remote), clock.now + 2 * HOUR) is None
    assert len(net.calls) == 1
    # Rooms v1-v4 ask with 0: any key the server ever had will do, from the cache.
    assert ring.get_verify_key("remote.test", kid(remote), 0) is not None
    assert len(net.calls) == 1


def test_old_verify_keys_are_valid_until_they_expired(net, clock) -> None:
    retired = signing.generate_signing_key()
    old_id = signing.key_id(retired)
    net.add("remote.test", old_keys={old_id: (signing.get_verify_key(retired), clock.now - DAY)})
    ring = keyring(net, clock)
    assert ring.get_verify_key("remote.test", old_id, clock.now - 2 * DAY) is not None
    assert ring.get_verify_key("remote.test", old_id, clock.now) is None


def test_without_notaries_the_keys_of_many_servers_take_one_request_per_server(net, clock) -> None:
    a, b = net.add("a.test"), net.add("b.test")
    a.keys.append(signing.generate_signing_key())
    ring = keyring(net, clock)
    found = ring.get_verify_keys(
        [KeyRequest("a.test", kid(a, 0), clock.now), KeyRequest("a.test", kid(a, 1), clock.now),
         KeyRequest("b.test", kid(b), clock.now), KeyRequest("b.test", kid(b), 0)]
    )  # fmt: skip
    assert set(found) == {("a.test", kid(a, 0)), ("a.test", kid(a, 1)), ("b.test", kid(b))}
    assert sorted(c[1] for c in net.calls) == ["a.test", "b.test"]


def test_a_notary_answers_for_many_servers_in_one_query(net, clock) -> None:
    notary_key = signing.generate_signing_key()
    net.notaries["notary.test"] = notary_key
    servers = [net.add(f"s{i}.test") for i in range(3)]
    notary = TrustedKeyServer("notary.test", {signing.key_id(notary_key): signing.get_verify_key(notary_key)})
    ring = keyring(net, clock, [notary])
    found = ring.get_verify_keys(KeyRequest(s.name, kid(s), clock.now) for s in servers)
    assert len(found) == 3
    assert len(net.calls) == 1
    method, dest, body = net.calls[0]
    assert (method, dest) == ("POST", "notary.test")
    assert set(body["server_keys"]) == {"s0.test", "s1.test", "s2.test"}
    stored = key_store.get_server_keys(keys=[("s0.test", kid(servers[0]))])
    assert next(iter(stored.values())).from_server == "notary.test"


def test_a_notary_answer_signed_with_another_key_is_ignored_and_the_server_asked(net, clock) -> None:
    net.notaries["notary.test"] = signing.generate_signing_key()
    configured = signing.generate_signing_key()  # not the key the notary signs with
    remote = net.add("remote.test")
    notary = TrustedKeyServer("notary.test", {signing.key_id(configured): signing.get_verify_key(configured)})
    ring = keyring(net, clock, [notary])
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is not None
    assert [c[0] for c in net.calls] == ["POST", "GET"]
    stored = key_store.get_server_keys(keys=[("remote.test", kid(remote))])
    assert next(iter(stored.values())).from_server == "remote.test"


def test_keys_not_signed_by_their_own_server_are_refused_from_notary_and_origin(net, clock) -> None:
    notary_key = signing.generate_signing_key()
    net.notaries["notary.test"] = notary_key
    remote = net.add("remote.test", signed_by=signing.generate_signing_key())
    notary = TrustedKeyServer("notary.test", {signing.key_id(notary_key): signing.get_verify_key(notary_key)})
    ring = keyring(net, clock, [notary])
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is None
    assert key_store.get_server_keys(keys=[("remote.test", kid(remote))]) == {}


def test_an_answer_about_another_server_is_refused(net, clock) -> None:
    impostor = net.add("remote.test")
    impostor.name = "elsewhere.test"  # answers as another server, correctly self-signed
    ring = keyring(net, clock)
    assert ring.get_verify_key("remote.test", kid(impostor), clock.now) is None


def test_a_notary_without_configured_keys_is_checked_with_the_keys_it_serves(net, clock) -> None:
    notary_server = net.add("notary.test")
    net.notaries["notary.test"] = notary_server.keys[0]
    remote = net.add("remote.test")
    ring = keyring(net, clock, [TrustedKeyServer("notary.test")])
    assert ring.get_verify_key("remote.test", kid(remote), clock.now) is not None
    assert [(c[0], c[1]) for c in net.calls] == [("POST", "notary.test"), ("GET", "notary.test")]


def test_our_own_keys_need_no_request(net, clock) -> None:
    ring = keyring(net, clock)
    ours = ring.our_key_response(clock.now)
    own_id = next(iter(ours["verify_keys"]))
    assert ring.get_verify_key("us.test", own_id, clock.now) is not None
    assert net.calls == []


def test_a_batch_lookup_answers_the_event_checks_from_one_fetch(net, clock) -> None:
    a, b = net.add("a.test"), net.add("b.test")
    ring = keyring(net, clock)
    lookup = ring.lookup_for(
        [KeyRequest("a.test", kid(a), clock.now), KeyRequest("b.test", kid(b), clock.now)]
    )
    assert len(net.calls) == 2
    assert lookup("a.test", kid(a), clock.now) is not None
    assert lookup("b.test", kid(b), clock.now - HOUR) is not None
    assert len(net.calls) == 2


def test_as_a_notary_cached_answers_are_served_refreshed_when_stale_kept_when_the_server_is_down(
    net, clock
) -> None:
    remote = net.add("remote.test", valid_for_ms=HOUR)
    ring = keyring(net, clock)
    first = ring.get_key_responses("remote.test", {})
    assert [a["server_name"] for a in first] == ["remote.test"] and len(net.calls) == 1
    assert ring.get_key_responses("remote.test", {kid(remote): clock.now}) == first
    assert len(net.calls) == 1
    clock.now += 2 * HOUR
    second = ring.get_key_responses("remote.test", {})
    assert len(net.calls) == 2 and second[0]["valid_until_ts"] == clock.now + HOUR
    clock.now += 2 * HOUR
    net.down.add("remote.test")
    assert ring.get_key_responses("remote.test", {}) == second
    assert ring.get_key_responses("unknown.test", {}) == []
