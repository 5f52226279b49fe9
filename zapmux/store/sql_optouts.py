"""Opt-outs (numbers that asked a tenant to stop writing), as a part of the SQL store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.store import schema as t
from zapmux.store.guard import in_life
from zapmux.store.records import OptOut
from zapmux.store.rows import record as _record
from zapmux.store.rows import values as _values


class OptOutTables:
    """Mixed into ``SqlStore``; ``engine`` is its SQLAlchemy engine."""

    engine: AsyncEngine

    async def add_opt_out(self, opt_out: OptOut, incarnation: str | None = None) -> None:
        """Record (or record again) that a number opted out."""
        o = t.opt_outs.c
        key = and_(o.tenant_id == opt_out.tenant_id, o.phone == opt_out.phone)
        async with self.engine.begin() as conn, in_life(conn, opt_out.tenant_id, incarnation):
            await conn.execute(delete(t.opt_outs).where(key))
            await conn.execute(insert(t.opt_outs).values(_values(opt_out, skip=())))

    async def find_opt_out(self, tenant_id: str, phones: Sequence[str]) -> OptOut | None:
        """The opt-out of any of these spellings of one number, if there is one."""
        o = t.opt_outs.c
        stmt = select(t.opt_outs).where(and_(o.tenant_id == tenant_id, o.phone.in_(list(phones))))
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt.limit(1))).first()
        return _record(OptOut, row) if row else None

    async def opted_out_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (tenant, phone) pairs opted out (phones as stored)."""
        if not pairs:
            return set()
        o = t.opt_outs.c
        stmt = select(o.tenant_id, o.phone).where(
            and_(o.tenant_id.in_({p[0] for p in pairs}), o.phone.in_({p[1] for p in pairs}))
        )
        async with self.engine.connect() as conn:
            found = {(r.tenant_id, r.phone) for r in await conn.execute(stmt)}
        return found & set(pairs)

    async def list_opt_outs(self, tenant_id: str) -> list[OptOut]:
        o = t.opt_outs.c
        stmt = select(t.opt_outs).where(o.tenant_id == tenant_id).order_by(o.created_at, o.phone)
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt)
        return [_record(OptOut, r) for r in rows]

    async def remove_opt_out(self, tenant_id: str, phones: Sequence[str]) -> int:
        """Lift the opt-out of a number (any of its spellings); how many were removed."""
        o = t.opt_outs.c
        stmt = delete(t.opt_outs).where(and_(o.tenant_id == tenant_id, o.phone.in_(list(phones))))
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount or 0)
