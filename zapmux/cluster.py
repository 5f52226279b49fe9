"""This node among the nodes that share one store: heartbeats, tenant leases, owners.

Each tenant is run by the one node holding its lease, which that node renews every
third of ``ZAPMUX_LEASE_SECONDS``. A node that dies stops renewing; once its leases
run out the other nodes take its tenants over (and reconnect them from their stored
sessions). Requests for a tenant another node runs are forwarded to that node
(``api.forward``). With SQLite there is one node, which holds every lease.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from zapmux.config import Settings, is_loopback
from zapmux.store.base import Store, TenantStore
from zapmux.store.records import TenantRecord
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup

log = logging.getLogger("zapmux.cluster")


def node_identity(settings: Settings) -> tuple[str, str]:
    """(node id, URL other nodes reach it at) from the settings."""
    host = settings.host
    if host in {"0.0.0.0", "::", ""} or (not is_loopback(host) and ":" in host):
        host = socket.gethostname()
    url = settings.advertise_url or f"http://{host}:{settings.port}"
    return settings.node_id or f"{socket.gethostname()}:{settings.port}", url.rstrip("/")


class Cluster:
    """Leases the tenants this node runs and knows who runs the others."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        supervisor: Supervisor,
        tasks: TaskGroup,
        tenants: TenantStore | None = None,
    ) -> None:
        self.store = store
        self.tenants = tenants or store  # tenants' records (the directory): from memory
        self.supervisor = supervisor
        self.tasks = tasks
        self.lease_s = settings.lease_seconds
        self.node, self.url = node_identity(settings)
        self.synced = False
        # Lease changes and runner creation never interleave: a sync that took its
        # snapshot of our leases before a tenant was created must not release it.
        self.changes = asyncio.Lock()
        self.http: aiohttp.ClientSession | None = None  # set by the gateway when it starts

    async def start(self) -> None:
        """Announce this node; take the free tenants and keep renewing in the background,
        so that the API serves at once. A request for a tenant not yet taken takes it
        on the spot (``owner_url``); it starts through the supervisor's start gate."""
        await self.store.heartbeat(self.node, self.url)
        self.tasks.spawn("cluster-leases", self._renew_forever())

    async def stop(self) -> None:
        """Hand every lease back so other nodes take the tenants over at once."""
        await self.store.release_leases(self.node)

    async def _renew_forever(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # the store may be briefly away; the next round retries
                log.exception("❌ lease renewal failed")
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.store.heartbeat(self.node, self.url)
            except Exception:
                log.exception("❌ heartbeat failed")

    async def sync(self) -> None:
        """Run what we lease (taking over expired leases), drop what we lost."""
        async with self.changes:
            await self._sync()

    async def _sync(self) -> None:
        owned = set(await self.store.acquire_leases(self.node, self.lease_s, 1_000_000))
        runners = self.supervisor.runners
        for tenant_id in sorted(owned - runners.keys()):
            record = await self.tenants.get_tenant(tenant_id)
            if record is not None:
                if self.synced:  # not our own start: a dead node's tenant
                    log.info("🔄 took over tenant %s (node %s)", tenant_id, self.node)
                await self.supervisor.resume(record)
        for tenant_id in sorted(runners.keys() - owned):
            if await self._still_ours(tenant_id):
                continue
            log.warning("🔄 lease of tenant %s lost; another node runs it now", tenant_id)
            await self.supervisor.release(tenant_id)
        self.synced = True

    async def _still_ours(self, tenant_id: str) -> bool:
        """A tenant the renewal skipped may still be ours: on PostgreSQL the renewal
        passes over rows another transaction holds at that instant (a status update), and
        losing the tenant for that would restart its session. Only another owner (or no
        tenant at all) means the lease is lost."""
        found = await self.store.tenant_owner(tenant_id)
        return found is not None and found[0] == self.node

    async def broadcast(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
        """POST ``body`` to ``path`` on every other live node (credentials passed on);
        the sum of their ``tenants`` counts. A node that does not answer is logged."""
        session = self.http
        total = 0
        keep = {k: v for k, v in headers.items() if k.lower() in {"x-api-key", "authorization"}}
        keep["X-Zapmux-Forwarded-By"] = self.node
        for node, url in await self.store.live_nodes(self.lease_s):
            if node == self.node or session is None:
                continue
            try:
                async with session.post(
                    url + path, json=body, headers=keep, timeout=aiohttp.ClientTimeout(total=30)
                ) as response:
                    total += int((await response.json()).get("tenants") or 0)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("❌ node %s did not take %s: %r", node, path, exc)
        return total

    async def create_tenant(
        self, record: TenantRecord, setup: Callable[[], Awaitable[None]] | None = None
    ) -> TenantRunner:
        """Create a tenant leased to this node, with its runner, as one lease change.

        ``setup`` (storing what else the tenant needs) runs in between; if it fails,
        the tenant is deleted again: nothing half-made stays behind."""
        record.owner, record.lease_until = self.node, time.time() + self.lease_s
        async with self.changes:
            record = await self.tenants.create_tenant(record)
            if setup is not None:
                try:
                    await setup()
                except BaseException:
                    await self.tenants.delete_tenant(record.id)
                    raise
            return await self.supervisor.add(record)

    async def owner_url(self, tenant_id: str) -> str | None:
        """The URL of the live node that runs ``tenant_id`` if that is not this one.

        A tenant whose lease ran out is adopted here on the spot.
        """
        if tenant_id in self.supervisor.runners:
            return None
        found = await self.store.tenant_owner(tenant_id)
        if found is None:
            return None  # no such tenant: the route answers 404
        owner, until = found
        if owner and owner != self.node and until > time.time():
            url = await self.store.node_url(owner, self.lease_s)
            if url and url != self.url:
                return url
        async with self.changes:
            if tenant_id in self.supervisor.runners:
                return None  # taken here meanwhile
            if await self.store.acquire_lease(self.node, tenant_id, self.lease_s):
                record = await self.tenants.get_tenant(tenant_id)
                if record is not None:
                    await self.supervisor.resume(record)
        return None
