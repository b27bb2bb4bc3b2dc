"""Outbound JSON POSTs to URLs that users chose (push gateways), under the SSRF policy.

The host is resolved here, every address is checked with :class:`IpPolicy`, and
the connection goes to a checked address (``Host`` header and TLS SNI keep the
name), so a second DNS answer cannot swap in another address. Redirects are not
followed, proxies from the environment are not used, and the answer is read up
to ``max_bytes`` within ``timeout`` seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from dagcore.net import ssrf
from dagcore.net.ssrf import IpPolicy

USER_AGENT = "Dagma"
MAX_RESPONSE_BYTES = 64 * 1024


class OutboundError(Exception):
    """The request could not be made or completed (blocked, unresolvable, refused, timed out, too large)."""


@dataclass(frozen=True)
class JsonAnswer:
    status: int
    #: The parsed body when it was a JSON object, else ``None``.
    body: dict[str, Any] | None


def check_http_url(url: str) -> httpx.URL:
    """An absolute http(s) URL with a host and no credentials, else :class:`ValueError` saying why."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError("not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parsed.host:
        raise ValueError("the URL has no host")
    if parsed.userinfo:
        raise ValueError("URLs with credentials are not allowed")
    return parsed


def host_header(url: httpx.URL) -> str:
    """The ``Host`` header for ``url`` when connecting to one of its checked addresses."""
    host = url.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    default = 443 if url.scheme == "https" else 80
    return host if url.port in (None, default) else f"{host}:{url.port}"


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    policy: IpPolicy,
    timeout: float = 10.0,
    max_bytes: int = MAX_RESPONSE_BYTES,
    verify_tls: bool = True,
) -> JsonAnswer:
    """POST ``body`` as JSON to ``url``; any failure to get an answer is :class:`OutboundError`."""
    try:
        target = check_http_url(url)
    except ValueError as exc:
        raise OutboundError(str(exc)) from None
    host = target.host
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        addresses = ssrf.resolve_allowed_sync(host, port, policy)
    except (ssrf.BlockedDestination, ssrf.UnresolvableHost) as exc:
        raise OutboundError(str(exc)) from None
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    headers = {"Host": host_header(target), "User-Agent": USER_AGENT, "Content-Type": "application/json"}
    last_error: Exception | None = None
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # connect where we checked, not through an environment proxy
        verify=verify_tls,
    ) as client:
        for address in addresses:
            request = client.build_request(
                "POST",
                target.copy_with(host=str(address)),
                content=payload,
                headers=headers,
                extensions={"sni_hostname": host} if target.scheme == "https" else {},
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc
                continue  # the next, equally checked, address
            except httpx.HTTPError as exc:
                raise OutboundError(f"request to {host[:100]} failed: {type(exc).__name__}") from None
            try:
                data = bytearray()
                for chunk in response.iter_raw():
                    data += chunk
                    if len(data) > max_bytes:
                        raise OutboundError(f"answer from {host[:100]} is larger than {max_bytes} bytes")
            except httpx.HTTPError as exc:
                raise OutboundError(
                    f"reading the answer of {host[:100]} failed: {type(exc).__name__}"
                ) from None
            finally:
                response.close()
            try:
                parsed = json.loads(bytes(data))
            except (ValueError, UnicodeDecodeError):
                parsed = None
            return JsonAnswer(response.status_code, parsed if isinstance(parsed, dict) else None)
    raise OutboundError(f"could not connect to {host[:100]}") from last_error
