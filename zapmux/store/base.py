"""The store interface (filled in from the SQL implementation's public methods)."""

from __future__ import annotations

from abc import ABC


class Store(ABC):
    """Everything zapmux persists."""
