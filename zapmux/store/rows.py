"""Between dataclass records and table rows."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any, TypeVar

R = TypeVar("R")


def record(cls: type[R], row: Any) -> R:
    """A record of ``cls`` from a row (columns the record does not have are left out)."""
    names = _names(cls)  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


@functools.cache
def _names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def values(item: Any, *, skip: Iterable[str] = ("id",)) -> dict[str, Any]:
    """A record's fields as column values (``skip``: the ones the database fills in)."""
    skipped = set(skip)
    return {k: v for k, v in dataclasses.asdict(item).items() if k not in skipped and k != "extra"}
