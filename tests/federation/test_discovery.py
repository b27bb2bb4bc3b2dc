"""Server discovery follows the spec's order (server-server API "Resolving server names")."""

from __future__ import annotations

import random

import pytest

from dagcore.federation.discovery import (
    DbWellKnownCache,
    Destination,
    DiscoveryError,
    ServerResolver,
    SrvTarget,
    WellKnownAnswer,
    order_srv,
    parse_cache_control,
    parse_well_known_body,
    well_known_cache_ms,
)
from tests.federation.fakes import Clock, DictCache, FakeDns, FakeWellKnown

HOUR = 3600 * 1000


def make(dns: FakeDns | None = None, wk: FakeWellKnown | None = None, clock: Clock | None = None):
    dns, wk = dns or FakeDns(), wk or FakeWellKnown()
    return ServerResolver(srv=dns, well_known=wk, cache=DictCache(), clock=clock or Clock()), dns, wk


def test_an_ip_literal_is_used_as_is_without_well_known_or_srv() -> None:
    resolver, dns, wk = make()
    assert resolver.resolve("1.2.3.4") == Destination("1.2.3.4", (("1.2.3.4", 8448),), "1.2.3.4", "1.2.3.4")
    assert resolver.resolve("[2001:db8::1]:8000") == Destination(
        "[2001:db8::1]:8000", (("2001:db8::1", 8000),), "[2001:db8::1]:8000", "2001:db8::1"
    )
    assert dns.asked == [] and wk.fetched == []


def test_an_explicit_port_skips_well_known_and_srv_and_keeps_the_port_in_host() -> None:
    resolver, dns, wk = make()
    d = resolver.resolve("example.org:8000")
    assert d == Destination("example.org:8000", (("example.org", 8000),), "example.org:8000", "example.org")
    assert dns.asked == [] and wk.fetched == []


def test_well_known_delegation_to_a_name_with_port_is_used_with_the_delegated_host_name() -> None:
    resolver, dns, _ = make(wk=FakeWellKnown({"example.org": WellKnownAnswer("matrix.example.net:443")}))
    d = resolver.resolve("example.org")
    assert d == Destination(
        "example.org", (("matrix.example.net", 443),), "matrix.example.net:443", "matrix.example.net"
    )
    assert dns.asked == []


def test_well_known_delegation_to_an_ip_literal_uses_8448_by_default() -> None:
    resolver, _, _ = make(wk=FakeWellKnown({"example.org": WellKnownAnswer("10.1.2.3")}))
    assert resolver.resolve("example.org").targets == (("10.1.2.3", 8448),)


def test_delegated_name_without_port_asks_matrix_fed_srv_first_then_matrix_then_8448() -> None:
    wk = FakeWellKnown({"example.org": WellKnownAnswer("matrix.example.net")})
    dns = FakeDns({"_matrix-fed._tcp.matrix.example.net": [SrvTarget("fed.example.net.", 8449)]})
    resolver, _, _ = make(dns, wk)
    d = resolver.resolve("example.org")
    assert d == Destination(
        "example.org", (("fed.example.net", 8449),), "matrix.example.net", "matrix.example.net"
    )
    assert dns.asked == ["_matrix-fed._tcp.matrix.example.net"]

    dns2 = FakeDns({"_matrix._tcp.matrix.example.net": [SrvTarget("old.example.net", 1234)]})
    resolver2, _, _ = make(dns2, wk)
    assert resolver2.resolve("example.org").targets == (("old.example.net", 1234),)
    assert dns2.asked == ["_matrix-fed._tcp.matrix.example.net", "_matrix._tcp.matrix.example.net"]

    resolver3, _, _ = make(FakeDns(), wk)
    assert resolver3.resolve("example.org").targets == (("matrix.example.net", 8448),)


