"""The one outbound-URL policy: which URLs the bot may fetch (artifacts, feeds) or call (webhooks).

1. Only ``http`` and ``https`` URLs with a host.
2. No credentials in URLs (``user:pass@host``): they would be shown in threads and written to logs. Put
   them in ``~/.netrc`` (or the file named by ``$NETRC``), which aiohttp reads with ``trust_env``.
3. No link-local (cloud metadata at ``169.254.169.254``), loopback, private, reserved, multicast or
   unspecified address, unless its network or host name is allow-listed in the configuration
   (``outbound.allow: ["10.0.0.0/8", "repo.internal"]``). The check runs on the addresses the name resolves
   to at connect time (:class:`PolicyResolver`), so DNS cannot point an allowed name elsewhere afterwards.
4. Redirects never leave the origin (:func:`get`), and requests carrying a signature follow none at all.

:func:`redact` is what every message and log line shows of a URL.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.errors import OutboundRefusedError

MAX_REDIRECTS = 5
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_allow(entries: Iterable[str]) -> tuple[tuple[IpNetwork, ...], frozenset[str]]:
    networks: list[IpNetwork] = []
    hosts: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            hosts.add(entry.strip().lower().rstrip("."))
    return tuple(networks), frozenset(hosts)


@dataclass(frozen=True)
class OutboundPolicy:
    """Allow-listed networks (CIDR) and host names that may be internal; everything public is allowed."""

    allow: tuple[str, ...] = ()
    _networks: tuple[IpNetwork, ...] = field(init=False, repr=False, compare=False)
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks, hosts = _parse_allow(self.allow)
        object.__setattr__(self, "_networks", networks)
        object.__setattr__(self, "_hosts", hosts)

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` is allow-listed by name (then its addresses are not checked)."""
        return host.lower().rstrip(".") in self._hosts

    def check_address(self, address: str, *, url: str) -> None:
        """Step 3: refuse internal addresses that are not allow-listed."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self._networks):
            return
        if ip.is_global and not ip.is_multicast:
            return
        kind = "link-local" if ip.is_link_local else "loopback" if ip.is_loopback else "internal"
        raise OutboundRefusedError(
            f"{redact(url)} resolves to the {kind} address {ip}; allow it with outbound.allow in the configuration"
        )

    def check_url(self, url: str) -> None:
        """Steps 1 to 3 for a URL whose host is an address literal (names are checked at connect time)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError as exc:
            raise OutboundRefusedError(f"{redact(url)} is not a valid URL") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundRefusedError(f"{redact(url)} is not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise OutboundRefusedError(
                f"{redact(url)} carries credentials in the URL; put them in ~/.netrc (or $NETRC) instead"
            )
        host = parts.hostname
        if self.host_allowed(host):
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if host in ("localhost",) or host.endswith(".localhost"):
                self.check_address("127.0.0.1", url=url)
            return
        self.check_address(host, url=url)


class PolicyResolver(AbstractResolver):
    """A resolver that drops addresses the policy refuses (step 3, at connect time)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and refuse it if any address is internal and not allow-listed."""
        results = await self._inner.resolve(host, port, family)
        if not self._policy.host_allowed(host):
            for result in results:
                self._policy.check_address(result["host"], url=f"http://{host}:{port}/")
        return results

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


def connector(policy: OutboundPolicy, *, ssl: Any = True) -> aiohttp.TCPConnector:
    """A connector whose every connection obeys ``policy``."""
    return aiohttp.TCPConnector(resolver=PolicyResolver(policy), ssl=ssl)


def same_origin(a: str, b: str) -> bool:
    """True if both URLs share scheme, host and port."""
    pa, pb = urlsplit(a), urlsplit(b)
    default = {"http": 80, "https": 443}
    return (
        pa.scheme == pb.scheme
        and (pa.hostname or "") == (pb.hostname or "")
        and (pa.port or default.get(pa.scheme)) == (pb.port or default.get(pb.scheme))
    )


async def get(
    session: aiohttp.ClientSession, url: str, *, policy: OutboundPolicy | None = None, **kwargs: Any
) -> aiohttp.ClientResponse:
    """GET following redirects only within the origin of ``url`` (step 4); the caller releases the response."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if policy is not None:
            policy.check_url(current)
        resp = await session.get(current, allow_redirects=False, **kwargs)
        if resp.status not in (301, 302, 303, 307, 308):
            return resp
        location = resp.headers.get("Location", "")
        resp.release()
        target = urljoin(current, location)
        if not location or not same_origin(url, target):
            raise OutboundRefusedError(f"{redact(current)} redirects to another origin ({redact(target)}); refused")
        current = target
    raise OutboundRefusedError(f"{redact(url)}: more than {MAX_REDIRECTS} redirects")


def redact(url: str) -> str:
    """``url`` without credentials and query (which may hold tokens): fit for messages and logs."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
