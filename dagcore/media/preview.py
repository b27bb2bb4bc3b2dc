"""URL previews: fetch a web page without becoming a proxy into our network, read its OpenGraph.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url

A preview makes the *server* fetch a URL a user chose, so it is the classic
server-side request forgery (SSRF) hole: ``http://127.0.0.1:5432/``,
``http://169.254.169.254/`` (cloud metadata), a LAN printer... Defences:

- only ``http``/``https``, no credentials in the URL, no proxy from the environment;
- we resolve the host ourselves (``dagcore.net.ssrf``) and check **every** resolved address against
  ``url_preview_ip_range_blacklist`` minus ``url_preview_ip_range_whitelist``
  (if any address is refused, the whole request is, so a name cannot mix a
  public and a private address); IPv6 addresses that carry an IPv4 address
  (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are checked for that
  IPv4 address too, and the unspecified address is always refused;
- we then connect to the checked address itself (the host name only goes in
  the ``Host`` header and TLS SNI/certificate check), so a second DNS answer
  cannot swap in another address (DNS rebinding);
- redirects are followed by hand, each hop checked the same way, at most
  :data:`MAX_REDIRECTS`;
- bounded time (connect/read timeouts and an overall deadline) and size
  (``Content-Length`` checked first, then a counted streamed read; compressed
  bodies are inflated with the same bound).

Pure: no database. The action (``dagcore.actions.media``) caches and stores images.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from dagcore.net import ssrf
from dagcore.net.outbound import check_http_url, host_header

# The address policy is shared with federation (dagcore.net.ssrf); re-exported for media callers.
from dagcore.net.ssrf import IPAddress as IPAddress
from dagcore.net.ssrf import IPNetwork as IPNetwork
from dagcore.net.ssrf import IpPolicy as IpPolicy
from dagcore.net.ssrf import embedded_ipv4 as embedded_ipv4

MAX_REDIRECTS = 5
#: Largest page or image fetched for a preview.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 10.0
#: Whole fetch, redirects included.
TOTAL_TIMEOUT = 30.0
#: Only the start of a page is parsed: OpenGraph lives in <head>.
HTML_PARSE_LIMIT = 1024 * 1024
MAX_OG_KEYS = 50
MAX_OG_VALUE_LENGTH = 1000
USER_AGENT = "Mozilla/5.0 (compatible; Dagma URL preview; +https://matrix.org)"


class PreviewError(Exception):
    """The URL cannot be previewed; ``errcode``/``status`` say why (mapped to a Matrix error)."""

    status = 502
    errcode = "M_UNKNOWN"


class InvalidUrl(PreviewError):
    status = 400
    errcode = "M_INVALID_PARAM"


class BlockedAddress(PreviewError):
    status = 403
    errcode = "M_FORBIDDEN"


class ResponseTooLarge(PreviewError):
    status = 502
    errcode = "M_TOO_LARGE"


class FetchFailed(PreviewError):
    status = 502
    errcode = "M_UNKNOWN"


# --------------------------------------------------------------------------- address policy


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is its own answer); the shared SSRF resolver."""
    try:
        return await ssrf.resolve(host, port)
    except ssrf.UnresolvableHost as exc:
        raise FetchFailed(str(exc)) from exc


# --------------------------------------------------------------------------- fetching


@dataclass
class Fetched:
    url: str
    status: int
    content_type: str
    body: bytes


def check_url(url: str) -> httpx.URL:
    try:
        return check_http_url(url)
    except ValueError as exc:
        raise InvalidUrl(str(exc)) from exc


class _BoundedInflater:
    """gzip/deflate decoding that never produces more than ``limit`` bytes in all."""

    def __init__(self, encoding: str, limit: int) -> None:
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise FetchFailed(f"unsupported Content-Encoding {encoding!r}")
        self._inflate = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
        self.limit = limit
        self.produced = 0

    def feed(self, data: bytes) -> bytes:
        out = self._inflate.decompress(data, self.limit - self.produced + 1)
        self.produced += len(out)
        if self.produced > self.limit or self._inflate.unconsumed_tail:
            raise ResponseTooLarge(f"response is larger than {self.limit} bytes")
        return out


