"""The store: chosen from the URL's scheme (``sqlite:///…``, ``postgresql://…``, or
``memory://``: nothing kept, for tests and trying zapmux out)."""

from __future__ import annotations

from zapmux.store.base import Store


def open_store(url: str) -> Store:
    """A store for ``url``, with a hint when the driver for it is missing."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    try:
        if scheme == "sqlite":
            from zapmux.store.sqlite import SqliteStore

            return SqliteStore.from_url(url)
        if scheme in {"postgresql", "postgres"}:
            from zapmux.store.postgres import PostgresStore

            return PostgresStore.from_url(url)
        if scheme == "memory":
            from zapmux.store.memory import MemoryStore

            return MemoryStore()
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            f"the driver for {scheme} is missing ({exc.name}): pip install zapmux"
        ) from exc
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///, postgresql:// or memory://"
    )


__all__ = ["Store", "open_store"]
