"""Class 7 — server-side request forgery: the shared outbound guard (``dagcore.net.ssrf``),
and URL previews through the HTTP API: private, loopback, link-local and transitional
addresses are refused, also after redirects and whatever the DNS answers."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from dagcore.media import preview
from dagcore.net import ssrf
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.media import webserver
from tests.security.kit import assert_error
from tests.support.client import MatrixClient
from tests.support.live import LiveServer

DEFAULT = ssrf.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST)
LOOPBACK_ONE = ssrf.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"])
PREVIEW = "/_matrix/client/v1/media/preview_url"

REFUSED = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
    "::ffff:169.254.169.254", "::ffff:7f00:1", "2002:a9fe:a9fe::", "64:ff9b::a00:1", "64:ff9b:1::a00:1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "::10.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_the_shared_policy_refuses_internal_and_transitional_addresses(address: str) -> None:
    assert not DEFAULT.is_allowed(ipaddress.ip_address(address))
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.resolve_allowed_sync(address, 443, DEFAULT)


def test_public_addresses_pass_the_shared_policy() -> None:
    for address in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"):
        assert ssrf.resolve_allowed_sync(address, 443, DEFAULT) == [ipaddress.ip_address(address)]


def test_names_are_resolved_and_every_answer_is_checked() -> None:
    # "localhost" answers 127.0.0.1 (and usually ::1): refused by default.
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.resolve_allowed_sync("localhost", 8448, DEFAULT)
    with pytest.raises(ssrf.BlockedDestination):
        asyncio.run(ssrf.resolve_allowed("localhost", 8448, DEFAULT))
    # Numeric spellings the resolver turns into loopback are checked as what they resolve to.
    for spelling in ("2130706433", "0x7f000001", "127.1"):
        try:
            answers = ssrf.resolve_sync(spelling, 80)
        except ssrf.UnresolvableHost:
            continue
        with pytest.raises(ssrf.BlockedDestination):
            DEFAULT.check_all(spelling, answers)
    # Control: whitelisted, the loopback literal is allowed.
    assert ssrf.resolve_allowed_sync("127.0.0.1", 80, LOOPBACK_ONE) == [ipaddress.ip_address("127.0.0.1")]


def test_a_name_mixing_allowed_and_refused_answers_is_refused() -> None:
    mixed = [ipaddress.ip_address("1.1.1.1"), ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(ssrf.BlockedDestination):
        DEFAULT.check_all("mixed.example", mixed)
    assert DEFAULT.check_all("ok.example", mixed[:1]) == mixed[:1]


@pytest.mark.parametrize("host", ["", "a" * 300, "exa\x00mple.org", "nonexistent.invalid"])
def test_unusable_host_names_are_refused_before_connecting(host: str) -> None:
    with pytest.raises(ssrf.UnresolvableHost):
        ssrf.resolve_allowed_sync(host, 443, DEFAULT)


def test_the_whitelist_never_opens_the_unspecified_address() -> None:
    everything = ssrf.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["0.0.0.0/0", "::/0"])
    assert everything.is_allowed(ipaddress.ip_address("10.0.0.1"))
    for address in ("0.0.0.0", "::"):
        assert not everything.is_allowed(ipaddress.ip_address(address))


def test_media_previews_use_the_shared_policy() -> None:
    assert preview.IpPolicy is ssrf.IpPolicy


# --------------------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def preview_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Previews on; only 127.0.0.1 is whitelisted (so 127.0.0.2 and ::1 stay refused)."""
    server = LiveServer(
        tmp_path_factory.mktemp("ssrf"),
        config={"url_preview_enabled": True, "url_preview_ip_range_whitelist": ["127.0.0.1/32"]},
    )
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def target() -> Iterator[webserver.TestServer]:
    with webserver.serve() as server:
        yield server


def test_redirects_to_refused_addresses_are_not_followed(preview_server: LiveServer, target) -> None:
    client = MatrixClient(preview_server.base_url).register()
    port = target.server_port
    for path in ("/redirect-to-other-loopback", "/redirect-to-ipv6-loopback"):
        target.hits.clear()
        r = client.get(PREVIEW, params={"url": f"http://127.0.0.1:{port}{path}"}, expect=None)
        assert_error(r, 403, "M_FORBIDDEN")
        assert target.hits == [path]  # the redirect target was never contacted
    # Control: a redirect within the allowed address is followed.
    r = client.get(PREVIEW, params={"url": f"http://127.0.0.1:{port}/redirect"}, spec="/media/preview_url")
    assert r.json["og:title"] == "Dagma & friends"
    client.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/page",
        "http://[::1]:{port}/page",
        "http://[::ffff:127.0.0.2]:{port}/page",
        "http://0.0.0.0:{port}/page",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
    ],
)
def test_previews_of_internal_addresses_are_refused(preview_server: LiveServer, target, url: str) -> None:
    client = MatrixClient(preview_server.base_url).register()
    target.hits.clear()
    r = client.get(PREVIEW, params={"url": url.format(port=target.server_port)}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert target.hits == []
    client.close()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.org/", "dict://127.0.0.1:11211/",
        "http://user:pass@127.0.0.1/", "http://", "not a url", "http://[::1", "http://a b/", "",
        "http://" + "a" * 5000 + ".example/", "http://exa\x00mple.org/",
    ],
)  # fmt: skip
def test_unusable_or_non_http_urls_are_refused_without_a_500(preview_server: LiveServer, url: str) -> None:
    client = MatrixClient(preview_server.base_url).register()
    r = client.get(PREVIEW, params={"url": url}, expect=None)
    assert 400 <= r.status < 500 or r.status == 502, r
    assert isinstance(r.json, dict) and "errcode" in r.json
    client.get("/account/whoami")
    client.close()


def test_preview_responses_are_bounded_in_size_and_time() -> None:
    with webserver.serve() as server:
        base = webserver.base_url(server)
        for path in ("/big", "/big-undeclared", "/gzip-bomb"):
            with pytest.raises(preview.ResponseTooLarge):
                asyncio.run(preview.fetch(base + path, policy=LOOPBACK_ONE, max_bytes=1024 * 1024))
        with pytest.raises(preview.FetchFailed):
            asyncio.run(preview.fetch(base + "/slow", policy=LOOPBACK_ONE, total_timeout=0.5))
        with pytest.raises(preview.FetchFailed):
            asyncio.run(preview.fetch(base + "/redirect-loop", policy=LOOPBACK_ONE))
        # Control: a normal page is fetched.
        assert asyncio.run(preview.fetch(base + "/page", policy=LOOPBACK_ONE)).status == 200
