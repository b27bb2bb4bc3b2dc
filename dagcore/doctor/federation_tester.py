"""The federation tester: can other servers reach ``server_name``'s federation API?

Follows the spec's server discovery step by step and reports a verdict per step
(https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names and
#retrieving-server-keys):

``name``        the server name is valid;
``well-known``  ``https://<hostname>/.well-known/matrix/server`` (optional; an invalid one FAILs:
                other servers silently ignore it);
``srv``         ``_matrix-fed._tcp``, then the deprecated ``_matrix._tcp`` (WARN), else port 8448;
``addresses``   each target host resolves (and, for other servers, passes our address policy);
``tls``         a TLS handshake verifies the chain and the host name the spec says to check;
``certificate`` its expiry (WARN under 14 days, FAIL under 7);
``keys``        ``/_matrix/key/v2/server``: for this server name, self-signed by every key it
                lists, ``valid_until_ts`` ahead (for our own name: our key IDs);
``version``     ``/_matrix/federation/v1/version`` answers;
``client-well-known`` ``https://<hostname>/.well-known/matrix/client`` names a homeserver
                whose ``/_matrix/client/versions`` answers (WARN when absent).

Requests go through the federation client's transport (address policy, certificate
verification as configured); our own server name is exempt from the address policy
(our server may well resolve to a private address from inside), other names are not.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from cryptography import x509
from django.conf import settings

from dagcore.clock import now_ms
from dagcore.doctor import FAIL, OK, SKIP, WARN, worst
from dagcore.federation.client import (
    FederationBlocked,
    FederationError,
    FederationPolicy,
    HttpsTransport,
    RawAnswer,
    federation_ssl_context,
)
from dagcore.federation.discovery import (
    DEFAULT_PORT,
    DnsSrvResolver,
    SrvResolver,
    order_srv,
    parse_well_known_body,
)
from dagcore.net import ssrf
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import signing
from dagcore.protocol.identifiers import split_server_name

DAY_MS = 24 * 3600 * 1000
CERT_WARN_DAYS = 14
CERT_FAIL_DAYS = 7
TIMEOUT_S = 10.0
MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Step:
    name: str
    status: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "summary": self.summary, "details": self.details}


@dataclass(frozen=True)
class TesterReport:
    server_name: str
    steps: list[Step]

    @property
    def status(self) -> str:
        return worst([s.status for s in self.steps])

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def failed_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.status == FAIL]

    def as_json(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "status": self.status,
            "steps": [s.as_json() for s in self.steps],
        }


@dataclass(frozen=True)
class Target:
    """Where discovery leads: hosts to connect to, the ``Host`` header, the certificate name."""

    hosts: tuple[tuple[str, int], ...]
    host_header: str
    tls_name: str


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _cert_summary(der: bytes | None) -> dict[str, Any]:
    if not der:
        return {}
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
            str(a) for a in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "names": names,
        "not_after_ts": int(cert.not_valid_after_utc.timestamp() * 1000),
    }


class FederationTester:
    """One run of the steps above for one server name (not thread-safe; make one per run)."""

    def __init__(
        self,
        *,
        policy: FederationPolicy,
        own_server_name: str,
        own_key_ids: frozenset[str] = frozenset(),
        srv: SrvResolver | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.policy = policy
        self.own_server_name = own_server_name
        self.own_key_ids = own_key_ids
        self.srv = srv or DnsSrvResolver(policy.dns_resolvers)
        self.clock = clock

    # ------------------------------------------------------------------ entry

    def run(self, server_name: str) -> TesterReport:
        steps: list[Step] = []
        is_self = server_name == self.own_server_name
        policy = self.policy
        if is_self:
            # Our own name: whatever it resolves to from here (a LAN address behind NAT) is us.
            policy = replace(policy, ip_policy=IpPolicy(blacklist=()))
        transport = HttpsTransport(policy)
        try:
            self._run(server_name, is_self, policy, transport, steps)
        finally:
            transport.close()
        return TesterReport(server_name, steps)

    def _run(
        self,
        server_name: str,
        is_self: bool,
        policy: FederationPolicy,
        transport: HttpsTransport,
        steps: list[Step],
    ) -> None:
        parts = split_server_name(server_name)
        if parts is None:
            steps.append(Step("name", FAIL, f"{server_name[:255]!r} is not a valid server name"))
            return
        if not is_self and not policy.allows(server_name):
            steps.append(Step("name", FAIL, "not in federation_domain_whitelist: we never contact it"))
            return
        steps.append(Step("name", OK, f"{server_name} is a valid server name"))
        hostname, port = parts
        target = self._discover(server_name, hostname, port, transport, steps)
        if target is None:
            return
        resolved = self._addresses(server_name, target, policy, steps)
        if not resolved:
            return
        connected = self._tls(server_name, target, resolved, policy, steps)
        if connected is None:
            self._client_well_known(server_name, hostname, policy, steps)
            return
        host, port_used = connected
        self._keys(server_name, target, host, port_used, transport, is_self, steps)
        self._version(server_name, target, host, port_used, transport, steps)
        self._client_well_known(server_name, hostname, policy, steps)

    # ------------------------------------------------------------------ discovery

    def _discover(
        self, server_name: str, hostname: str, port: int | None, transport: HttpsTransport, steps: list[Step]
    ) -> Target | None:
        literal = _ip_literal(hostname)
        if literal is not None:
            steps.append(Step("well-known", SKIP, "an IP literal: no .well-known (spec step 1)"))
            steps.append(Step("srv", SKIP, "an IP literal: no SRV (spec step 1)"))
            return Target(((literal, port or DEFAULT_PORT),), server_name, literal)
        if port is not None:
            steps.append(Step("well-known", SKIP, "an explicit port: no .well-known (spec step 2)"))
            steps.append(Step("srv", SKIP, "an explicit port: no SRV (spec step 2)"))
            return Target(((hostname, port),), server_name, hostname)
        delegated, ok = self._well_known(server_name, hostname, transport, steps)
        if not ok:
            return None
        if delegated:
            d_parts = split_server_name(delegated)
            assert d_parts is not None  # parse_well_known_body lets only valid names through
            d_host, d_port = d_parts
            d_literal = _ip_literal(d_host)
            if d_literal is not None:
                steps.append(Step("srv", SKIP, "delegated to an IP literal: no SRV (spec step 3.1)"))
                return Target(((d_literal, d_port or DEFAULT_PORT),), delegated, d_literal)
            if d_port is not None:
                steps.append(Step("srv", SKIP, "delegated with a port: no SRV (spec step 3.2)"))
                return Target(((d_host, d_port),), delegated, d_host)
            return Target(self._srv(d_host, steps), d_host, d_host)
        return Target(self._srv(hostname, steps), hostname, hostname)

    def _get_https(
        self, server_name: str, transport: HttpsTransport, host: str, port: int, path: str
    ) -> RawAnswer:
        return transport.exchange(
            server_name=server_name, method="GET", host=host, port=port,
            host_header=_url_host(host) if port == 443 else f"{_url_host(host)}:{port}",
            tls_name=host, raw_path=path, headers={"Accept": "application/json"}, body=None,
            max_bytes=MAX_BYTES, timeout=TIMEOUT_S,
        )  # fmt: skip

    def _well_known(
        self, server_name: str, hostname: str, transport: HttpsTransport, steps: list[Step]
    ) -> tuple[str | None, bool]:
        """(the delegated name or ``None``, whether testing may go on)."""
        port = self.policy.well_known_port
        url = f"https://{_url_host(hostname)}{'' if port == 443 else f':{port}'}/.well-known/matrix/server"
        try:
            answer = self._get_https(server_name, transport, hostname, port, "/.well-known/matrix/server")
        except FederationBlocked as exc:
            steps.append(Step("well-known", FAIL, f"{url}: refused by our address policy ({exc.reason})"))
            return None, False
        except FederationError as exc:
            steps.append(
                Step("well-known", OK, f"no delegation ({exc.reason}); .well-known is optional", {"url": url})
            )
            return None, True
        if answer.status in (301, 302, 303, 307, 308):
            steps.append(
                Step("well-known", WARN, f"{url} redirects (HTTP {answer.status}); the tester does not "
                     "follow redirects, servers do", {"url": url, "location": answer.headers.get("location")})
            )  # fmt: skip
            return None, True
        if answer.status == 404:
            steps.append(Step("well-known", OK, "no delegation (404); .well-known is optional", {"url": url}))
            return None, True
        if answer.status != 200:
            steps.append(
                Step("well-known", WARN, f"{url} answered HTTP {answer.status}: servers treat it as no delegation",
                     {"url": url})
            )  # fmt: skip
            return None, True
        try:
            body = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            steps.append(
                Step("well-known", FAIL, f"{url} is not JSON: other servers ignore it (fix the file or remove it)",
                     {"url": url})
            )  # fmt: skip
            return None, False
        delegated = parse_well_known_body(body)
        if delegated is None:
            raw = body.get("m.server") if isinstance(body, dict) else None
            steps.append(
                Step("well-known", FAIL, f"{url}: m.server {str(raw)[:100]!r} is not a valid server name[:port]; "
                     "other servers ignore it", {"url": url, "body": body if isinstance(body, dict) else None})
            )  # fmt: skip
            return None, False
        steps.append(Step("well-known", OK, f"delegates to {delegated}", {"url": url, "m.server": delegated}))
        return delegated, True

    def _srv(self, hostname: str, steps: list[Step]) -> tuple[tuple[str, int], ...]:
        for service, status in (("_matrix-fed._tcp", OK), ("_matrix._tcp", WARN)):
            name = f"{service}.{hostname}"
            records = [r for r in self.srv.lookup_srv(name) if r.host not in ("", ".")]
            if records:
                ordered = tuple((r.host.rstrip("."), r.port) for r in order_srv(records))
                shown = ", ".join(f"{h}:{p}" for h, p in ordered)
                summary = f"{name} -> {shown}"
                if status == WARN:
                    summary += f" (deprecated: publish _matrix-fed._tcp.{hostname} too)"
                steps.append(
                    Step("srv", status, summary, {"record": name, "targets": [list(t) for t in ordered]})
                )
                return ordered
        steps.append(
            Step("srv", OK, f"no SRV record: {hostname}:{DEFAULT_PORT} (spec fallback)",
                 {"targets": [[hostname, DEFAULT_PORT]]})
        )  # fmt: skip
        return ((hostname, DEFAULT_PORT),)

    def _addresses(
        self, server_name: str, target: Target, policy: FederationPolicy, steps: list[Step]
    ) -> list[tuple[str, int, list[str]]]:
        resolved: list[tuple[str, int, list[str]]] = []
        problems: list[str] = []
        for host, port in target.hosts:
            try:
                addresses = ssrf.resolve_allowed_sync(host, port, policy.ip_policy)
            except ssrf.BlockedDestination:
                problems.append(f"{host} resolves to an address ip_range_blacklist refuses")
                continue
            except ssrf.UnresolvableHost:
                problems.append(f"{host} does not resolve")
                continue
            resolved.append((host, port, [str(a) for a in addresses]))
        details = {
            "targets": [{"host": h, "port": p, "addresses": a} for h, p, a in resolved],
            "problems": problems,
        }
        if not resolved:
            steps.append(Step("addresses", FAIL, "; ".join(problems) or "no address", details))
        elif problems:
            steps.append(Step("addresses", WARN, "; ".join(problems), details))
        else:
            shown = ", ".join(f"{h}:{p} = {' '.join(a)}" for h, p, a in resolved)
            steps.append(Step("addresses", OK, shown, details))
        return resolved

    # ------------------------------------------------------------------ TLS

    def _handshake(self, address: str, port: int, tls_name: str, context: ssl.SSLContext) -> bytes | None:
        # server_hostname is checked against the certificate (an IP literal against its IP
        # addresses, and then not sent as SNI, RFC 6066).
        with (
            socket.create_connection((address, port), timeout=TIMEOUT_S) as sock,
            context.wrap_socket(sock, server_hostname=tls_name) as tls,
        ):
            return tls.getpeercert(binary_form=True)

    def _tls(
        self,
        server_name: str,
        target: Target,
        resolved: list[tuple[str, int, list[str]]],
        policy: FederationPolicy,
        steps: list[Step],
    ) -> tuple[str, int] | None:
        """The TLS and certificate steps; returns the (address, port) that worked."""
        verifying = federation_ssl_context(policy)
        errors: list[str] = []
        for _host, port, addresses in resolved:
            for address in addresses:
                try:
                    der = self._handshake(address, port, target.tls_name, verifying)
                except ssl.SSLCertVerificationError as exc:
                    cert = self._peek_certificate(address, port, target.tls_name)
                    reason = exc.verify_message or str(exc)
                    steps.append(
                        Step("tls", FAIL, f"{address}:{port}: certificate not valid for {target.tls_name}: {reason}",
                             {"address": address, "port": port, "tls_name": target.tls_name, "certificate": cert})
                    )  # fmt: skip
                    self._expiry(cert, steps)
                    return None
                except (OSError, ssl.SSLError) as exc:
                    errors.append(f"{address}:{port}: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                cert = _cert_summary(der)
                verified = (
                    "verified"
                    if policy.verify_certificates
                    else "NOT verified (federation_verify_certificates: false)"
                )
                steps.append(
                    Step("tls", OK if policy.verify_certificates else WARN,
                         f"{address}:{port}: TLS chain and name {target.tls_name} {verified}",
                         {"address": address, "port": port, "tls_name": target.tls_name, "certificate": cert})
                )  # fmt: skip
                self._expiry(cert, steps)
                return address, port
        steps.append(Step("tls", FAIL, "cannot connect: " + "; ".join(errors), {"errors": errors}))
        return None

    def _peek_certificate(self, address: str, port: int, tls_name: str) -> dict[str, Any]:
        """The certificate shown, read without verifying it (only to say what is wrong with it)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            return _cert_summary(self._handshake(address, port, tls_name, context))
        except (OSError, ssl.SSLError, ValueError):
            return {}

    def _expiry(self, cert: dict[str, Any], steps: list[Step]) -> None:
        not_after = cert.get("not_after_ts")
        if not isinstance(not_after, int):
            return
        steps.append(certificate_expiry_step("certificate", not_after, now=self.clock()))

    # ------------------------------------------------------------------ keys and version

    def _get_json(
        self, server_name: str, target: Target, address: str, port: int, transport: HttpsTransport, path: str
    ) -> tuple[int, Any]:
        answer = transport.exchange(
            server_name=server_name, method="GET", host=address, port=port, host_header=target.host_header,
            tls_name=target.tls_name, raw_path=path, headers={"Accept": "application/json"}, body=None,
            max_bytes=MAX_BYTES, timeout=TIMEOUT_S,
        )  # fmt: skip
        try:
            return answer.status, json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            return answer.status, None

    def _keys(
        self,
        server_name: str,
        target: Target,
        address: str,
        port: int,
        transport: HttpsTransport,
        is_self: bool,
        steps: list[Step],
    ) -> None:
        try:
            status, body = self._get_json(
                server_name, target, address, port, transport, "/_matrix/key/v2/server"
            )
        except FederationError as exc:
            steps.append(Step("keys", FAIL, f"/_matrix/key/v2/server: {exc.reason}"))
            return
        verdict = check_key_response(
            server_name,
            status,
            body,
            now=self.clock(),
            expected_key_ids=self.own_key_ids if is_self else None,
        )
        steps.append(verdict)

    def _version(
        self,
        server_name: str,
        target: Target,
        address: str,
        port: int,
        transport: HttpsTransport,
        steps: list[Step],
    ) -> None:
        try:
            status, body = self._get_json(
                server_name, target, address, port, transport, "/_matrix/federation/v1/version"
            )
        except FederationError as exc:
            steps.append(Step("version", FAIL, f"/_matrix/federation/v1/version: {exc.reason}"))
            return
        server = body.get("server") if isinstance(body, dict) else None
        if status != 200 or not isinstance(server, dict):
            steps.append(Step("version", FAIL, f"/_matrix/federation/v1/version answered HTTP {status} without "
                              "a server object"))  # fmt: skip
            return
        name, version = str(server.get("name", "?"))[:100], str(server.get("version", "?"))[:100]
        steps.append(Step("version", OK, f"{name} {version}", {"name": name, "version": version}))

    # ------------------------------------------------------------------ client .well-known

    def _client_well_known(
        self, server_name: str, hostname: str, policy: FederationPolicy, steps: list[Step]
    ) -> None:
        port = policy.well_known_port
        host = _url_host(hostname)
        url = f"https://{host}{'' if port == 443 else f':{port}'}/.well-known/matrix/client"
        try:
            status, body = _plain_get(url, policy)
        except _GetError as exc:
            steps.append(Step("client-well-known", WARN, f"{url}: {exc}; clients must be told the homeserver URL",
                              {"url": url}))  # fmt: skip
            return
        base = body.get("m.homeserver", {}).get("base_url") if isinstance(body, dict) else None
        if status != 200 or not isinstance(base, str):
            steps.append(Step("client-well-known", WARN, f"{url}: HTTP {status}, no m.homeserver.base_url; "
                              "clients must be told the homeserver URL", {"url": url}))  # fmt: skip
            return
        versions_url = base.rstrip("/") + "/_matrix/client/versions"
        try:
            v_status, v_body = _plain_get(versions_url, policy)
        except _GetError as exc:
            steps.append(Step("client-well-known", FAIL, f"m.homeserver {base}: {exc}",
                              {"url": url, "base_url": base}))  # fmt: skip
            return
        if v_status != 200 or not isinstance(v_body, dict) or not isinstance(v_body.get("versions"), list):
            steps.append(Step("client-well-known", FAIL, f"{versions_url} answered HTTP {v_status} without versions",
                              {"url": url, "base_url": base}))  # fmt: skip
            return
        steps.append(Step("client-well-known", OK, f"m.homeserver {base} answers /_matrix/client/versions",
                          {"url": url, "base_url": base}))  # fmt: skip


