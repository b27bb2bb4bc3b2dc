"""The signed outbound federation client: every request this server makes to another server.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication
(``Authorization: X-Matrix``) and #resolving-server-names (where to connect).

Each request, ``.well-known`` look-ups and their redirects included:

* is refused before anything goes on the wire when ``federation_domain_whitelist``
  is set and does not list the destination server name;
* resolves the host itself and checks **every** address against
  ``ip_range_blacklist`` minus ``ip_range_whitelist`` (:mod:`dagcore.net.ssrf`),
  then connects to a checked address, sending the name as ``Host`` and TLS SNI —
  a second DNS answer cannot swap in another address;
* verifies the certificate for the name discovery gives, unless
  ``federation_verify_certificates`` is false (``federation_custom_ca_list``
  replaces the system's trusted authorities);
* reads at most ``max_bytes`` of answer within ``timeout`` seconds in all;
* ignores proxies from the environment and follows no redirect (except the
  ``.well-known`` fetch, as the spec asks, up to :data:`MAX_REDIRECTS`).

Failures are :class:`FederationError` subclasses naming the server.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin

import httpx
from django.conf import settings

from dagcore.federation.discovery import (
    WELL_KNOWN_MAX_BYTES,
    DbWellKnownCache,
    Destination,
    DiscoveryError,
    DnsSrvResolver,
    ServerResolver,
    WellKnownAnswer,
    parse_cache_control,
    parse_well_known_body,
)
from dagcore.net import ssrf
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.request_auth import authorization_header
from dagcore.protocol.signing import SigningKey
from dagcore.server_keys import get_server_name, get_signing_key

USER_AGENT = "Dagma"
#: Default answer size cap; endpoints with big answers (state, send_join) pass their own.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Default time for one whole request, answer included (Synapse: 60 s).
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
WELL_KNOWN_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5


class FederationError(Exception):
    """A request to ``server_name`` did not give a usable answer."""

    def __init__(self, server_name: str, reason: str) -> None:
        super().__init__(f"{server_name[:255]}: {reason}")
        self.server_name = server_name
        self.reason = reason


class FederationBlocked(FederationError):
    """Refused by our policy (domain whitelist, address ranges): nothing was sent."""


class FederationUnreachable(FederationError):
    """No connection or no complete answer: discovery, DNS, connect, TLS, timeout."""


class FederationBadResponse(FederationError):
    """An answer came, but too large or not a JSON object."""


class FederationAnswerTooLarge(FederationBadResponse):
    """The answer grew past the size cap of the request; reading stopped there."""


class FederationHttpError(FederationError):
    """The server answered with an error status; ``body`` is its JSON error, if any."""

    def __init__(self, server_name: str, status: int, body: dict[str, Any] | None) -> None:
        errcode = (body or {}).get("errcode")
        super().__init__(server_name, f"HTTP {status}" + (f" {str(errcode)[:100]}" if errcode else ""))
        self.status = status
        self.body = body


@dataclass(frozen=True)
class FederationPolicy:
    ip_policy: IpPolicy
    #: ``None``: every server; else only these server names.
    domain_whitelist: frozenset[str] | None = None
    verify_certificates: bool = True
    #: PEM files of the only authorities trusted for federation (``None``: the system's).
    custom_ca_files: tuple[str, ...] | None = None
    #: DNS servers for SRV look-ups (``dns_resolvers``); empty: the system's.
    dns_resolvers: tuple[tuple[str, int], ...] = ()
    #: Where ``.well-known`` is fetched (the spec's 443; tests serve it elsewhere).
    well_known_port: int = 443

    def allows(self, server_name: str) -> bool:
        return self.domain_whitelist is None or server_name in self.domain_whitelist

    def check(self, server_name: str) -> None:
        if not self.allows(server_name):
            raise FederationBlocked(server_name, "not in federation_domain_whitelist")

    @classmethod
    def from_config(cls, config: Any) -> FederationPolicy:
        whitelist = config.federation_domain_whitelist
        ca_files = config.federation_custom_ca_list
        return cls(
            ip_policy=IpPolicy.from_config(config.ip_range_blacklist, config.ip_range_whitelist),
            domain_whitelist=None if whitelist is None else frozenset(whitelist),
            verify_certificates=bool(config.federation_verify_certificates),
            custom_ca_files=None if not ca_files else tuple(str(config.resolve_path(f)) for f in ca_files),
            dns_resolvers=tuple(_split_resolver(entry) for entry in getattr(config, "dns_resolvers", [])),
            well_known_port=int(getattr(config, "federation_well_known_port", 443)),
        )


def _split_resolver(entry: str) -> tuple[str, int]:
    """``("::1", 5353)`` for ``[::1]:5353``; port 53 when none is given (validated by the config)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest.removeprefix(":") or 53)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, 53


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: httpx.Headers
    body: bytes


