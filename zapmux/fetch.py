"""Fetching media from a URL a client gave, without becoming a way into private networks.

A send may name its media by URL; zapmux then fetches it. Unless the operator allows it
(``ZAPMUX_MEDIA_ALLOW_PRIVATE``), every address the host resolves to — at every
redirect hop — must be a public one: no loopback, private ranges, link-local (cloud
metadata at 169.254.169.254), or reserved addresses.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from zapmux.errors import InvalidInput, PayloadTooLarge
from zapmux.webhook_url import CheckedResolver, IPAddress

MAX_REDIRECTS = 5
GENERIC_TYPES = {None, "application/octet-stream", "binary/octet-stream"}


class BlockedAddress(OSError):
    """The host resolves to an address zapmux may not fetch from."""


def _is_public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast


def public_only_resolver() -> CheckedResolver:
    """Refuses hosts with any non-public address (media is fetched from the internet)."""
    return CheckedResolver(
        _is_public,
        lambda host: BlockedAddress(f"{host} resolves to a private or reserved address"),
    )


def _check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput("media url must be an http(s) URL with a host", code="invalid_url")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not _is_public(literal):
        raise InvalidInput(
            "media url points at a private or reserved address", code="media_url_not_allowed"
        )


async def fetch_media(
    url: str, limit: int, allow_private: bool = False
) -> tuple[bytes, str | None]:
    """The file at ``url`` (at most ``limit`` bytes) and its declared type, if specific."""
    connector: dict[str, Any] = {} if allow_private else {"resolver": public_only_resolver()}
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(**connector),
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(url, allow_private)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in {301, 302, 303, 307, 308} and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    return await _body(resp, limit)
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        blocked = exc if isinstance(exc, BlockedAddress) else getattr(exc, "os_error", None)
        if isinstance(blocked, BlockedAddress):  # aiohttp wraps what the resolver raised
            raise InvalidInput(str(blocked), code="media_url_not_allowed") from exc
        raise InvalidInput(
            f"could not fetch the media: {type(exc).__name__}", code="media_fetch_failed"
        ) from exc
    raise InvalidInput("fetching the media redirected too many times", code="media_fetch_failed")


async def _body(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, str | None]:
    if resp.status != 200:
        raise InvalidInput(
            f"fetching the media answered HTTP {resp.status}", code="media_fetch_failed"
        )
    if resp.content_length is not None and resp.content_length > limit:
        raise PayloadTooLarge(f"media is larger than {limit} bytes")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:  # the declared length may lie, or be absent
            raise PayloadTooLarge(f"media is larger than {limit} bytes")
    declared = resp.content_type if "Content-Type" in resp.headers else None
    return bytes(data), None if declared in GENERIC_TYPES else declared
