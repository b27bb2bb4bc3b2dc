"""Resolving a server name to where its federation API is served.

Spec: https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names

1. An IP literal: that address, with the given port or 8448. ``Host`` is the
   server name; the certificate must be for the IP address.
2. A host name with an explicit port: that host (A/AAAA) and port; ``Host`` is
   ``hostname:port``; the certificate must be for the host name.
3. Otherwise ``https://<hostname>/.well-known/matrix/server``; a valid
   ``m.server`` (``delegated_hostname[:port]``) is resolved in turn:
   3.1 an IP literal: that address, port or 8448;
   3.2 with a port: ``delegated_hostname`` at that port;
   3.3 SRV ``_matrix-fed._tcp.<delegated_hostname>``, then
   3.4 the deprecated ``_matrix._tcp.<delegated_hostname>``;
   3.5 else ``delegated_hostname:8448``.
   ``Host`` and the certificate are the delegated name (with its port if given).
4./5. No (valid) delegation: SRV ``_matrix-fed._tcp.<hostname>``, then
   ``_matrix._tcp.<hostname>``;
6. else ``hostname:8448``. ``Host`` and the certificate are the host name.

The ``.well-known`` answer is cached in the database (every process shares
it) for its ``Cache-Control: max-age`` or 24 hours, an error for an hour,
always between 5 minutes and 48 hours (the spec leaves the numbers to the
implementation; these are Synapse's). Names are resolved to addresses by the
client, which checks them against the address policy before connecting.

What discovery needs from the network comes in as small protocols
(:class:`SrvResolver`, :class:`WellKnownFetcher`, :class:`WellKnownCache`), so
the order of the steps is tested without a network.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dagcore.clock import now_ms as _now_ms
from dagcore.protocol.identifiers import split_server_name
from dagcore.store import server_keys as key_store

if TYPE_CHECKING:
    import dns.resolver

logger = logging.getLogger("dagma.federation")

DEFAULT_PORT = 8448
WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600 * 1000
WELL_KNOWN_ERROR_CACHE_MS = 3600 * 1000
WELL_KNOWN_MIN_CACHE_MS = 5 * 60 * 1000
WELL_KNOWN_MAX_CACHE_MS = 48 * 3600 * 1000
#: The spec gives no limit; a delegation is a few dozen bytes (Synapse allows 50 KiB).
WELL_KNOWN_MAX_BYTES = 50 * 1024
#: How long one DNS lookup may take, retries included.
DNS_LIFETIME_S = 10.0

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


class DiscoveryError(Exception):
    """The server name cannot be resolved to anywhere to connect to."""

    def __init__(self, server_name: str, reason: str) -> None:
        super().__init__(f"{server_name[:255]}: {reason}")
        self.server_name = server_name
        self.reason = reason


@dataclass(frozen=True)
class SrvTarget:
    host: str
    port: int
    priority: int = 0
    weight: int = 0


@dataclass(frozen=True)
class Destination:
    """Where to send a request for ``server_name``, and what to call it there."""

    server_name: str
    #: ``(host, port)`` to try in order; a host is a DNS name or an IP literal (without brackets).
    targets: tuple[tuple[str, int], ...]
    #: The ``Host`` header.
    host_header: str
    #: The name the TLS certificate must be valid for (also sent as SNI unless an IP literal).
    tls_name: str


@dataclass(frozen=True)
class WellKnownAnswer:
    """One fetch of ``/.well-known/matrix/server``: the ``m.server`` it delegates to, if any."""

    m_server: str | None
    #: How long the answer may be cached, before clamping (``None``: no cache headers).
    cache_ms: int | None = None


class SrvResolver(Protocol):
    def lookup_srv(self, name: str) -> list[SrvTarget]:
        """The SRV records of ``name``; ``[]`` when there are none or the lookup fails."""
        ...


class WellKnownFetcher(Protocol):
    def fetch_well_known(self, server_name: str, hostname: str) -> WellKnownAnswer:
        """``GET https://<hostname>/.well-known/matrix/server``; any failure is ``m_server=None``."""
        ...


class WellKnownCache(Protocol):
    def get(self, server_name: str, now_ms: int) -> str | None:
        """The cached ``m.server``: ``""`` for a cached "no delegation", ``None`` when not cached."""
        ...

    def put(self, server_name: str, delegated_server: str, expires_ts: int) -> None: ...


def parse_cache_control(value: str | None) -> int | None:
    """The ``max-age`` of a ``Cache-Control`` header in ms; 0 for ``no-store``; ``None`` if neither."""
    if not value:
        return None
    if "no-store" in value.lower():
        return 0
    match = _MAX_AGE.search(value)
    return int(match.group(1)) * 1000 if match else None


def well_known_cache_ms(answer: WellKnownAnswer) -> int:
    """How long to keep a ``.well-known`` answer: its own wish within [5 minutes, 48 hours]."""
    if answer.m_server is None:
        return WELL_KNOWN_ERROR_CACHE_MS
    wanted = WELL_KNOWN_DEFAULT_CACHE_MS if answer.cache_ms is None else answer.cache_ms
    return max(WELL_KNOWN_MIN_CACHE_MS, min(WELL_KNOWN_MAX_CACHE_MS, wanted))


def parse_well_known_body(body: Any) -> str | None:
    """The valid ``m.server`` of a parsed ``.well-known`` body, else ``None`` ("invalid: skip to step 4")."""
    if not isinstance(body, dict):
        return None
    m_server = body.get("m.server")
    if not isinstance(m_server, str) or split_server_name(m_server) is None:
        return None
    return m_server


