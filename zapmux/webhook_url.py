"""Which URLs may be a webhook: parsed strictly, refused at ``PUT`` when they can never
work or point where zapmux must never POST.

- Malformed (control characters, spaces, backslashes, non-ASCII, a bad IPv6 literal, a
  port outside 1–65535, more than one ``@``, no host, not http(s)): ``invalid_url``.
- Link-local addresses (169.254.0.0/16, fe80::/10) — where cloud metadata services
  live — and known metadata names, unspecified, multicast, broadcast and reserved
  addresses, and host names that are numbers (``2852039166`` is 169.254.169.254 to a
  resolver): never a target, for anyone (``webhook_url_not_allowed``).
- Loopback and private addresses (``localhost``, 127.0.0.0/8, 10/8, 192.168/16, …):
  allowed when the admin key sets the URL (the operator's own network, like the default
  ``FLASK_URL``); from a tenant token only when the host is listed in
  ``ZAPMUX_WEBHOOK_ALLOWED_HOSTS`` (``webhook_host_not_allowed``).
- ``ZAPMUX_WEBHOOK_ALLOWED_HOSTS``, when set, is also an allow-list for every webhook
  URL set through the API.

A host *name* resolves to its addresses only later, and may resolve to others then
(DNS rebinding), so it is checked at each new connection: the resolver refuses names
that resolve to link-local or unspecified addresses (:func:`webhook_resolver`), and a
webhook a tenant token set may not reach a loopback or private address unless its
host is listed (:func:`reaches_private`, checked by the webhook client). At ``PUT`` a
tenant's name is also looked up once, to refuse at once what would fail every time
(:func:`check_tenant_host`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from zapmux.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal"}
)  # fmt: skip
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "169.254.169.254")}
)
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _invalid(why: str) -> InvalidInput:
    return InvalidInput(f"webhook url {why}", code="invalid_url")


def _never(why: str) -> InvalidInput:
    return InvalidInput(f"webhook url {why}", code="webhook_url_not_allowed")


def never_target(ip: IP) -> bool:
    """Addresses zapmux never POSTs to: link-local (cloud metadata), metadata services,
    unspecified, multicast, reserved."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip in METADATA_ADDRESSES
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or (ip.is_reserved and not ip.is_loopback)  # ::1 sits in the reserved ::/8
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def private(ip: IP) -> bool:
    """Loopback, private and the other addresses that are not public (``is_global``):
    the operator's own network."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def _parse(url: str) -> tuple[str, str]:
    """(scheme, host) of a well-formed http(s) URL, else ``invalid_url``."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise _invalid(
            "may hold no spaces, control characters, backslashes or non-ASCII text "
            "(percent-encode them; write international host names in punycode)"
        )
    try:
        parts = urlsplit(url)
        port, host = parts.port, parts.hostname
    except ValueError as exc:
        raise _invalid(f"is not a valid URL: {exc}") from exc
    if parts.scheme not in {"http", "https"} or not host:
        raise _invalid("must be an http(s) URL with a host")
    if port == 0 or parts.netloc.count("@") > 1 or "%" in host:
        raise _invalid("has an ambiguous host or port")
    return parts.scheme, host.lower().rstrip(".")


def _address(host: str) -> IP | None:
    ip = _literal(host)
    if ip is not None:
        return ip
    last = host.rsplit(".", 1)[-1]
    if last.isdigit() or last.startswith("0x"):  # 2852039166, 0xa9fea9fe, 169.254.43518
        raise _invalid("has a host that is neither a name nor a plain IP address")
    return None


def check_webhook_url(url: str, *, by_admin: bool, allowed_hosts: frozenset[str]) -> str:
    """``url`` if it may be a webhook set by this caller; else ``InvalidInput`` (400)."""
    _scheme, host = _parse(url)
    ip = _address(host)
    if host in METADATA_NAMES or (ip is not None and never_target(ip)):
        raise _never("points at a link-local, metadata or reserved address")
    if allowed_hosts and host not in allowed_hosts:
        raise InvalidInput(
            f"webhook host {host} is not in ZAPMUX_WEBHOOK_ALLOWED_HOSTS",
            code="webhook_host_not_allowed",
        )
    if _local(host, ip) and not by_admin and host not in allowed_hosts:
        raise InvalidInput(
            f"webhook host {host} is a private or loopback address; a tenant token may use "
            "one only when it is listed in ZAPMUX_WEBHOOK_ALLOWED_HOSTS",
            code="webhook_host_not_allowed",
        )
    return url


