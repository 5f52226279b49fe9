"""The whole server's parts, wired once: store → engine → supervisor → sending/outbox."""

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
from zapmux.hub import Hub
from zapmux.inbound import Dispatcher
from zapmux.metrics import Metrics
from zapmux.optouts import OptOuts
from zapmux.outbox import Deliverer
from zapmux.qr import qr_view
from zapmux.scheduler import Scheduler
from zapmux.sending import Sender
from zapmux.states import Status
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup

log = logging.getLogger("zapmux")


class Gateway:
    """Everything one zapmux node runs. Parts are injectable for tests."""

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
        self.optouts = OptOuts(self.store)
        self.dispatcher = Dispatcher(
            settings,
            self.store,
            self.hub,
            self.deliverer,
            self.metrics,
            self.optouts,
            self.tenants,
        )
        self.supervisor = Supervisor(
            settings, self.store, self.engines, self.tasks, self.metrics, self.tenants
        )
        self.supervisor.handlers.append(self.dispatcher.handle)
        self.supervisor.status_listeners.append(self._status_changed)
        self.sender = Sender(
            settings, self.store, self.supervisor, self.dispatcher, self.tasks, self.optouts
        )
        self.cluster = Cluster(settings, self.store, self.supervisor, self.tasks, self.tenants)
        self.scheduler = Scheduler(
            self.store, self.cluster.node, self.optouts, self.sender.joined_queue
        )
        # Look at the earliest due time again when it may have changed: a new scheduled
        # send, or a tenant that came (or went) with its lease.
        self.sender.on_scheduled.append(self.scheduler.wake)
        self.supervisor.status_listeners.append(lambda _runner: self.scheduler.wake())
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
        await self.supervisor.stop()
        await self.cluster.stop()
        await self.tasks.cancel_all()
        await self.engines.aclose()
        await self.store.close()
        if self.http is not None:
            await self.http.close()

    def _status_changed(self, runner: TenantRunner) -> None:
        """Publish the change live at once (in order), queue its webhooks behind."""
        envelopes = [self.hub.publish("status", runner.tenant_id, runner.snapshot())]
        if runner.qr is not None and runner.status == Status.AWAITING_QR:
            envelopes.append(self.hub.publish("qr", runner.tenant_id, qr_view(runner.qr)))
        for envelope in envelopes:
            self.tasks.spawn(
                f"webhook-{envelope['event']}-{runner.tenant_id}",
                self.dispatcher.queue_webhook(runner.tenant_id, envelope),
            )