def _ssl_context(policy: FederationPolicy) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not policy.verify_certificates:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif policy.custom_ca_files:
        for path in policy.custom_ca_files:
            context.load_verify_locations(cafile=path)
    else:
        context.load_default_certs()
    return context


def federation_ssl_context(policy: FederationPolicy) -> ssl.SSLContext:
    """The TLS client context federation requests use under ``policy`` (the federation tester
    checks certificates exactly as other requests do)."""
    return _ssl_context(policy)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def encode_path(template: str, *segments: str) -> str:
    """``template`` with each ``{}`` replaced by a percent-encoded path segment."""
    return template.format(*(quote(s, safe="") for s in segments))


class HttpsTransport:
    """One HTTPS exchange under the policy; connection pools are kept per certificate name,
    so a connection verified for one name is never reused for another."""

    def __init__(self, policy: FederationPolicy) -> None:
        self.policy = policy
        self._ssl = _ssl_context(policy)
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def _client(self, tls_name: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(tls_name)
            if client is None:
                client = httpx.Client(
                    verify=self._ssl,
                    follow_redirects=False,
                    trust_env=False,  # connect where we checked, not through an environment proxy
                    limits=httpx.Limits(max_connections=20, max_keepalive_connections=5),
                )
                self._clients[tls_name] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def exchange(
        self,
        *,
        server_name: str,
        method: str,
        host: str,
        port: int,
        host_header: str,
        tls_name: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        max_bytes: int,
        timeout: float,
    ) -> RawAnswer:
        deadline = time.monotonic() + timeout
        try:
            addresses = ssrf.resolve_allowed_sync(host, port, self.policy.ip_policy)
        except ssrf.BlockedDestination as exc:
            raise FederationBlocked(server_name, str(exc)) from None
        except ssrf.UnresolvableHost as exc:
            raise FederationUnreachable(server_name, str(exc)) from None
        client = self._client(tls_name)
        extensions: dict[str, Any] = {}
        # An IP literal is not sent as SNI (RFC 6066); the certificate is checked for the address.
        if not _is_ip(tls_name):
            extensions["sni_hostname"] = tls_name
        all_headers = {"Host": host_header, "User-Agent": USER_AGENT, **headers}
        last_error = "no address"
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            url = httpx.URL(scheme="https", host=str(address), port=port, raw_path=raw_path.encode("ascii"))
            request = client.build_request(
                method,
                url,
                content=body,
                headers=all_headers,
                extensions={
                    **extensions,
                    "timeout": httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT_S, remaining)).as_dict(),
                },
            )
            try:
                response = client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue  # the next, equally checked, address
            except httpx.HTTPError as exc:
                raise FederationUnreachable(server_name, f"{type(exc).__name__}: {str(exc)[:200]}") from None
            try:
                data = bytearray()
                for chunk in response.iter_raw():
                    data += chunk
                    if len(data) > max_bytes:
                        raise FederationAnswerTooLarge(
                            server_name, f"answer is larger than {max_bytes} bytes"
                        )
                    if time.monotonic() > deadline:
                        raise FederationUnreachable(server_name, f"answer took longer than {timeout:g} s")
            except httpx.HTTPError as exc:
                raise FederationUnreachable(
                    server_name, f"reading the answer failed: {type(exc).__name__}"
                ) from None
            finally:
                response.close()
            return RawAnswer(response.status_code, response.headers, bytes(data))
        raise FederationUnreachable(server_name, f"could not connect to {host[:255]}:{port} ({last_error})")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def http_error(server_name: str, answer: RawAnswer) -> FederationHttpError:
    """The error of a non-2xx answer, with its JSON body when it has one."""
    try:
        error_body: dict[str, Any] | None = _parse_object(server_name, answer.body)
    except FederationBadResponse:
        error_body = None
    return FederationHttpError(server_name, answer.status, error_body)


