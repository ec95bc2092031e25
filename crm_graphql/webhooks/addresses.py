"""Server-side request forgery guard: in production a webhook may only reach public addresses.

A URL is checked when it is registered and again before every attempt, since what a name
resolves to can change in between; the attempt then connects to the very address that was
checked (the name still goes in the Host header and TLS's SNI, and the certificate is verified
against it), so a second lookup cannot swap in an internal address. Hosts named in
CRM_WEBHOOK_ALLOWED_HOSTS skip the check (a receiver on a private network, tests)."""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why, for the admin."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def is_public(address: IPAddress) -> bool:
    """Not loopback, private, link-local (cloud metadata at 169.254.169.254 included), shared,
    reserved or multicast; an IPv4 address mapped into IPv6 is judged as itself."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: `url` (its host possibly replaced by the checked address), with
    the headers and request extensions that keep the original name for HTTP and TLS."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UrlPolicy:
    enforce: bool  # production: only public addresses, only https
    allowed_hosts: frozenset[str] = frozenset()
    resolver: Resolver = resolve

    def parse(self, url: str) -> SplitResult:
        """The URL's parts, or UnsafeUrl when it is no absolute http(s) URL."""
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as error:
            raise UnsafeUrl(f"Not a valid URL: {error}.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeUrl("The URL must be absolute, with http or https and a host.")
        if parts.username is not None or parts.password is not None:
            raise UnsafeUrl("The URL may not carry credentials; the signature authenticates.")
        if self.enforce and parts.scheme != "https" and not self.is_allowed(parts):
            raise UnsafeUrl("The URL must use https.")
        return parts

    def is_allowed(self, parts: SplitResult) -> bool:
        return (parts.hostname or "").lower() in self.allowed_hosts

    async def target(self, url: str) -> Target:
        """Check the URL and say where to connect; UnsafeUrl if it may not be reached."""
        parts = self.parse(url)
        if not self.enforce or self.is_allowed(parts):
            return Target(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self.resolver(host, port)
        except (OSError, UnicodeError) as error:
            raise UnsafeUrl(f"The host {host} does not resolve: {error}.") from None
        if not addresses:
            raise UnsafeUrl(f"The host {host} does not resolve.")
        # Every address must be public: a name with one internal address among public ones
        # could be steered to it.
        internal = [a for a in addresses if not is_public(a)]
        if internal:
            raise UnsafeUrl(
                f"The host {host} resolves to a non-public address ({internal[0]}); "
                "webhooks may only reach public addresses."
            )
        address = addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        pinned = parts._replace(netloc=netloc).geturl()
        host_header = f"{host}:{parts.port}" if parts.port else host
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return Target(pinned, {"host": host_header}, extensions)