def _ip_literal(host: str) -> str | None:
    """The address of an IP literal host (IPv6 without brackets), else ``None``."""
    try:
        return str(ipaddress.ip_address(host[1:-1] if host.startswith("[") else host))
    except ValueError:
        return None


def order_srv(records: Sequence[SrvTarget], *, rng: random.Random | None = None) -> list[SrvTarget]:
    """RFC 2782 order: by priority, then weighted random within a priority."""
    chooser = rng or random.Random()
    out: list[SrvTarget] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                out.extend(group)
                break
            pick = chooser.uniform(0, total)
            running = 0
            for r in group:
                running += r.weight
                if running >= pick:
                    out.append(r)
                    group.remove(r)
                    break
    return out


class ServerResolver:
    """Resolve server names (spec steps 1-6 above)."""

    def __init__(
        self,
        *,
        srv: SrvResolver,
        well_known: WellKnownFetcher,
        cache: WellKnownCache,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.srv = srv
        self.well_known = well_known
        self.cache = cache
        self.clock = clock

    def resolve(self, server_name: str) -> Destination:
        parts = split_server_name(server_name)
        if parts is None:
            raise DiscoveryError(server_name, "not a valid server name")
        hostname, port = parts
        # Step 1: an IP literal.
        address = _ip_literal(hostname)
        if address is not None:
            return Destination(server_name, ((address, port or DEFAULT_PORT),), server_name, address)
        # Step 2: an explicit port.
        if port is not None:
            return Destination(server_name, ((hostname, port),), server_name, hostname)
        # Step 3: delegation through .well-known.
        delegated = self._delegation(server_name, hostname)
        if delegated:
            return self._resolve_delegated(server_name, delegated)
        # Steps 4-6.
        return Destination(server_name, self._srv_or_default(hostname), hostname, hostname)

    def _delegation(self, server_name: str, hostname: str) -> str | None:
        now = self.clock()
        cached = self.cache.get(server_name, now)
        if cached is not None:
            return cached or None
        answer = self.well_known.fetch_well_known(server_name, hostname)
        self.cache.put(server_name, answer.m_server or "", now + well_known_cache_ms(answer))
        return answer.m_server

    def _resolve_delegated(self, server_name: str, delegated: str) -> Destination:
        parts = split_server_name(delegated)
        if parts is None:  # parse_well_known_body only lets valid names through
            raise DiscoveryError(server_name, f"delegated server name {delegated[:255]!r} is invalid")
        hostname, port = parts
        address = _ip_literal(hostname)
        # Step 3.1: an IP literal.
        if address is not None:
            return Destination(server_name, ((address, port or DEFAULT_PORT),), delegated, address)
        # Step 3.2: an explicit port.
        if port is not None:
            return Destination(server_name, ((hostname, port),), delegated, hostname)
        # Steps 3.3-3.5.
        return Destination(server_name, self._srv_or_default(hostname), hostname, hostname)

    def _srv_or_default(self, hostname: str) -> tuple[tuple[str, int], ...]:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = [r for r in self.srv.lookup_srv(f"{service}.{hostname}") if r.host not in ("", ".")]
            if records:
                return tuple((r.host.rstrip("."), r.port) for r in order_srv(records))
        return ((hostname, DEFAULT_PORT),)


class DnsSrvResolver:
    """SRV lookups with dnspython: the system resolver configuration, or the DNS servers of
    ``dns_resolvers`` (``(address, port)`` pairs; a test runs its own DNS server)."""

    def __init__(self, nameservers: Sequence[tuple[str, int]] = ()) -> None:
        # dnspython is imported by the first resolver made, not with this module: a process
        # that never looks up a server (Tribune) does not carry its 2-3 MB of modules.
        import dns.resolver

        self._resolver: dns.resolver.Resolver | None = None
        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host for host, _ in nameservers]
            resolver.nameserver_ports = {host: port for host, port in nameservers}
            self._resolver = resolver

    def lookup_srv(self, name: str) -> list[SrvTarget]:
        import dns.exception
        import dns.rdtypes.IN.SRV
        import dns.resolver

        try:
            if self._resolver is not None:
                answer = self._resolver.resolve(name, "SRV", lifetime=DNS_LIFETIME_S)
            else:
                answer = dns.resolver.resolve(name, "SRV", lifetime=DNS_LIFETIME_S)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            # A failing resolver is no reason to give up: the spec's next step is the default port.
            logger.info("SRV lookup of %s failed: %s", name[:300], type(exc).__name__)
            return []
        out: list[SrvTarget] = []
        for record in answer:
            if isinstance(record, dns.rdtypes.IN.SRV.SRV):
                out.append(
                    SrvTarget(
                        host=record.target.to_text(omit_final_dot=True),
                        port=int(record.port),
                        priority=int(record.priority),
                        weight=int(record.weight),
                    )
                )
        return out


class DbWellKnownCache:
    """The ``.well-known`` cache in the database, shared by every process."""

    def get(self, server_name: str, now_ms: int) -> str | None:
        return key_store.get_well_known(server_name=server_name, now_ms=now_ms)

    def put(self, server_name: str, delegated_server: str, expires_ts: int) -> None:
        key_store.store_well_known(
            server_name=server_name, delegated_server=delegated_server, expires_ts=expires_ts
        )
