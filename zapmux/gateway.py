"""The whole server's parts, built and wired once: store → engine → supervisor →
inbound/sending → webhooks → outbox."""

from __future__ import annotations

import logging
import time

import aiohttp

from zapmux import __version__
from zapmux.cluster import Cluster
from zapmux.config import Settings
from zapmux.directory import TenantDirectory
from zapmux.engines import Engines, create_engine
from zapmux.engines.base import Engine
from zapmux.events import Event
from zapmux.hub import Hub
from zapmux.inbound import Dispatcher
from zapmux.metrics import Metrics
from zapmux.optouts import OptOuts
from zapmux.outbox import Deliverer, OutboxCounts
from zapmux.qr import qr_view
from zapmux.scheduler import Scheduler
from zapmux.sending import Sender
from zapmux.states import Status
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup
from zapmux.webhooks import Webhooks

log = logging.getLogger("zapmux")


class Gateway:
    """Everything one zapmux node runs. Parts are injectable for tests.

    The parts are built here and connected here, so this is where to read who hears
    of what: the supervisor's events go to :meth:`_engine_event`, its changes of state
    to :meth:`_status_changed`, its deleted tenants to :meth:`_tenant_deleted`.
    """

    def __init__(
        self, settings: Settings, *, store: Store | None = None, engine: Engine | None = None
    ) -> None:
        self.settings = settings
        self.store: Store = store or open_store(settings.store_url)  # type: ignore[assignment]
        self.engine = engine or create_engine(settings.engine, settings, self.store)  # default
        self.engines = Engines(self.engine, settings, self.store)
        self.tenants = TenantDirectory(self.store)  # every tenant's record, in memory
        self.hub = Hub()
        self.metrics = Metrics()
        self.tasks = TaskGroup()
        self.deliverer = Deliverer(settings, self.store, self.metrics, self.tenants)
        self.outbox_counts = OutboxCounts(self.store)
        self.webhooks = Webhooks(self.store, self.hub, self.deliverer, self.tenants)
        self.optouts = OptOuts(self.store)
        self.dispatcher = Dispatcher(
            self.store, self.hub, self.webhooks, self.metrics, self.optouts
        )
        self.supervisor = Supervisor(
            settings,
            self.store,
            self.engines,
            self.tasks,
            self.metrics,
            self.tenants,
            on_event=self._engine_event,
            on_status=self._status_changed,
            on_deleted=self._tenant_deleted,
        )
        self.sender = Sender(
            settings,
            self.store,
            self.supervisor,
            self.webhooks,
            self.tasks,
            self.optouts,
            # a new scheduled send may be due before the one the scheduler waits for
            on_scheduled=lambda: self.scheduler.wake(),
        )
        self.cluster = Cluster(settings, self.store, self.supervisor, self.tasks, self.tenants)
        self.scheduler = Scheduler(
            self.store, self.cluster.node, self.optouts, self.sender.joined_queue
        )
        self.http: aiohttp.ClientSession | None = None  # for forwarding to other nodes
        self.started_at = time.time()

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.auth_dir.mkdir(parents=True, exist_ok=True)
        await self.store.migrate()
        await self.tenants.start(self.tasks)
        await self.optouts.start()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self.cluster.http = self.http
        await self.engines.start()
        self.tasks.spawn("deliverer", self.deliverer.run())
        self.tasks.spawn("outbox-retention", self.deliverer.prune_forever())
        await self.cluster.start()
        self.tasks.spawn("scheduler", self.scheduler.run())
        log.info(
            "✅ zapmux %s started (default engine %s, store %s)",
            __version__,
            self.engine.name,
            settings.store_url.split("://", 1)[0],
        )

    async def stop(self) -> None:
        self.hub.close()
        await self.supervisor.stop_all()
        await self.cluster.stop()
        await self.tasks.cancel_all()
        await self.engines.aclose()
        await self.store.close()
        if self.http is not None:
            await self.http.close()

    # --- the wiring: who hears of what -------------------------------------------------
    async def _engine_event(self, tenant_id: str, event: Event) -> None:
        """A tenant's messages and receipts are recorded (and their webhooks queued);
        a connection starts its send queue."""
        await self.dispatcher.handle(tenant_id, event)
        await self.sender.on_event(tenant_id, event)

    def _status_changed(self, runner: TenantRunner) -> None:
        """Publish the change live at once (in order) and queue its webhooks behind;
        the tenant's send queue and the scheduler look again (the scheduler's earliest
        due time may have changed with a tenant that came or went with its lease)."""
        envelopes = [self.hub.publish("status", runner.tenant_id, runner.snapshot())]
        if runner.qr is not None and runner.status == Status.AWAITING_QR:
            envelopes.append(self.hub.publish("qr", runner.tenant_id, qr_view(runner.qr)))
        for envelope in envelopes:
            self.tasks.spawn(
                f"webhook-{envelope['event']}-{runner.tenant_id}",
                self.webhooks.queue_webhook(runner.tenant_id, envelope),
            )
        self.sender.wake(runner.tenant_id)
        self.scheduler.wake()

    def _tenant_deleted(self, tenant_id: str) -> None:
        """Live listeners hear it is gone."""
        self.hub.publish("deleted", tenant_id, {"tenant_id": tenant_id})