def address_of(result: ResolveResult) -> IP:
    """The address a resolver found (without an IPv6 zone, ``fe80::1%eth0``)."""
    return ipaddress.ip_address(result["host"].split("%", 1)[0])


def _literal(host: str) -> IP | None:
    """The address ``host`` is written as, if it is one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _local(host: str, ip: IP | None) -> bool:
    """A host that is a private address or ``localhost`` as written."""
    return host == "localhost" or host.endswith(".localhost") or (ip is not None and private(ip))


@functools.lru_cache(maxsize=1024)  # asked at every attempt to a tenant's webhook
def reaches_private(url: str, set_by: str | None, allowed_hosts: frozenset[str]) -> bool:
    """Whether a tenant's webhook may be posted to a loopback or private address: when
    the admin set it, or its host is listed in ``ZAPMUX_WEBHOOK_ALLOWED_HOSTS``. One
    set before zapmux kept who set it (``set_by`` None) may when its host is such an
    address or ``localhost`` written out, which only the admin could set."""
    host = _parse(url)[1]  # (set through check_webhook_url: well formed)
    if set_by == "admin" or host in allowed_hosts:
        return True
    return set_by is None and _local(host, _literal(host))


def private_refusal(host: str, address: str) -> str:
    return (
        f"{host} resolves to a private or loopback address ({address}); a webhook set with "
        "a tenant token reaches one only when its host is in ZAPMUX_WEBHOOK_ALLOWED_HOSTS"
    )


async def check_tenant_host(
    url: str, resolver: CheckedResolver, allowed_hosts: frozenset[str], timeout_s: float = 3.0
) -> None:
    """At ``PUT`` with a tenant token: refuse a host name that resolves now to a private
    or loopback address, unless it is listed (``webhook_host_not_allowed``), or to one
    zapmux never posts to (``webhook_url_not_allowed``). A name that does not resolve
    yet is taken: each delivery checks again (see the module docstring)."""
    host = _parse(url)[1]
    if host in allowed_hosts or _literal(host) is not None:
        return  # listed, or an address: check_webhook_url judged it
    try:
        async with asyncio.timeout(timeout_s):
            found = await resolver.lookup(host, 0, socket.AF_UNSPEC)
    except (OSError, TimeoutError):
        return
    for result in found:
        ip = address_of(result)
        if never_target(ip):
            raise _never(f"host {host} resolves to a link-local or reserved address")
        if private(ip):
            raise InvalidInput(
                f"webhook host {private_refusal(host, result['host'])}",
                code="webhook_host_not_allowed",
            )


class CheckedResolver(AbstractResolver):
    """Resolves like the system, then refuses a name unless every address it leads to is
    ``allowed``: ``refusal(host)`` is raised (an ``OSError``, which aiohttp reports as a
    failed connection). ``inner`` looks names up: the system's resolver (in the loop
    of each call), or a test's own names."""

    def __init__(
        self,
        allowed: Callable[[IPAddress], bool],
        refusal: Callable[[str], OSError],
        inner: AbstractResolver | None = None,
    ) -> None:
        self.allowed = allowed
        self.refusal = refusal
        self.inner = inner

    async def lookup(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """What ``host`` resolves to, unchecked."""
        return await (self.inner or ThreadedResolver()).resolve(host, port, family)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:  # an address already (aiohttp never asks for one; the webhook client does)
            literal = ipaddress.ip_address(host)
        except ValueError:
            results = await self.lookup(host, port, family)
        else:
            kind = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            results = [
                ResolveResult(
                    hostname=host, host=host, port=port, family=kind, proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]  # fmt: skip
        addresses = [address_of(r) for r in results]
        if not addresses or not all(self.allowed(a) for a in addresses):
            raise self.refusal(host)
        return results

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


def webhook_resolver(inner: AbstractResolver | None = None) -> CheckedResolver:
    """The resolver webhooks are posted through: refuses names that lead to an address
    zapmux never POSTs to (a public-looking name for 169.254.169.254)."""
    return CheckedResolver(
        lambda ip: not never_target(ip),
        lambda host: OSError(f"{host} resolves to a link-local or reserved address"),
        inner,
    )
