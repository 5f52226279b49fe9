"""Engine implementations, chosen by name; neonize is only imported in worker processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zapmux.config import Settings
    from zapmux.engine import Engine
    from zapmux.store.base import SandboxStore


def create_engine(name: str, settings: Settings, store: SandboxStore) -> Engine:
    """The engine called ``name`` (``sandbox`` or ``whatsmeow``); only the sandbox keeps
    its state in zapmux's store."""
    if name == "sandbox":
        from zapmux.engines.sandbox import SandboxEngine

        return SandboxEngine(settings, store)
    if name == "whatsmeow":
        from zapmux.engines.whatsmeow.client import WhatsmeowEngine

        return WhatsmeowEngine(settings, proxy=settings.whatsmeow_proxy)
    raise ValueError(f"unknown engine {name!r}: use 'whatsmeow' or 'sandbox'")
