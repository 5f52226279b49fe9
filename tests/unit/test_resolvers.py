"""The resolvers outgoing requests go through: a media fetch reaches only public
addresses, a webhook anything but link-local and reserved ones, whatever a host *name*
claims to be."""

from __future__ import annotations

import socket

import pytest

from zapmux.errors import InvalidInput
from zapmux.fetch import fetch_media, public_only_resolver
from zapmux.webhook_url import reaches_private, webhook_resolver


async def test_a_media_name_that_leads_to_a_private_address_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        await fetch_media("http://localhost:9/photo.jpg", limit=1024)
    assert refused.value.details["code"] == "media_url_not_allowed"
    assert "localhost resolves to a private or reserved address" in refused.value.message


async def test_the_media_resolver_refuses_loopback_and_the_webhook_one_allows_it() -> None:
    media, webhook = public_only_resolver(), webhook_resolver()
    try:
        with pytest.raises(OSError, match="private or reserved"):
            await media.resolve("localhost", 80)
        found = await webhook.resolve("localhost", 80)
        assert {r["host"] for r in found} <= {"127.0.0.1", "::1"}
    finally:
        await media.close()
        await webhook.close()


async def test_the_webhook_resolver_refuses_a_link_local_address() -> None:
    resolver = webhook_resolver()
    try:
        with pytest.raises(OSError, match="link-local or reserved"):
            await resolver.resolve("169.254.169.254", 80)
        with pytest.raises(OSError, match="link-local or reserved"):
            await resolver.resolve("fe80::1", 80)
        # an address is taken as it is (no look-up), and checked all the same
        (v6,) = await resolver.resolve("::1", 8080)
        assert (v6["host"], v6["port"], v6["family"]) == ("::1", 8080, socket.AF_INET6)
        (v4,) = await resolver.resolve("10.0.0.7", 443)
        assert (v4["host"], v4["family"]) == ("10.0.0.7", socket.AF_INET)
    finally:
        await resolver.close()


@pytest.mark.parametrize(
    ("url", "set_by", "listed", "reaches"),
    [
        ("http://hooks.example/x", "admin", "", True),  # the operator's network is his
        ("http://hooks.example/x", "tenant", "", False),
        ("http://hooks.example/x", "tenant", "hooks.example", True),  # listed for tenants
        ("http://hooks.example/x", None, "", False),  # from before: a tenant's, maybe
        ("http://10.0.0.5:8080/x", None, "", True),  # from before: only the admin could
        ("http://localhost:8080/x", None, "", True),
        ("http://10.0.0.5:8080/x", "tenant", "", False),  # listed once, not any more
    ],
)
def test_who_set_a_webhook_decides_whether_it_reaches_private_addresses(
    url: str, set_by: str | None, listed: str, reaches: bool
) -> None:
    assert reaches_private(url, set_by, frozenset(filter(None, [listed]))) is reaches
