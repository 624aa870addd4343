"""Which webhook URLs this API may call, and the address it calls them at.

A consumer chooses the URL, so it must not become a way into the provider's network (SSRF): only ``https``
(``http`` when the operator allows it), no credentials in the URL, and every address the host name resolves to
must be public unless the operator lists its network in ``webhook_allowed_networks``. The request then goes to the
address that was checked (the name is not resolved a second time, so DNS rebinding cannot swap it), with the
original name as ``Host`` and TLS server name. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from api.core.errors import TargetRefused

URL_MAX = 2048
# Ranges Python's ``is_global`` lets through that lead back into private networks (translation and tunnel prefixes).
NOT_GLOBAL = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "fec0::/10")
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Pinned:
    """A checked target: the URL to request (host replaced by the checked address) and the name it stands for."""

    url: str
    host_header: str
    sni: str | None  # None when the URL names an address


@dataclass(frozen=True)
class TargetPolicy:
    allow_http: bool = False
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allow_http: bool, networks: list[str]) -> TargetPolicy:
        return cls(allow_http, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def check_url(self, url: str) -> SplitResult:
        """Syntax and scheme; an address written in the URL is checked too. Raises :class:`TargetRefused`."""
        if len(url) > URL_MAX:
            raise TargetRefused(f"the webhook URL is longer than {URL_MAX} characters")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise TargetRefused("the webhook URL contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise TargetRefused("the webhook URL is not a valid URL") from None
        schemes = {"https", "http"} if self.allow_http else {"https"}
        if parts.scheme not in schemes:
            raise TargetRefused(f"the webhook URL must use {' or '.join(sorted(schemes))}")
        if not parts.hostname:
            raise TargetRefused("the webhook URL has no host")
        if parts.username is not None or parts.password is not None:
            raise TargetRefused("the webhook URL may not carry credentials")
        if port == 0:
            raise TargetRefused("the webhook URL's port is invalid")
        try:
            ascii_host(parts.hostname)
        except UnicodeError:
            raise TargetRefused("the webhook URL's host is not a valid domain name") from None
        literal = _literal(parts.hostname)
        if literal is not None:
            self.check_address(literal)
        return parts

    def check_address(self, address: Address) -> None:
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in NOT_GLOBAL) and not any(
            address in network for network in self.allowed_networks
        ):
            raise TargetRefused(f"the webhook URL's host is not a public address ({address})")
        if any(address in network for network in self.allowed_networks):
            return
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"the webhook URL's host is not a public address ({address})")

    async def pin(self, url: str) -> Pinned:
        """Resolve the host once, check every address it has, and name the first as the one to call."""
        parts = self.check_url(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                raise TargetRefused(f"the webhook host {host!r} does not resolve") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
            if not addresses:
                raise TargetRefused(f"the webhook host {host!r} does not resolve")
        for address in addresses:
            self.check_address(address)
        # IPv4 first: the tenant API's NetworkPolicy opens IPv4 egress only.
        first = sorted(addresses, key=lambda a: a.version)[0]
        netloc = f"[{first}]:{port}" if first.version == 6 else f"{first}:{port}"
        url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        name = host if literal is not None else ascii_host(host)
        host_header = f"[{name}]" if literal is not None and literal.version == 6 else name
        if parts.port is not None:
            host_header += f":{parts.port}"
        return Pinned(url, host_header, None if literal is not None else name)


def ascii_host(host: str) -> str:
    """The host as it goes on the wire (IDNA for international names); UnicodeError if it cannot."""
    return host.encode("idna").decode("ascii") if not host.isascii() else host


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