async def _fetch_once(
    client: httpx.AsyncClient, url: httpx.URL, *, policy: IpPolicy, max_bytes: int
) -> tuple[httpx.Response, bytes | None]:
    """One hop: returns the response and its body (``None`` for a redirect)."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(host, port)
    try:
        policy.check_all(host, addresses)
    except ssrf.BlockedDestination as exc:
        raise BlockedAddress(str(exc)) from exc
    except ssrf.UnresolvableHost as exc:
        raise FetchFailed(str(exc)) from exc
    last_error: Exception | None = None
    for address in addresses:
        target = url.copy_with(host=str(address))
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        headers = {
            "Host": host_header(url),
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }
        try:
            request = client.build_request("GET", target, headers=headers, extensions=extensions)
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
            continue  # try the next (equally checked) address
        try:
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                return response, None
            declared = response.headers.get("content-length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(f"response is larger than {max_bytes} bytes")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            inflater = None if encoding in ("", "identity") else _BoundedInflater(encoding, max_bytes)
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += inflater.feed(chunk) if inflater else chunk
                if len(body) > max_bytes:
                    raise ResponseTooLarge(f"response is larger than {max_bytes} bytes")
            return response, bytes(body)
        finally:
            await response.aclose()
    raise FetchFailed(f"could not connect to {host}") from last_error


async def fetch(
    url: str,
    *,
    policy: IpPolicy,
    max_bytes: int = MAX_RESPONSE_BYTES,
    total_timeout: float = TOTAL_TIMEOUT,
    verify_tls: bool = True,
) -> Fetched:
    """GET ``url`` under the SSRF rules of the module docstring."""
    current = check_url(url)
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        async with (
            asyncio.timeout(total_timeout),
            httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy or .netrc from the environment: we connect where we checked
                verify=verify_tls,
                # A fresh connection per hop: a pooled one keyed by IP could carry another host's TLS session.
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as client,
        ):
            for _hop in range(MAX_REDIRECTS + 1):
                response, body = await _fetch_once(client, current, policy=policy, max_bytes=max_bytes)
                if body is None:
                    current = check_url(urljoin(str(current), response.headers["location"]))
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchFailed(f"the server answered HTTP {response.status_code}")
                return Fetched(
                    url=str(current),
                    status=response.status_code,
                    content_type=response.headers.get("content-type", ""),
                    body=body,
                )
    except TimeoutError as exc:
        raise FetchFailed("timed out fetching the URL") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"could not fetch the URL: {type(exc).__name__}") from exc
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


# --------------------------------------------------------------------------- OpenGraph


class _StopParsing(Exception):
    pass


class _OpenGraphParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._title_parts: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            attributes = dict(attrs)
            key = (attributes.get("property") or attributes.get("name") or "").strip()
            content = attributes.get("content")
            if not key or content is None:
                return
            content = content.strip()[:MAX_OG_VALUE_LENGTH]
            lowered = key.lower()
            if lowered.startswith("og:") and lowered not in self.og and len(self.og) < MAX_OG_KEYS:
                self.og[lowered] = content
            elif lowered == "description" and self.description is None:
                self.description = content
        elif tag == "title" and self.title is None and self._title_parts is None:
            self._title_parts = []
        elif tag == "body":
            raise _StopParsing

    def handle_data(self, data: str) -> None:
        if self._title_parts is not None:
            self._title_parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title_parts is not None:
            self.title = " ".join("".join(self._title_parts).split())[:MAX_OG_VALUE_LENGTH]
            self._title_parts = None
        elif tag == "head":
            raise _StopParsing


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)


def _charset(content_type: str, body: bytes) -> str:
    for match in (_HEADER_CHARSET.search(content_type), _META_CHARSET.search(body[:4096])):
        if match is None:
            continue
        name = match.group(1)
        name = name.decode("ascii") if isinstance(name, bytes) else name
        try:
            return codecs.lookup(name).name
        except LookupError:
            continue
    return "utf-8"


@dataclass
class PageMetadata:
    og: dict[str, str] = field(default_factory=dict)
    #: Absolute http(s) URL of the page's image, to be fetched into the media store.
    image_url: str | None = None


def is_html(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


def parse_opengraph(body: bytes, *, content_type: str, base_url: str) -> PageMetadata:
    """OpenGraph properties of an HTML page, with ``<title>``/description as fallbacks."""
    head = body[:HTML_PARSE_LIMIT]
    text = head.decode(_charset(content_type, head), errors="replace")
    parser = _OpenGraphParser()
    try:
        parser.feed(text)
        parser.close()
    except _StopParsing:
        pass
    og = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    image_url = None
    for key in ("og:image", "og:image:secure_url", "og:image:url"):
        candidate = og.get(key)
        if candidate:
            absolute = urljoin(base_url, candidate)
            if absolute.startswith(("http://", "https://")):
                image_url = absolute
                break
    # Image facts come from the image we fetch, not from the page's claims.
    for key in list(og):
        if key == "og:image" or key.startswith("og:image:"):
            del og[key]
    return PageMetadata(og=og, image_url=image_url)
