"""Between dataclass records and table rows."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any, TypeVar

R = TypeVar("R")


def record(cls: type[R], row: Any) -> R:
    """A record of ``cls`` from a row, or a dict of one (columns the record does not have
    are left out)."""
    names = _names(cls)  # type: ignore[arg-type]
    mapping = row if isinstance(row, dict) else row._mapping
    return cls(**{k: v for k, v in mapping.items() if k in names})


@functools.cache
def _names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def values(item: Any, *, skip: Iterable[str] = ("id",)) -> dict[str, Any]:
    """A record's fields as column values (``skip``: the ones the database fills in).

    Shallow (the records hold plain values; ``extra``, the one dict, is never a column):
    ``dataclasses.asdict`` would copy each value deeply, on every write."""
    skipped = set(skip)
    return {k: getattr(item, k) for k in _columns(type(item)) if k not in skipped}  # type: ignore[arg-type]


@functools.cache
def _columns(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")