class _GetError(Exception):
    pass


def _plain_get(url: str, policy: FederationPolicy) -> tuple[int, Any]:
    """``GET`` an http(s) URL under the address policy (connect to a checked address)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise _GetError("not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
        raise _GetError("not a plain http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = ssrf.resolve_allowed_sync(parsed.host, port, policy.ip_policy)
    except (ssrf.BlockedDestination, ssrf.UnresolvableHost) as exc:
        raise _GetError(str(exc)) from None
    default = 443 if parsed.scheme == "https" else 80
    host_header = _url_host(parsed.host) if port == default else f"{_url_host(parsed.host)}:{port}"
    with httpx.Client(verify=federation_ssl_context(policy), follow_redirects=False, trust_env=False,
                      timeout=TIMEOUT_S) as client:  # fmt: skip
        last = "no address"
        for address in addresses:
            request = client.build_request(
                "GET", parsed.copy_with(host=str(address)), headers={"Host": host_header},
                extensions={"sni_hostname": parsed.host} if parsed.scheme == "https" else {},
            )  # fmt: skip
            try:
                response = client.send(request)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            if len(response.content) > MAX_BYTES:
                raise _GetError("answer too large")
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, None
    raise _GetError(last)


def certificate_expiry_step(name: str, not_after_ts: int, *, now: int) -> Step:
    """WARN under :data:`CERT_WARN_DAYS` days left, FAIL under :data:`CERT_FAIL_DAYS` (or expired)."""
    days = (not_after_ts - now) / DAY_MS
    when = datetime.datetime.fromtimestamp(not_after_ts / 1000, tz=datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    details = {"not_after_ts": not_after_ts, "days_left": round(days, 1)}
    if days < 0:
        return Step(name, FAIL, f"certificate expired on {when}", details)
    if days < CERT_FAIL_DAYS:
        return Step(name, FAIL, f"certificate expires in {days:.1f} days ({when})", details)
    if days < CERT_WARN_DAYS:
        return Step(name, WARN, f"certificate expires in {days:.1f} days ({when})", details)
    return Step(name, OK, f"certificate valid for {days:.0f} more days ({when})", details)


def check_key_response(
    server_name: str, status: int, body: Any, *, now: int, expected_key_ids: frozenset[str] | None
) -> Step:
    """Spec "Retrieving server keys": the answer is for ``server_name``, signed by each key it
    lists in ``verify_keys``, and valid for a while yet."""
    if status != 200 or not isinstance(body, dict):
        return Step("keys", FAIL, f"/_matrix/key/v2/server answered HTTP {status} without a JSON object")
    if body.get("server_name") != server_name:
        return Step(
            "keys", FAIL, f"the key answer is for {str(body.get('server_name'))[:255]!r}, not {server_name}"
        )
    verify_keys = body.get("verify_keys")
    if not isinstance(verify_keys, dict) or not verify_keys:
        return Step("keys", FAIL, "the key answer lists no verify_keys")
    key_ids = sorted(str(k) for k in verify_keys)
    for kid, entry in verify_keys.items():
        try:
            encoded = entry.get("key") if isinstance(entry, dict) else None
            key = signing.decode_verify_key_base64(kid, encoded if isinstance(encoded, str) else "")
            signing.verify_json_signature(body, server_name=server_name, key_id=kid, verify_key=key)
        except (ValueError, AttributeError, signing.SignatureError) as exc:
            return Step(
                "keys", FAIL, f"the key answer is not self-signed by {kid}: {exc}", {"key_ids": key_ids}
            )
    valid_until = body.get("valid_until_ts")
    if not isinstance(valid_until, int) or valid_until <= now:
        return Step(
            "keys", FAIL, f"valid_until_ts {valid_until!r} is not in the future", {"key_ids": key_ids}
        )
    if expected_key_ids is not None and not expected_key_ids <= set(key_ids):
        missing = sorted(expected_key_ids - set(key_ids))
        return Step("keys", FAIL, f"our key IDs {missing} are not served (another server answers, or an old key file)",
                    {"key_ids": key_ids})  # fmt: skip
    hours = (valid_until - now) / 3600_000
    return Step("keys", OK, f"{', '.join(key_ids)} self-signed, valid for {hours:.0f} more hours",
                {"key_ids": key_ids, "valid_until_ts": valid_until})  # fmt: skip


def run_federation_test(server_name: str, *, clock: Callable[[], int] = now_ms) -> TesterReport:
    """Test ``server_name`` with this server's federation settings (``manage.py federation_test``,
    the console's tester form, ``doctor``'s self-test)."""
    from dagcore.server_keys import get_server_name, get_signing_keys

    own = get_server_name()
    key_ids = frozenset(signing.key_id(k) for k in get_signing_keys()) if server_name == own else frozenset()
    tester = FederationTester(
        policy=FederationPolicy.from_config(settings.DAGMA),
        own_server_name=own,
        own_key_ids=key_ids,
        clock=clock,
    )
    return tester.run(server_name.strip())