def test_without_delegation_the_server_names_srv_records_then_8448_are_used() -> None:
    dns = FakeDns({"_matrix-fed._tcp.example.org": [SrvTarget("a.example.org", 443)]})
    resolver, _, wk = make(dns)
    d = resolver.resolve("example.org")
    assert d == Destination("example.org", (("a.example.org", 443),), "example.org", "example.org")
    assert wk.fetched == ["example.org"]
    resolver2, dns2, _ = make()
    assert resolver2.resolve("example.org").targets == (("example.org", 8448),)
    assert dns2.asked == ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]


def test_an_srv_target_of_dot_means_no_service_there() -> None:
    dns = FakeDns({"_matrix-fed._tcp.example.org": [SrvTarget(".", 0)]})
    resolver, _, _ = make(dns)
    assert resolver.resolve("example.org").targets == (("example.org", 8448),)


def test_srv_records_are_tried_by_priority() -> None:
    records = [SrvTarget("c", 3, priority=20), SrvTarget("a", 1, priority=5), SrvTarget("b", 2, priority=10)]
    assert [r.host for r in order_srv(records, rng=random.Random(1))] == ["a", "b", "c"]
    weighted = [SrvTarget("x", 1, 0, 0), SrvTarget("y", 1, 0, 100)]
    assert {r.host for r in order_srv(weighted, rng=random.Random(2))} == {"x", "y"}


def test_well_known_answer_is_cached_until_it_expires() -> None:
    clock = Clock()
    wk = FakeWellKnown({"example.org": WellKnownAnswer("m.example.org:443", cache_ms=2 * HOUR)})
    resolver, _, _ = make(wk=wk, clock=clock)
    resolver.resolve("example.org")
    clock.now += 2 * HOUR - 1
    resolver.resolve("example.org")
    assert wk.fetched == ["example.org"]
    clock.now += 2
    resolver.resolve("example.org")
    assert wk.fetched == ["example.org", "example.org"]


def test_a_failed_well_known_is_cached_for_an_hour() -> None:
    clock = Clock()
    resolver, _, wk = make(clock=clock)
    resolver.resolve("example.org")
    clock.now += HOUR - 1
    resolver.resolve("example.org")
    assert wk.fetched == ["example.org"]
    clock.now += 2
    resolver.resolve("example.org")
    assert len(wk.fetched) == 2


def test_cache_periods_are_clamped_to_five_minutes_and_48_hours() -> None:
    assert well_known_cache_ms(WellKnownAnswer("a:1")) == 24 * HOUR
    assert well_known_cache_ms(WellKnownAnswer("a:1", cache_ms=0)) == 5 * 60 * 1000
    assert well_known_cache_ms(WellKnownAnswer("a:1", cache_ms=1000 * HOUR)) == 48 * HOUR
    assert parse_cache_control("public, max-age=600") == 600_000
    assert parse_cache_control("no-store") == 0
    assert parse_cache_control("private") is None


def test_invalid_well_known_bodies_mean_no_delegation() -> None:
    bodies: list[object] = [[], {}, {"m.server": 5}, {"m.server": "bad name!"}, {"m.server": "a:99999999"}]
    for body in bodies:
        assert parse_well_known_body(body) is None
    assert parse_well_known_body({"m.server": "matrix.example.org:443"}) == "matrix.example.org:443"


def test_an_invalid_server_name_is_a_discovery_error() -> None:
    resolver, _, _ = make()
    with pytest.raises(DiscoveryError) as err:
        resolver.resolve("not a server")
    assert err.value.server_name == "not a server"


@pytest.mark.django_db
@pytest.mark.sqlite
def test_the_database_cache_is_shared_and_expires() -> None:
    cache = DbWellKnownCache()
    assert cache.get("example.org", 1000) is None
    cache.put("example.org", "m.example.org:443", 2000)
    assert cache.get("example.org", 1999) == "m.example.org:443"
    assert cache.get("example.org", 2000) is None
    cache.put("example.org", "", 5000)  # "no delegation" is cached too
    assert cache.get("example.org", 3000) == ""