def _parse_object(server_name: str, data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise FederationBadResponse(server_name, "answer is not JSON") from None
    if not isinstance(parsed, dict):
        raise FederationBadResponse(server_name, "answer is not a JSON object")
    return parsed


class HttpsWellKnownFetcher:
    """``GET https://<hostname>/.well-known/matrix/server`` through the policy-checked transport."""

    def __init__(self, transport: HttpsTransport, *, port: int = 443) -> None:
        self.transport = transport
        #: The spec's port is 443 (``https://hostname/``); tests serve it elsewhere.
        self.port = port

    def fetch_well_known(self, server_name: str, hostname: str) -> WellKnownAnswer:
        url = httpx.URL(f"https://{_url_host(hostname)}:{self.port}/.well-known/matrix/server")
        seen: set[str] = set()
        try:
            for _ in range(MAX_REDIRECTS + 1):
                seen.add(str(url))
                host = url.host
                port = url.port or 443
                answer = self.transport.exchange(
                    server_name=server_name,
                    method="GET",
                    host=host,
                    port=port,
                    host_header=_url_host(host) if url.port in (None, 443) else f"{_url_host(host)}:{port}",
                    tls_name=host,
                    raw_path=url.raw_path.decode("ascii"),
                    headers={"Accept": "application/json"},
                    body=None,
                    max_bytes=WELL_KNOWN_MAX_BYTES,
                    timeout=WELL_KNOWN_TIMEOUT_S,
                )
                if answer.status in (301, 302, 303, 307, 308) and answer.headers.get("location"):
                    # Spec: "follow 30x redirects, carefully avoiding redirect loops".
                    url = httpx.URL(urljoin(str(url), answer.headers["location"]))
                    if url.scheme != "https" or str(url) in seen:
                        return WellKnownAnswer(None)
                    continue
                if answer.status != 200:
                    return WellKnownAnswer(None)
                try:
                    body = json.loads(answer.body)
                except (ValueError, UnicodeDecodeError):
                    return WellKnownAnswer(None)
                return WellKnownAnswer(
                    parse_well_known_body(body), parse_cache_control(answer.headers.get("cache-control"))
                )
        except FederationBlocked:
            raise  # a delegation we may not even look up is a refusal, not "no delegation"
        except FederationError:
            return WellKnownAnswer(None)
        return WellKnownAnswer(None)


class FederationClient:
    """Signed requests to other servers' federation and key APIs."""

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey | Callable[[], SigningKey],
        policy: FederationPolicy,
        resolver: ServerResolver | None = None,
        transport: HttpsTransport | None = None,
    ) -> None:
        """``signing_key``: a key, or a function answering the current one (this server's
        client follows rotations: ``dagcore.server_keys.get_signing_key``)."""
        self.server_name = server_name
        self._signing_key: Callable[[], SigningKey] = (
            signing_key if callable(signing_key) else (lambda: signing_key)
        )
        self.policy = policy
        self.transport = transport or HttpsTransport(policy)
        self.resolver = resolver or ServerResolver(
            srv=DnsSrvResolver(policy.dns_resolvers),
            well_known=HttpsWellKnownFetcher(self.transport, port=policy.well_known_port),
            cache=DbWellKnownCache(),
        )

    @property
    def signing_key(self) -> SigningKey:
        return self._signing_key()

    def close(self) -> None:
        self.transport.close()

    def resolve(self, destination: str) -> Destination:
        self.policy.check(destination)
        try:
            return self.resolver.resolve(destination)
        except DiscoveryError as exc:
            raise FederationUnreachable(destination, exc.reason) from None

    def request_raw(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | Sequence[str]] | None = None,
        content: Any = None,
        signed: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
        accept: str = "application/json",
    ) -> RawAnswer:
        """Send one request; return the answer whatever its status (:meth:`request` for JSON).

        ``path`` is already percent-encoded (:func:`encode_path`): it is signed exactly as sent.
        """
        if destination == self.server_name:
            raise FederationBlocked(destination, "is this server")
        target = self.resolve(destination)
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True, quote_via=quote)
        # identity: the answer is read raw (a compressed body would be taken for the bytes).
        headers: dict[str, str] = {"Accept": accept, "Accept-Encoding": "identity"}
        body: bytes | None = None
        if content is not None:
            body = encode_canonical_json(content)
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = authorization_header(
                method=method,
                uri=uri,
                origin=self.server_name,
                destination=destination,
                signing_key=self.signing_key,
                content=content,
            )
        last: FederationUnreachable | None = None
        for host, port in target.targets:
            try:
                return self.transport.exchange(
                    server_name=destination,
                    method=method,
                    host=host,
                    port=port,
                    host_header=target.host_header,
                    tls_name=target.tls_name,
                    raw_path=uri,
                    headers=headers,
                    body=body,
                    max_bytes=max_bytes,
                    timeout=timeout,
                )
            except FederationUnreachable as exc:
                last = exc
                continue  # the next SRV target
        assert last is not None  # targets is never empty
        raise last

    def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | Sequence[str]] | None = None,
        content: Any = None,
        signed: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send one request; return the JSON object of a 2xx answer, else raise :class:`FederationError`.

        ``path`` is already percent-encoded (:func:`encode_path`): it is signed exactly as sent.
        """
        answer = self.request_raw(
            method,
            destination,
            path,
            query=query,
            content=content,
            signed=signed,
            max_bytes=max_bytes,
            timeout=timeout,
        )
        if 200 <= answer.status < 300:
            return _parse_object(destination, answer.body)
        raise http_error(destination, answer)

    def fetch_url(self, server_name: str, url: str, *, max_bytes: int, timeout: float) -> RawAnswer:
        """``GET`` a plain ``https`` URL another server pointed us to (a media ``Location``),
        following its redirects (at most :data:`MAX_REDIRECTS`, no loops).

        Every hop is checked like any federation request (``ip_range_blacklist`` minus
        ``ip_range_whitelist`` on every address, certificates as configured), so a redirect
        cannot reach an internal address; nothing is signed. Failures name ``server_name``.
        """
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                parsed = httpx.URL(current)
            except (httpx.InvalidURL, ValueError, TypeError):
                raise FederationBadResponse(server_name, "redirected to an invalid URL") from None
            if parsed.scheme != "https" or not parsed.host or parsed.userinfo:
                raise FederationBlocked(server_name, "redirected to a URL that is not plain https")
            if str(parsed) in seen:
                raise FederationBadResponse(server_name, "redirect loop")
            seen.add(str(parsed))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FederationUnreachable(server_name, f"redirects took longer than {timeout:g} s")
            host = parsed.host
            port = parsed.port or 443
            answer = self.transport.exchange(
                server_name=server_name,
                method="GET",
                host=host,
                port=port,
                host_header=_url_host(host) if parsed.port in (None, 443) else f"{_url_host(host)}:{port}",
                tls_name=host,
                raw_path=parsed.raw_path.decode("ascii"),
                headers={"Accept-Encoding": "identity"},
                body=None,
                max_bytes=max_bytes,
                timeout=remaining,
            )
            if answer.status in (301, 302, 303, 307, 308) and answer.headers.get("location"):
                current = urljoin(str(parsed), answer.headers["location"])
                continue
            return answer
        raise FederationBadResponse(server_name, f"more than {MAX_REDIRECTS} redirects")

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("GET", destination, path, **kwargs)

    def post_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        return self.request("POST", destination, path, content=content, **kwargs)

    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        return self.request("PUT", destination, path, content=content, **kwargs)


@functools.cache
def get_federation_client() -> FederationClient:
    """This process's client, configured from ``dagma.yaml``."""
    return FederationClient(
        server_name=get_server_name(),
        signing_key=get_signing_key,
        policy=FederationPolicy.from_config(settings.DAGMA),
    )
