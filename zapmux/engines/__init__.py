"""Engine implementations, chosen by name; neonize is only imported in worker processes.

Each tenant names its engine; :class:`Engines` holds the ones this node uses, building
each the first time a tenant needs it (a server of sandbox tenants never opens a
whatsmeow store).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zapmux.config import Settings
    from zapmux.engines.base import Engine
    from zapmux.store.base import Store


def create_engine(name: str, settings: Settings, store: Store) -> Engine:
    """The engine called ``name`` (``whatsmeow``, ``sandbox`` or ``cloud``)."""
    if name == "sandbox":
        from zapmux.engines.sandbox import SandboxEngine

        return SandboxEngine(settings, store)
    if name == "whatsmeow":
        from zapmux.engines.whatsmeow.client import WhatsmeowEngine

        return WhatsmeowEngine(settings, proxy=settings.whatsmeow_proxy)
    if name == "cloud":
        from zapmux.engines.cloud import CloudEngine

        return CloudEngine(settings, store)
    # not at import: a whatsmeow worker needs no settings, and they bring pydantic
    # (~7 MB of every worker; docs/whatsmeow.md)
    from zapmux.config import ENGINE_NAMES

    raise ValueError(f"unknown engine {name!r}: use one of {', '.join(ENGINE_NAMES)}")


class Engines:
    """The engines of one node by name: the default one given, the others built (and
    started) on first use."""

    def __init__(self, default: Engine, settings: Settings, store: Store) -> None:
        self.default = default
        self.settings = settings
        self.store = store
        self._built: dict[str, Engine] = {default.name: default}
        self._started = False
        self._lock = asyncio.Lock()

    async def get(self, name: str | None) -> Engine:
        """The engine called ``name`` (None: the default), built and started if new."""
        name = name or self.default.name
        engine = self._built.get(name)
        if engine is not None:
            return engine
        async with self._lock:
            if name not in self._built:
                engine = create_engine(name, self.settings, self.store)
                if self._started:
                    await engine.start()
                self._built[name] = engine
        return self._built[name]

    def built(self, name: str) -> Engine | None:
        """The engine called ``name`` if this node has it already."""
        return self._built.get(name)

    async def start(self) -> None:
        self._started = True
        for engine in list(self._built.values()):
            await engine.start()

    async def aclose(self) -> None:
        for engine in list(self._built.values()):
            await engine.aclose()
