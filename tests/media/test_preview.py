"""URL previews: SSRF address policy, the guarded fetcher against a local server, OpenGraph parsing."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from dagcore.media import preview
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.media import webserver

DEFAULT = preview.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST)
LOOPBACK_ALLOWED = preview.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",  # link-local
        "fc00::1",
        "fd12:3456::1",  # unique local
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo (client 127.0.0.1)
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible
    ],
)
def test_private_loopback_and_transitional_addresses_are_refused(address: str) -> None:
    assert not DEFAULT.is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4007:80e::200e"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.is_allowed(ipaddress.ip_address(address))


def test_transitional_addresses_are_checked_for_their_ipv4_even_with_a_narrow_blacklist() -> None:
    narrow = preview.IpPolicy.from_config(["127.0.0.0/8", "10.0.0.0/8"])
    for address in ("::ffff:127.0.0.1", "2002:a00:1::", "64:ff9b::7f00:1"):
        assert not narrow.is_allowed(ipaddress.ip_address(address))
    assert narrow.is_allowed(ipaddress.ip_address("2002:5db8:d70e::"))  # 6to4 of a public address


def test_the_whitelist_makes_exceptions_but_never_for_the_unspecified_address() -> None:
    assert LOOPBACK_ALLOWED.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not LOOPBACK_ALLOWED.is_allowed(ipaddress.ip_address("127.0.0.2"))
    everything = preview.IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["0.0.0.0/0", "::/0"])
    assert not everything.is_allowed(ipaddress.ip_address("0.0.0.0"))


def fetch(url: str, policy: preview.IpPolicy = LOOPBACK_ALLOWED, **kw: object) -> preview.Fetched:
    return asyncio.run(preview.fetch(url, policy=policy, **kw))  # type: ignore[arg-type]


def test_a_local_server_is_refused_by_default_and_never_contacted() -> None:
    with webserver.serve() as server:
        with pytest.raises(preview.BlockedAddress):
            fetch(webserver.base_url(server) + "/page", policy=DEFAULT)
        with pytest.raises(preview.BlockedAddress):
            fetch(f"http://localhost:{server.server_address[1]}/page", policy=DEFAULT)
        assert server.hits == []
        # Control: whitelisted, the same page is fetched.
        page = fetch(webserver.base_url(server) + "/page")
        assert page.status == 200 and b"og:title" in page.body
        assert server.hits == ["/page"]


def test_redirects_are_followed_and_every_hop_is_checked() -> None:
    with webserver.serve() as server:
        base = webserver.base_url(server)
        assert fetch(base + "/redirect").url == base + "/page"
        for path in ("/redirect-to-ipv6-loopback", "/redirect-to-other-loopback"):
            with pytest.raises(preview.BlockedAddress):
                fetch(base + path)
        with pytest.raises(preview.FetchFailed):
            fetch(base + "/redirect-loop")


def test_responses_are_size_bounded_declared_undeclared_or_compressed() -> None:
    with webserver.serve() as server:
        base = webserver.base_url(server)
        for path in ("/big", "/big-undeclared", "/gzip-bomb"):
            with pytest.raises(preview.ResponseTooLarge):
                fetch(base + path, max_bytes=1024 * 1024)
        assert len(fetch(base + "/big", max_bytes=4 * 1024 * 1024).body) == 3 * 1024 * 1024


def test_a_slow_server_hits_the_overall_deadline() -> None:
    with webserver.serve() as server, pytest.raises(preview.FetchFailed):
        fetch(webserver.base_url(server) + "/slow", total_timeout=0.5)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http://user:pw@example.com/", "not a url", "http:///x"],
)
def test_only_plain_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(preview.InvalidUrl):
        preview.check_url(url)


def test_opengraph_properties_with_fallbacks_and_an_absolute_image_url() -> None:
    meta = preview.parse_opengraph(
        webserver.page_html("img/cat.png"), content_type="text/html", base_url="https://example.com/a/page"
    )
    assert meta.og == {"og:title": "Dagma & friends", "og:description": "A Matrix homeserver"}
    assert meta.image_url == "https://example.com/a/img/cat.png"

    bare = (
        b"<html><head><title>  Just a\n title </title><meta name='description' content='About'></head></html>"
    )
    meta = preview.parse_opengraph(bare, content_type="text/html", base_url="https://example.com/")
    assert meta.og == {"og:title": "Just a title", "og:description": "About"} and meta.image_url is None


def test_the_page_charset_is_honoured() -> None:
    body = "<html><head><meta charset='iso-8859-1'><meta property='og:title' content='Café'></head>".encode(
        "latin-1"
    )
    meta = preview.parse_opengraph(body, content_type="text/html", base_url="https://example.com/")
    assert meta.og["og:title"] == "Café"


def test_image_urls_that_are_not_http_are_dropped() -> None:
    body = b"<head><meta property='og:image' content='javascript:alert(1)'></head>"
    assert (
        preview.parse_opengraph(body, content_type="text/html", base_url="https://e.com/").image_url is None
    )
