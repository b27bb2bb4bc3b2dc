"""Where the server may connect: the address policy against server-side request forgery.

Any request whose destination a remote party chooses — a URL preview, a
federation peer's name, its ``.well-known`` delegation or SRV answer, a remote
media download — could otherwise be aimed at ``127.0.0.1:5432``, the cloud
metadata service at ``169.254.169.254`` or a printer on the LAN. Every such
fetch resolves the host itself, checks **every** address with :class:`IpPolicy`
and then connects to a checked address (never re-resolving the name, so a
second DNS answer cannot swap in another address).

The policy is ``ip_range_blacklist`` minus ``ip_range_whitelist`` (federation
and remote media) or the ``url_preview_*`` pair (previews), see
``dagma_project/config.py``. IPv6 addresses that carry an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are checked for that IPv4
address too, and the unspecified address (``0.0.0.0``/``::``, which reaches the
local host on most systems) is refused whatever the lists say.

No Django here: callers pass the configured lists (:meth:`IpPolicy.from_config`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BlockedDestination",
    "IPAddress",
    "IPNetwork",
    "IpPolicy",
    "UnresolvableHost",
    "embedded_ipv4",
    "resolve",
    "resolve_allowed",
    "resolve_allowed_sync",
    "resolve_sync",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
#: Longest host name resolved (RFC 1035: 253 characters in text form).
MAX_HOST_LENGTH = 253


class UnresolvableHost(Exception):
    """The host name has no usable address."""


class BlockedDestination(Exception):
    """The host resolves (at least partly) to an address the policy refuses."""


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to (transition mechanisms)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True)
class IpPolicy:
    blacklist: tuple[IPNetwork, ...]
    whitelist: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, blacklist: Iterable[str], whitelist: Iterable[str] = ()) -> IpPolicy:
        return cls(
            blacklist=tuple(ipaddress.ip_network(n, strict=False) for n in blacklist),
            whitelist=tuple(ipaddress.ip_network(n, strict=False) for n in whitelist),
        )

    def _refused(self, ip: IPAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self.whitelist):
            return False
        return any(ip.version == net.version and ip in net for net in self.blacklist)

    def is_allowed(self, ip: IPAddress) -> bool:
        if ip.is_unspecified:  # 0.0.0.0 / :: reach the local host on most systems
            return False
        return not any(self._refused(candidate) for candidate in (ip, *embedded_ipv4(ip)))

    def check_all(self, host: str, addresses: Sequence[IPAddress]) -> list[IPAddress]:
        """``addresses`` if every one is allowed (a name must not mix public and private answers)."""
        if not addresses:
            raise UnresolvableHost(f"{host[:100]} has no address")
        if any(not self.is_allowed(a) for a in addresses):
            raise BlockedDestination(f"{host[:100]} resolves to a blocked address")
        return list(addresses)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _check_host(host: str) -> None:
    if not host or len(host) > MAX_HOST_LENGTH or "\x00" in host:
        raise UnresolvableHost("invalid host name")


def _addresses(infos: Iterable[Any]) -> list[IPAddress]:
    out: list[IPAddress] = []
    for info in infos:
        # Scoped IPv6 answers ("fe80::1%eth0") are checked without their zone.
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is its own answer)."""
    _check_host(host)
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"could not resolve {host[:100]}") from exc
    return _addresses(infos)


def resolve_sync(host: str, port: int) -> list[IPAddress]:
    """:func:`resolve` for synchronous callers."""
    _check_host(host)
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"could not resolve {host[:100]}") from exc
    return _addresses(infos)


async def resolve_allowed(host: str, port: int, policy: IpPolicy) -> list[IPAddress]:
    """The addresses to connect to for ``host``; raises :class:`BlockedDestination` if any is refused."""
    return policy.check_all(host, await resolve(host, port))


def resolve_allowed_sync(host: str, port: int, policy: IpPolicy) -> list[IPAddress]:
    return policy.check_all(host, resolve_sync(host, port))
